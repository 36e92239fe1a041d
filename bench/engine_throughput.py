"""Engine throughput on the CPU test model: the naive way (one diffusers pipeline call per
request, as a simple bot does) against DiffusersEngine.run's batching (1, 2, 4 per call).

Same model (engine/testmodel.py, random weights, 8x VAE), same pictures, prompts, seeds,
strength, steps and guidance for every variant. Each variant is warmed up, then the whole set
of pictures is run `--repeats` times; the variants take turns within each repeat, so a noisy
neighbour on a shared machine slows them all alike.

    PYTHONPATH=. .venv/bin/python bench/engine_throughput.py [--pictures 16] [--sizes 128 256]
        [--steps 4] [--strength 0.5] [--batches 1 2 4] [--repeats 5] [--threads 1] [--json FILE]

The naive baseline: AutoPipelineForImage2Image.from_pretrained(dir) once, then
pipe(prompt, image, strength, num_inference_steps, guidance_scale, generator) per picture,
each with its own torch.Generator seeded like the engine's job.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NAIVE = "naive (1 call per picture)"
PROMPTS = ("oil painting", "a watercolour of a harbour", "pencil sketch", "neon cyberpunk city at night")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def pictures(n: int, size: int) -> list[Any]:
    """Distinct pictures with detail: Mandelbrot crops at shifted centres, tinted."""
    from PIL import Image

    out = []
    for i in range(n):
        x = -0.75 + 0.05 * i
        detail = Image.effect_mandelbrot((size, size), (x - 1.3, -1.2, x + 1.1, 1.2), 50)
        ramp = Image.linear_gradient("L").resize((size, size)).rotate(20 * i)
        out.append(Image.merge("RGB", (detail, ramp, detail.transpose(Image.Transpose.FLIP_LEFT_RIGHT))))
    return out


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pictures", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256],
                        help="square sides in px, multiples of 8 (default 128 256)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--guidance", type=float, default=0.0, help="0: no CFG, like turbo models (default)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared 2-core machine OpenMP spinning makes more slower)")
    parser.add_argument("--model", type=Path, help="a saved pipeline folder (default: build the tiny test model)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if any(size % 8 for size in args.sizes):
        parser.error("--sizes must be multiples of 8")

    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import diffusers
    import torch
    from diffusers import AutoPipelineForImage2Image

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except ImportError:
        pass
    from engine.api import EngineJob, denoising_steps
    from engine.pipeline import DiffusersEngine
    from engine.testmodel import make_test_model

    torch.set_num_threads(args.threads)
    started_all = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="restyle-bench-model-")
    model_dir = args.model or make_test_model(Path(tmp.name))

    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}")
    print(f"model: {'tiny test model (engine/testmodel.py)' if not args.model else model_dir}; "
          f"{args.pictures} pictures per size, strength {args.strength}, {args.steps} steps "
          f"({denoising_steps(args.steps, args.strength)} UNet calls each), guidance {args.guidance:g}, "
          f"{args.repeats} repeats", flush=True)  # fmt: skip

    # The naive bot: one pipeline, one call per request, its own generator per call.
    naive_pipe = AutoPipelineForImage2Image.from_pretrained(str(model_dir), local_files_only=True)
    naive_pipe.set_progress_bar_config(disable=True)
    engines = {
        batch: DiffusersEngine.load(
            str(model_dir), device="cpu", dtype="float32", steps=args.steps, guidance_scale=args.guidance,
            max_batch=batch, turbo=False, local_files_only=True,
        )  # fmt: skip
        for batch in args.batches
    }
    rows: list[dict[str, Any]] = []
    checks: dict[int, str] = {}
    for size in args.sizes:
        images = pictures(args.pictures, size)
        jobs = [
            EngineJob(f"job{i}", images[i], PROMPTS[i % len(PROMPTS)], args.strength, seed=1000 + i, steps=args.steps)
            for i in range(args.pictures)
        ]

        def naive_run(jobs: list[EngineJob] = jobs) -> list[Any]:
            out = []
            for job in jobs:
                result = naive_pipe(
                    prompt=job.prompt,
                    image=job.picture,
                    strength=job.strength,
                    num_inference_steps=job.steps,
                    guidance_scale=args.guidance,
                    generator=torch.Generator("cpu").manual_seed(job.seed),
                )
                out.append(result.images[0])
            return out

        variants: dict[str, Callable[[], list[Any]]] = {NAIVE: naive_run}
        for batch, engine in engines.items():

            def engine_run(engine: DiffusersEngine = engine, jobs: list[EngineJob] = jobs) -> list[Any]:
                outputs = engine.run(jobs)
                bad = [o.error for o in outputs if o.picture is None]
                if bad:
                    raise RuntimeError(f"engine failed: {bad[0]}")
                return [o.picture for o in outputs]

            variants[f"engine, batch {batch}"] = engine_run

        # Warm-up (first calls allocate and pick kernels), and a check that batch 1 is the naive call.
        first = {name: run() for name, run in variants.items()}
        checks[size] = _max_pixel_difference(first[NAIVE], first.get("engine, batch 1"))
        print(f"{size}x{size}: warm-up done; engine batch 1 vs naive, largest pixel difference: {checks[size]}", flush=True)

        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for repeat in range(args.repeats):
            for name, run in variants.items():
                started = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - started)
            print(f"  repeat {repeat + 1}: " + ", ".join(f"{name} {args.pictures / s[-1]:.2f}/s" for name, s in seconds.items()),
                  flush=True)  # fmt: skip
        naive_median = statistics.median(args.pictures / s for s in seconds[NAIVE])
        for name, values in seconds.items():
            rates = [args.pictures / s for s in values]
            rows.append({
                "size": size, "variant": name, "pictures_per_s": spread(rates),
                "ms_per_picture": statistics.median(s * 1000 / args.pictures for s in values),
                "speedup": statistics.median(rates) / naive_median,
                # Paired: each repeat's rate over the naive rate of the same repeat (the variants
                # take turns, so this cancels most of a shared machine's drift).
                "paired": spread([n / s for n, s in zip(seconds[NAIVE], values)]),
            })  # fmt: skip

    print()
    print("| picture | variant | pictures/s median (min–max) | ms per picture (median) | vs naive: ratio of medians | vs naive: paired per repeat, median (min–max) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        paired = row["paired"]
        rate = row["pictures_per_s"]
        print(f"| {row['size']}x{row['size']} | {row['variant']} | {rate['median']:.2f} ({rate['min']:.2f}–{rate['max']:.2f}) "
              f"| {row['ms_per_picture']:.0f} | {row['speedup']:.2f}x "
              f"| {paired['median']:.2f}x ({paired['min']:.2f}–{paired['max']:.2f}) |")  # fmt: skip
    total = time.perf_counter() - started_all
    print(f"\nbenchmark took {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": machine(), "date": datetime.now(timezone.utc).isoformat(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "settings": {k: str(v) for k, v in vars(args).items()},
            "batch1_vs_naive_max_pixel_difference": checks, "rows": rows, "seconds": total,
        }, indent=2))  # fmt: skip
    tmp.cleanup()


def _max_pixel_difference(a: list[Any], b: list[Any] | None) -> str:
    if b is None:
        return "n/a"
    from PIL import ImageChops

    worst = 0
    for x, y in zip(a, b):
        extrema = ImageChops.difference(x.convert("RGB"), y.convert("RGB")).getextrema()
        worst = max(worst, *(hi for _, hi in extrema))
    return f"{worst} (0 = identical)"


if __name__ == "__main__":
    main()
