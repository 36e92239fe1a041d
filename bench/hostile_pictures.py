"""Hostile pictures through the path the service uses: how long a progressive-JPEG scan bomb
holds a decode thread, and the peak memory of four tiny lossless WebP bombs sent at once.

Each case runs in a child process of its own, so its peak RSS (VmHWM, like ru_maxrss: C
allocations included, which tracemalloc does not see) is its own, and a case that runs too long is stopped
and reported as "over N s" instead of stalling the run (that is what the old code did).

    PYTHONPATH=. .venv/bin/python bench/hostile_pictures.py [--timeout 120]

Cases:
  scan-bomb-NNNk   a 6000 x 6000 grey progressive JPEG, last scan repeated to ~NNN KB: the time
                   until service.jobs.submit (bot.core.jobs) answers (refused now; decoded, minutes, before)
  worst-accepted   the slowest progressive JPEG still accepted: 6000 x 4000 (24 MP), 41 scans
  webp-bombs-x4    four 6300 x 6300 lossless WebP (39.7 MP each, tens of bytes) submitted at once
                   by four members: peak RSS of the process and the time to answer all four
  webp-16mp-x4     four 4096 x 4096 lossless WebP (16.8 MP, just under the decode limit), all
                   accepted: the memory bound for pictures we do decode
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from tests.hostile import lossless_webp, progressive_jpeg, repeat_last_scan, scan_bomb


def _rss_mb() -> float:
    """Peak RSS of this process so far. VmHWM (Linux) where there is one: ru_maxrss would also
    carry the parent's RSS at fork time (Linux keeps the larger across fork and exec), and the
    parent has just built the bombs."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux units: KiB


def _pictures(case: str) -> list[bytes]:
    if case.startswith("scan-bomb-"):
        return [scan_bomb(6000, int(case.removeprefix("scan-bomb-").removesuffix("k")) * 1000)]
    if case == "worst-accepted":
        plain = progressive_jpeg(Image.new("L", (6000, 4000), 128), quality=90)
        return [repeat_last_scan(plain, 41 - 6)]
    if case == "webp-bombs-x4":
        return [lossless_webp(6300)] * 4
    if case == "webp-16mp-x4":
        return [lossless_webp(4096)] * 4
    raise SystemExit(f"unknown case {case}")


async def _submit_all(pictures: list[bytes]) -> tuple[list[str], float]:
    """Through service.jobs.submit (bot.core.jobs) (SQLite in a temp dir, default config), one member each, all
    at once; the answers and the seconds until the last one."""
    from bot.clock import FakeClock
    from bot.config import load_config
    from bot.core.types import Accepted, Member
    from bot.service import RestyleService
    from bot.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(f'[bot]\ndata_dir = "{Path(tmp) / "data"}"\n')
        config = load_config(path, env={})
        store = await Store.open(config.bot.data_dir, config.store.url)
        service = RestyleService(config, store, FakeClock(), rng=random.Random(1))
        await service.start()
        try:
            start = time.perf_counter()
            answers = await asyncio.gather(
                *(service.jobs.submit(Member("bench", f"m{i}"), data, "/restyle cat", {}) for i, data in enumerate(pictures))
            )
            seconds = time.perf_counter() - start
        finally:
            service.stop_accepting()
            await service.close()
            await store.close()
    return ["accepted" if isinstance(a, Accepted) else f"refused: {a.message}" for a in answers], seconds


def child(folder: str) -> None:
    # Made by the parent: building a bomb costs more memory than refusing it, and ru_maxrss
    # only ever grows.
    pictures = [path.read_bytes() for path in sorted(Path(folder).iterdir())]
    before = _rss_mb()
    answers, seconds = asyncio.run(_submit_all(pictures))
    print(json.dumps({
        "bytes": [len(p) for p in pictures], "seconds": seconds, "answers": answers,
        "rss_before_mb": before, "peak_rss_mb": _rss_mb(),
    }))  # fmt: skip


def run_case(case: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        for i, data in enumerate(_pictures(case)):
            (Path(folder) / f"{i}.bin").write_bytes(data)
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--child", folder], capture_output=True, text=True, timeout=timeout, env=os.environ
            )
        except subprocess.TimeoutExpired:
            done = None
    if done is None:
        return {"case": case, "timed_out": True, "seconds": time.perf_counter() - start}
    if done.returncode != 0:
        raise SystemExit(f"{case} failed:\n{done.stderr}")
    return {"case": case, **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case before it is stopped")
    parser.add_argument("--cases", nargs="*", default=["scan-bomb-250k", "scan-bomb-400k", "worst-accepted", "webp-bombs-x4", "webp-16mp-x4"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    print(f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, Pillow {Image.__version__}, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")  # fmt: skip
    print(f"{'case':<16} {'file':>12} {'answer after':>14} {'peak RSS':>10} {'RSS before':>11}  answers")
    for case in args.cases:
        r = run_case(case, args.timeout)
        if r.get("timed_out"):
            print(f"{case:<16} {'':>12} {'> %.0f s' % args.timeout:>14} {'':>10} {'':>11}  still decoding, stopped")
            continue
        size = "+".join(f"{b / 1000:.1f}k" if b >= 1000 else f"{b}B" for b in sorted(set(r["bytes"])))
        count = f"{len(r['bytes'])}x " if len(r["bytes"]) > 1 else ""
        answers = sorted(set(r["answers"]))
        print(f"{case:<16} {count + size:>12} {r['seconds'] * 1000:>11.0f} ms {r['peak_rss_mb']:>7.0f} MB {r['rss_before_mb']:>8.0f} MB  "
              + "; ".join(f"{r['answers'].count(a)}x {a[:110]}" for a in answers))  # fmt: skip


if __name__ == "__main__":
    main()
