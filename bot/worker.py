"""Feeds the engine: claim a batch of compatible jobs, run it off the event loop, hand back the
outputs. The seam is plain data both ways (EngineJob in, EngineOutput out), so a worker on
another machine can sit behind the same two calls."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, Sequence

from engine.api import EngineJob, EngineOutput, RestyleEngine

log = logging.getLogger("bot.worker")

ENGINE_FAILED = "The picture engine failed on this job; try again in a moment."


class BatchSource(Protocol):
    async def claim_batch(self, max_batch: int) -> list[EngineJob]: ...

    def report_progress(self, job_id: str, fraction: float) -> None: ...

    async def complete(self, outputs: list[EngineOutput]) -> None: ...


class Worker:
    """One engine, one batch at a time."""

    def __init__(self, source: BatchSource, engine: RestyleEngine) -> None:
        self.source = source
        self.engine = engine
        # The engine's own thread: in asyncio's shared pool a long batch would hold a thread
        # that uploads and deliveries need, and a burst of them would make the engine wait.
        self._engine_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self.busy = False
        self._stopping = False

    def interrupt(self) -> None:
        self.engine.interrupt()

    def stop(self) -> None:
        """Finish the batch in hand, then return from run()."""
        self._stopping = True

    async def run(self, retry_after_s: float = 1.0) -> None:
        while not self._stopping:
            try:
                batch = await self.source.claim_batch(self.engine.max_batch)
            except Exception:
                # The jobs went back in the queue (a locked or full database, say); try again
                # shortly rather than leave the GPU idle for the rest of the process's life.
                log.warning("could not start a batch; retrying in %.0f s", retry_after_s, exc_info=True)
                await asyncio.sleep(retry_after_s)
                continue
            if not batch:  # the service stopped accepting work
                break
            await self.run_batch(batch)

    async def run_batch(self, batch: Sequence[EngineJob]) -> None:
        loop = asyncio.get_running_loop()

        def on_progress(job_id: str, fraction: float) -> None:
            loop.call_soon_threadsafe(self.source.report_progress, job_id, fraction)

        self.busy = True  # until the outputs are stored, not just computed
        try:
            await self._run_and_complete(batch, on_progress)
        finally:
            self.busy = False

    async def _run_and_complete(self, batch: Sequence[EngineJob], on_progress) -> None:
        try:
            run = functools.partial(contextvars.copy_context().run, self.engine.run, list(batch), on_progress)
            outputs = await asyncio.get_running_loop().run_in_executor(self._engine_thread, run)
        except Exception:
            ids = ", ".join(job.job_id for job in batch)
            log.exception("engine crashed on jobs %s; they fail, the worker carries on", ids)
            outputs = [
                EngineOutput(job_id=job.job_id, seed=job.seed, steps=job.steps or 0, seconds=0.0, error=ENGINE_FAILED)
                for job in batch
            ]
        returned = {output.job_id for output in outputs}
        missing = [job for job in batch if job.job_id not in returned]
        for job in missing:  # an engine that drops a job must not leave it running forever
            log.error("engine returned nothing for job %s", job.job_id)
            outputs.append(EngineOutput(job.job_id, job.seed, job.steps or 0, 0.0, error=ENGINE_FAILED))
        await self.source.complete(outputs)
