"""The worker's duty cycle: how much of a fixed-speed engine one worker keeps busy.

    PYTHONPATH=. .venv/bin/python bench/worker_duty.py [--store sqlite|postgresql] [--jobs 480]
        [--batch-seconds 0.04] [--max-batch 4] [--worker-only] [--threads] [--json PATH]

The real service, store and worker in one process with a stand-in engine that takes exactly
--batch-seconds per batch of up to --max-batch jobs (a sleep: like a GPU, it holds no CPU and
no GIL), so its ideal is max_batch / batch_seconds jobs/s and everything else is the bot's.
Every job is a 1280x960 JPEG photo, prepared to 512x384 when submitted (the submissions happen
before the clock starts). Measured from the worker's start until every job is done and its
result handed to a front end that accepts it at once:

- jobs/s and its fraction of the stand-in's ideal;
- with --worker-only, until every job is done (no front end: no status updates, no deliveries);
- CPU ms per job outside the engine: the process's CPU time over the run (all threads: the
  event loop, SQLite's, encoding) divided by the jobs; the stand-in uses none.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bot.clock import SystemClock  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.core.types import Accepted, Delivery, JobView, Member  # noqa: E402
from bot.service import RestyleService  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.worker import Worker  # noqa: E402
from engine.api import EngineJob, EngineOutput, ProgressCallback, scheduled_steps  # noqa: E402


class FixedTimeEngine:
    """Sleeps `seconds` per batch and hands the input back as the result."""

    def __init__(self, max_batch: int, seconds: float) -> None:
        self.max_batch = max_batch
        self.seconds = seconds
        self.batches = 0
        self.busy_s = 0.0

    def run(self, jobs: Sequence[EngineJob], on_progress: ProgressCallback | None = None) -> list[EngineOutput]:
        started = time.perf_counter()
        time.sleep(self.seconds)
        self.batches += 1
        self.busy_s += time.perf_counter() - started
        return [
            EngineOutput(job.job_id, job.seed, scheduled_steps(job.steps or 4, job.strength), self.seconds, picture=job.picture)
            for job in jobs
        ]

    def interrupt(self) -> None:
        pass


class CountingFrontEnd:
    platform = "bench"

    def __init__(self) -> None:
        self.delivered = 0
        self.all_delivered = asyncio.Event()
        self.expected = 0

    async def job_updated(self, job: JobView) -> None:
        pass

    async def deliver_result(self, delivery: Delivery) -> None:
        self.delivered += 1
        if self.delivered >= self.expected:
            self.all_delivered.set()

    async def deliver_failure(self, job: JobView) -> None:
        raise RuntimeError(f"job {job.id} failed: {job.error}")


def photo_jpeg(seed: int = 1, size: tuple[int, int] = (1280, 960)) -> bytes:
    """Photo-like: smooth shapes plus sensor noise, so the JPEG is of a photo's size (~300 KB)."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([
        128 + 100 * np.sin(x / (60 + 20 * c) + c) * np.cos(y / (80 + 10 * c)) for c in range(3)
    ], axis=-1)
    noisy = base + rng.normal(0, 12, base.shape)
    buffer = io.BytesIO()
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by thread name (Linux's /proc)."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = re.sub(r"_\d+$", "", names.get(int(task.name), "?"))  # a pool's threads together
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return found


def write_config(folder: Path, url: str, max_batch: int) -> Path:
    path = folder / "config.toml"
    path.write_text(
        f'[bot]\ndata_dir = "{folder / "data"}"\n'
        f'[store]\nurl = "{url}"\nlease_s = 30\npoll_s = 0.5\n'
        f"[engine]\nmax_batch = {max_batch}\n"
        "[web]\nenabled = false\n"
        "[tiers.free]\nmax_queued = 100000\ndaily_quota = 100000\nmin_turnaround_s = 0\n"
    )
    return path


async def measure(folder: Path, url: str, jobs: int, batch_seconds: float, max_batch: int, *, worker_only: bool = False, by_thread: bool = False) -> dict:
    config = load_config(write_config(folder, url, max_batch), env={})
    store = await Store.open(config.bot.data_dir, config.store.url)
    service = RestyleService(config, store, SystemClock(), rng=random.Random(7))
    frontend = CountingFrontEnd()
    frontend.expected = jobs
    if not worker_only:
        service.dispatch.register(frontend)
    await service.start()
    engine = FixedTimeEngine(max_batch, batch_seconds)
    stored_all = asyncio.Event()
    stored = 0
    complete = service.batches.complete

    async def counted_complete(outputs):
        nonlocal stored
        await complete(outputs)
        stored += len(outputs)
        if stored >= jobs:
            stored_all.set()

    service.batches.complete = counted_complete  # type: ignore[method-assign]
    worker = Worker(service.batches, engine)
    try:
        photo = photo_jpeg()
        members = max(1, jobs // 6)  # six each: under the flood guard's 10 per 10 s
        for i in range(jobs):
            answer = await service.jobs.submit(Member("bench", f"m{i % members}"), photo, f"/restyle job {i}", {})
            assert isinstance(answer, Accepted), answer
        print("measuring from now", file=sys.stderr, flush=True)  # a profiler may attach here
        threads0 = thread_cpu_s() if by_thread else {}
        cpu0, t0 = time.process_time(), time.perf_counter()
        task = asyncio.create_task(worker.run())
        if worker_only:
            # Until the last batch is stored: counted as complete() returns, where polling the
            # database every few ms (as this did first) cost the worker's database thread time.
            await asyncio.wait_for(stored_all.wait(), timeout=600)
        else:
            await asyncio.wait_for(frontend.all_delivered.wait(), timeout=600)
        span = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        threads = {name: s - threads0.get(name, 0.0) for name, s in thread_cpu_s().items()} if by_thread else {}
        counts = await store.count_by_status()
        assert counts.get("done") == jobs, counts
    finally:
        service.stop_accepting()
        worker.stop()
        await service.close()
        if "task" in locals():
            await asyncio.wait_for(task, 30)
        await store.close()
    ideal = max_batch / batch_seconds
    rate = jobs / span
    return {
        "jobs": jobs,
        "batch_seconds": batch_seconds,
        "max_batch": max_batch,
        "batches": engine.batches,
        "span_s": round(span, 3),
        "ideal_jobs_s": round(ideal, 1),
        "jobs_s": round(rate, 1),
        "fraction": round(rate / ideal, 3),
        "engine_busy_fraction": round(engine.busy_s / span, 3),
        "cpu_ms_per_job": round(1000 * cpu / jobs, 2),
        **({"cpu_ms_per_job_by_thread": {name: round(1000 * s / jobs, 2) for name, s in sorted(threads.items(), key=lambda kv: -kv[1])}} if by_thread else {}),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=480)
    parser.add_argument("--batch-seconds", type=float, default=0.04)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--worker-only", action="store_true",
                        help="no front end in the process (a worker process on PostgreSQL): no status updates, no deliveries")
    parser.add_argument("--threads", action="store_true", help="also CPU ms per job of each thread (Linux)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="restyle-worker-duty-"))
    try:
        if args.store == "postgresql":
            from tests.pg_cluster import PgCluster

            with PgCluster.temporary(prefix="restyle-pg-duty-") as cluster:
                cluster.start()
                url = cluster.create_database("duty")
                result = asyncio.run(measure(folder, url, args.jobs, args.batch_seconds, args.max_batch, worker_only=args.worker_only, by_thread=args.threads))
        else:
            result = asyncio.run(measure(folder, "", args.jobs, args.batch_seconds, args.max_batch, worker_only=args.worker_only, by_thread=args.threads))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["store"] = args.store
    result["worker_only"] = args.worker_only
    print(f"{args.store}: {result['jobs']} jobs of 1280x960 JPEG (prepared to 512), stand-in {args.batch_seconds * 1000:.0f} ms "
          f"per batch of {args.max_batch}; {platform.node()}, Python {platform.python_version()}")
    print(f"  {result['jobs_s']:.1f} jobs/s of an ideal {result['ideal_jobs_s']:.1f} = {result['fraction']:.0%}; "
          f"engine busy {result['engine_busy_fraction']:.0%}; CPU outside the engine {result['cpu_ms_per_job']:.2f} ms per job")
    for name, ms in result.get("cpu_ms_per_job_by_thread", {}).items():
        print(f"    {name}: {ms:.2f} ms per job")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
