"""What a job looks like from outside (JobView): its position, ETA and progress.

The progress of running jobs and the recent batch timings arrive with job events (Dispatch)
and with the worker's results (Batches); both write them here, every use case reads them."""

from __future__ import annotations

from collections import deque

from bot.clock import Clock
from bot.config import Config
from bot.core.types import JobView
from bot.store import JobRecord, Store

DEFAULT_BATCH_SECONDS = 8.0


class JobViews:
    def __init__(self, config: Config, store: Store, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.progress: dict[str, float] = {}
        self.batch_seconds: deque[float] = deque(maxlen=config.queue.eta_window)

    async def load_timings(self) -> None:
        """The ETA's batch timings from the database (at start, and on each poll: other
        processes' workers add theirs)."""
        recent = await self.store.recent_seconds(self.batch_seconds.maxlen or 20)
        if recent:
            self.batch_seconds.clear()
            self.batch_seconds.extend(reversed(recent))

    async def eta(self, job: JobRecord, position: int | None, running: int | None = None) -> float:
        batch_s = sum(self.batch_seconds) / len(self.batch_seconds) if self.batch_seconds else DEFAULT_BATCH_SECONDS
        max_batch = self.config.engine.max_batch
        if running is None:
            running = await self.store.running_count() if job.status == "queued" else 0
        ahead = (position or 0) // max_batch + (1 if running else 0)
        eta = batch_s * (ahead + (1 if job.status == "queued" else 0.5))
        turnaround = self.config.tier(job.tier).min_turnaround_s
        return max(eta, job.created_at + turnaround - self.clock.now())

    async def view(self, job: JobRecord, *, position: int | None = None, running: int | None = None) -> JobView:
        """`position` and `running` (the count of running jobs) where the caller knows them
        already; read from the store otherwise."""
        if position is None:
            position = await self.store.position(job.id) if job.status == "queued" else None
        active = job.status in ("queued", "running")
        size, ended = 1, 0
        if job.sweep_id is not None:
            sweep = await self.store.sweep_jobs(job.sweep_id)
            size, ended = len(sweep), sum(1 for one in sweep if one.status not in ("queued", "running"))
        return JobView(
            id=job.id,
            platform=job.platform,
            user_id=job.platform_user_id,
            reply=job.reply,
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            strength=job.strength,
            seed=job.seed,
            steps=job.steps,
            output_format=job.output_format,
            tier=job.tier,
            status=job.status,
            width=job.width,
            height=job.height,
            created_at=job.created_at,
            position=position,
            eta_s=await self.eta(job, position, running) if active else None,
            progress=self.progress.get(job.id) if job.status == "running" else None,
            seconds=job.seconds,
            error=job.error,
            deliver_after=job.deliver_after,
            delivered=job.delivered_at is not None,
            sweep_id=job.sweep_id,
            sweep_size=size,
            sweep_ended=ended,
        )
