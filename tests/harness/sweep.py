"""A strength sweep's harness: the service harness with a recording front end that has
deliver_sweep (the recorder in tests/fakes.py has not: it stands for a front end that gets a
sweep's results one by one), and helpers that run the queue one batch at a time."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.core.types import DeliveryFailed, SweepDelivery
from bot.store import JobRecord
from tests.fakes import RecordingFrontEnd
from tests.harness.service import MAX, PRO, Harness


@dataclass
class SweepRecordingFrontEnd(RecordingFrontEnd):
    sweeps: list[SweepDelivery] = field(default_factory=list)
    fail_next_sweeps: int = 0

    async def deliver_sweep(self, sweep: SweepDelivery) -> None:
        if self.fail_next_sweeps:
            self.fail_next_sweeps -= 1
            raise DeliveryFailed("network down (fake)")
        assert sweep.input_picture and sweep.results
        self.sweeps.append(sweep)


async def make_sweeping(tmp_path: Path, *, deliver_sweep: bool = True, **kwargs) -> Harness:
    """The service harness with PRO and MAX members; its front end has deliver_sweep unless told."""
    h = Harness(tmp_path, **kwargs)
    if deliver_sweep:
        h.frontend = SweepRecordingFrontEnd(clock=h.clock)
    await h.open()
    for member, tier in ((PRO, "pro"), (MAX, "max")):
        await h.service.jobs.set_tier(member, tier, None, reason="admin", changed_by="test")
    return h


async def run_one_batch(h: Harness, max_batch: int = 1) -> list[str]:
    """Claim, run and complete one batch the way the worker does; returns its job ids."""
    batch = await h.service.batches.claim_batch(max_batch)
    outputs = h.engine.run(batch)
    await h.service.batches.complete(outputs)
    return [job.job_id for job in batch]


async def fail_one_batch(h: Harness, error: str) -> list[str]:
    """Claim one job and have the engine fail it (an EngineOutput with an error)."""
    batch = await h.service.batches.claim_batch(1)
    outputs = [replace(output, picture=None, error=error) for output in h.engine.run(batch)]
    await h.service.batches.complete(outputs)
    return [job.job_id for job in batch]


async def sweep_records(h: Harness, sweep_id: str) -> list[JobRecord]:
    return await h.store.sweep_jobs(sweep_id)
