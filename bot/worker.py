"""Feeds the engine: claim a batch of compatible jobs, run it off the event loop, hand back the
outputs. The seam is plain data both ways (EngineJob in, EngineOutput out), so a worker on
another machine can sit behind the same two calls."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from bot.i18n import N_
from engine.api import EngineJob, EngineOutput, RestyleEngine

log = logging.getLogger("bot.worker")

ENGINE_FAILED = N_("The picture engine failed on this job; try again in a moment.")


class BatchSource(Protocol):
    async def claim_batch(self, max_batch: int) -> list[EngineJob]: ...

    def report_progress(self, job_id: str, fraction: float) -> None: ...

    async def complete(self, outputs: list[EngineOutput]) -> None: ...

    async def give_back(self, job_ids: list[str]) -> None: ...


CANCELLED = N_("This job was cancelled.")
# Batches whose results may be in the database's hands at once. Two: on PostgreSQL storing a
# batch of 4 took ~58 ms against a 40 ms engine (each write is a round trip and the server
# compresses the pictures), and a pool runs two batches' transactions side by side; more would
# only hold more pictures in memory.
STORING_BEHIND = 2
# The next batch is claimed this many claim-durations (plus CLAIM_MARGIN_S) before the running
# batch is expected to end (its predecessor's engine time), not as soon as it starts: the
# claim is ready in time, and a job of a higher tier that arrives meanwhile still makes the
# next batch unless it arrives in those last milliseconds. With no engine time known yet
# (the first batch), the claim waits for the engine to finish, as a serial worker would.
CLAIM_LEAD = 2.0
CLAIM_MARGIN_S = 0.005


class Worker:
    """One engine, fed as a pipeline of three stages so that it never waits for the rest of
    the bot: while batch N runs on the engine's thread, batch N+1 is claimed and its pictures
    read (claim-ahead), and the results of batches N-1 (and N-2, see STORING_BEHIND) are
    stored and handed to delivery (behind).

    Why at most one batch ahead: a claimed batch is the best-ranked work at the moment it is
    claimed; claiming further ahead would make a job that arrives later, of a higher tier,
    wait behind more than the one batch the pipeline needs. Why a bound behind: an unbounded
    backlog of results would hold their pictures in memory."""

    def __init__(
        self, source: BatchSource, engine: RestyleEngine, monotonic: Callable[[], float] = time.perf_counter
    ) -> None:
        self.source = source
        self.engine = engine
        self._monotonic = monotonic
        self._engine_s: float | None = None  # the last batch's engine time
        self._claim_s = 0.0  # the last claim's time
        self._engine_idle = asyncio.Event()
        # The engine's own thread: in asyncio's shared pool a long batch would hold a thread
        # that uploads and deliveries need, and a burst of them would make the engine wait.
        self._engine_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._stopping = False
        self._stopped = asyncio.Event()
        self._on_engine: list[str] = []  # the job ids of the batch the engine runs now
        self._cancelled: set[str] = set()  # held jobs cancelled since they were claimed
        self._in_engine = False
        self._storing: list[asyncio.Task[None]] = []  # oldest first, at most STORING_BEHIND

    @property
    def busy(self) -> bool:
        """A batch is on the engine or its outputs are not stored yet."""
        return self._in_engine or any(not task.done() for task in self._storing)

    def interrupt(self, job_id: str | None = None) -> None:
        """A held job was cancelled (None: stop the engine whatever it runs). Called on the
        event loop. The engine stops only when no job of its batch is still wanted; a job of
        the batch claimed ahead is dropped before that batch starts."""
        if job_id is None:
            self.engine.interrupt()
            return
        self._cancelled.add(job_id)
        if self._on_engine and self._cancelled.issuperset(self._on_engine):
            self.engine.interrupt()

    def stop(self) -> None:
        """Finish the batch in hand, give back the one claimed ahead, then return from run()."""
        self._stopping = True
        self._stopped.set()

    async def run(self, retry_after_s: float = 1.0) -> None:
        ahead = asyncio.create_task(self._claim(retry_after_s), name="claim-ahead")
        try:
            while True:
                batch = await self._next(ahead)
                if not batch:  # stopping, or the service stopped accepting work
                    break
                self._engine_idle.clear()
                ahead = asyncio.create_task(self._claim_when_due(retry_after_s), name="claim-ahead")
                await self.run_batch(batch)
        finally:
            if not ahead.done():
                # Only while waiting for work or the database (the service is not stopping,
                # or it would have answered []): a claim cut short inside the store's
                # transaction leaves its jobs 'running' until their lease ends or, on SQLite,
                # the next start; both put them back in line.
                ahead.cancel()
            held = await asyncio.gather(ahead, return_exceptions=True)
            if isinstance(held[0], list) and held[0]:
                await self.source.give_back([job.job_id for job in held[0]])
            await asyncio.gather(*self._storing, return_exceptions=True)

    async def _next(self, ahead: asyncio.Task[list[EngineJob]]) -> list[EngineJob]:
        if not self._stopping:
            stopped = asyncio.create_task(self._stopped.wait())
            await asyncio.wait({ahead, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
        if self._stopping or not ahead.done():
            return []  # run() gives back what the claim held
        return ahead.result()

    async def _claim_when_due(self, retry_after_s: float) -> list[EngineJob]:
        """Claim the next batch shortly before the engine is expected to be free (CLAIM_LEAD)."""
        if self._engine_s is None:
            await self._engine_idle.wait()
        else:
            due = self._engine_s - CLAIM_LEAD * self._claim_s - CLAIM_MARGIN_S
            if due > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due):
                        await self._engine_idle.wait()
        return await self._claim(retry_after_s)

    async def _claim(self, retry_after_s: float) -> list[EngineJob]:
        while True:
            try:
                started = self._monotonic()
                batch = await self.source.claim_batch(self.engine.max_batch)
                elapsed = self._monotonic() - started
                if batch and elapsed < 0.5:  # a longer claim waited for work, not the database
                    self._claim_s = elapsed
                return batch
            except Exception:
                # The jobs went back in the queue (a locked or full database, say); try again
                # shortly rather than leave the GPU idle for the rest of the process's life.
                log.warning("could not start a batch; retrying in %.0f s", retry_after_s, exc_info=True)
                await asyncio.sleep(retry_after_s)

    async def run_batch(self, batch: Sequence[EngineJob]) -> None:
        """Run one batch on the engine, then store its outputs behind the next batch."""
        loop = asyncio.get_running_loop()

        def on_progress(job_id: str, fraction: float) -> None:
            loop.call_soon_threadsafe(self.source.report_progress, job_id, fraction)

        wanted = [job for job in batch if job.job_id not in self._cancelled]
        dropped = [
            EngineOutput(job.job_id, job.seed, job.steps or 0, 0.0, error=CANCELLED)
            for job in batch
            if job.job_id in self._cancelled
        ]
        self._in_engine = True
        started = self._monotonic()
        try:
            outputs = await self._run_engine(wanted, on_progress) if wanted else []
        finally:
            self._in_engine = False
            self._on_engine = []
            self._engine_idle.set()
        if wanted:
            self._engine_s = self._monotonic() - started
        self._storing = [task for task in self._storing if not task.done()]
        while len(self._storing) >= STORING_BEHIND:
            await asyncio.gather(self._storing.pop(0), return_exceptions=True)
        self._storing.append(asyncio.create_task(self._store(batch, outputs + dropped), name="store-results"))

    async def _run_engine(self, batch: list[EngineJob], on_progress) -> list[EngineOutput]:
        self._on_engine = [job.job_id for job in batch]
        try:
            run = functools.partial(contextvars.copy_context().run, self.engine.run, list(batch), on_progress)
            outputs = await asyncio.get_running_loop().run_in_executor(self._engine_thread, run)
        except Exception:
            ids = ", ".join(job.job_id for job in batch)
            log.exception("engine crashed on jobs %s; they fail, the worker carries on", ids)
            return [
                EngineOutput(job_id=job.job_id, seed=job.seed, steps=job.steps or 0, seconds=0.0, error=ENGINE_FAILED)
                for job in batch
            ]
        return list(outputs)

    async def _store(self, batch: Sequence[EngineJob], outputs: list[EngineOutput]) -> None:
        returned = {output.job_id for output in outputs}
        for job in batch:  # an engine that drops a job must not leave it running forever
            if job.job_id not in returned:
                log.error("engine returned nothing for job %s", job.job_id)
                outputs.append(EngineOutput(job.job_id, job.seed, job.steps or 0, 0.0, error=ENGINE_FAILED))
        try:
            await self.source.complete(outputs)
        except Exception:
            # complete() retries the database itself; what still fails stays 'running' and goes
            # back in line when its lease ends. The worker must carry on either way.
            log.exception("could not store the results of jobs %s", ", ".join(o.job_id for o in outputs))
        finally:
            self._cancelled.difference_update(job.job_id for job in batch)
