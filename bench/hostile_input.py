"""Hostile /restyle text: how long the grammar takes on inputs built to make a regex backtrack.

For each size (4 KB, 32 KB, 40 KB by default) and each shape, two figures, the median of
`--repeat` runs:
  - parse_restyle: the whole grammar as every front end calls it (refused at the length cap);
  - at the cap: the whole grammar on the same text cut to the cap (every pattern runs);
  - option scan: `_find_options` straight on the body, past the cap, to show the patterns
    themselves are linear and do not lean on the cap.

    PYTHONPATH=. .venv/bin/python bench/hostile_input.py [--sizes 4000 32000 40000] [--repeat 5]

The code before issue 18 took ~0.9 s for 8,000 commas and ~12 s for 32,000 (quadratic).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import commands  # noqa: E402
from bot.commands import CommandError, parse_restyle  # noqa: E402

# Each shape: the body after "/restyle cat " for a given total length.
SHAPES: dict[str, Callable[[int], str]] = {
    "seed= + commas + x": lambda n: "seed=" + "," * n + "x",
    "seed= + ',a' pairs": lambda n: "seed=" + ",a" * (n // 2),
    "strength= + dots + x": lambda n: "strength=" + "." * n + "x",
    "many options": lambda n: "s=1 " * (n // 4),
    "spaced keys": lambda n: "strength " * (n // 9),
    "phrase words": lambda n: "low " * (n // 4),
    "digits": lambda n: "seed=" + "9" * n,
}


def median_seconds(work: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            work()
        except CommandError:
            pass  # a refusal is the expected answer; only the time counts here
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 32000, 40000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; cap {commands.MAX_COMMAND_CHARS} characters")  # fmt: skip
    print(f"{'input':<24} {'chars':>7} {'parse_restyle':>15} {'at the cap':>13} {'option scan':>13}")
    for name, make in SHAPES.items():
        for size in args.sizes:
            body = "cat " + make(size)
            text = "/restyle " + body
            parse_s = median_seconds(lambda: parse_restyle(text), args.repeat)
            capped_s = median_seconds(lambda: parse_restyle(text[: commands.MAX_COMMAND_CHARS]), args.repeat)
            scan_s = median_seconds(lambda: commands._find_options(body), args.repeat)
            print(f"{name:<24} {len(text):>7} {parse_s * 1000:>12.3f} ms {capped_s * 1000:>10.3f} ms "
                  f"{scan_s * 1000:>10.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
