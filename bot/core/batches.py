"""The worker's side of the queue: claim a batch under a lease, renew it, store what the engine
made (after the safety check) and hand finished jobs to Dispatch.

A worker holds its jobs under a lease it renews; if its process dies the renewals stop and the
jobs go back in line once the lease has run out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.clock import Clock
from bot.config import Config
from bot.core import texts
from bot.core.dispatch import STORE_RETRY_S, Dispatch
from bot.core.views import JobViews
from bot.metrics import ServiceMetrics
from bot.store import JobRecord, Store, StoreError
from engine.api import EngineJob, EngineOutput, SafetyCheck
from engine.pictures import open_stored_all, stored_bytes

log = logging.getLogger("bot.core.batches")

INPUTS_IN_HAND_MAX = 64  # input pictures kept from claim to delivery (~590 KB each at 512x384)


@dataclass
class _PreparedOutput:
    output: EngineOutput
    record: JobRecord | None
    stored: bytes | None = None  # the result picture as stored
    withheld: bool = False  # by the safety check


class Batches:
    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Clock,
        dispatch: Dispatch,
        views: JobViews,
        metrics: ServiceMetrics,
        *,
        instance_id: str,
        safety_check: SafetyCheck | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.dispatch = dispatch
        self.views = views
        self.metrics = metrics
        self.instance_id = instance_id
        # Returns True for a result that must not be sent (diffusers' safety checker, or a test's).
        self.safety_check = safety_check
        self.store_retry_s: tuple[float, ...] = STORE_RETRY_S
        # Called with a cancelled job's id when this process's worker holds that job: the
        # worker stops its engine, or drops the job from a batch claimed ahead.
        self._interrupt_engine: Callable[[str], None] | None = None
        # Batches this process's worker holds (claimed ahead, on the engine, being stored),
        # each with the task renewing its lease: a pipelined worker holds up to three at once.
        self._leases: dict[frozenset[str], asyncio.Task[None]] = {}
        # The input pictures of the jobs this process's worker runs, as read at the claim: a result
        # delivered at once (no minimum turnaround left) goes out with them and its stored bytes,
        # not read back from the database (~1.2 MB a job). Bounded: a batch given back leaves its own.
        self._inputs_in_hand: dict[str, bytes] = {}

    def set_engine_interrupt(self, interrupt: Callable[[str], None]) -> None:
        self._interrupt_engine = interrupt

    def interrupt_if_held(self, job_id: str) -> None:
        """A running job was cancelled: tell this process's worker if it holds the job. The
        worker stops its engine only when no job of the batch there is still wanted, and drops
        the job from a batch it claimed ahead."""
        if self._interrupt_engine and any(job_id in ids for ids in self._leases):
            self._interrupt_engine(job_id)

    async def close(self) -> None:
        """Stop renewing every lease (the jobs stay this process's until their leases run out)."""
        tasks = list(self._leases.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Claiming ----------------------------------------------------------------------------------

    async def claim_batch(self, max_batch: int) -> list[EngineJob]:
        """Wait for work, then take the best job and compatible companions, marked running
        under this process's lease (renewed until `complete`)."""
        lease_s = self.config.store.lease_s
        work = self.dispatch.work
        while True:
            if not self.dispatch.accepting:  # shutting down: what waits stays queued for the next start
                return []
            work.clear()  # before looking, so a job queued meanwhile wakes the wait below
            now = self.clock.now()
            if self.store.shared:
                expired = await self.store.requeue_expired(now)
                if expired:
                    log.warning("jobs %s lost their worker (its lease ran out); back in line at their rank",
                                ", ".join(expired))  # fmt: skip
            records = await self.store.claim_batch(max_batch, self.instance_id, now, now + lease_s)
            if records:
                break
            # Notifications wake this at once; the timeout is the fallback when one is lost.
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that lands as the event fires, and the cancelled worker would loop on forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.store.poll_s):
                    await work.wait()
        ids = [record.id for record in records]
        batch = frozenset(ids)
        self._leases[batch] = asyncio.get_running_loop().create_task(self._renew_lease(ids), name="lease")
        try:
            # From the database at the last moment: a long queue must not hold its pictures in RAM.
            found = await self.store.pictures(ids, "input")  # one read for the batch
            missing = [i for i in ids if i not in found]
            if missing:
                raise StoreError(f"the input pictures of jobs {', '.join(missing)} are missing")
            images = await asyncio.to_thread(open_stored_all, [found[i] for i in ids])
            for record in records:
                if record.platform in self.dispatch.frontends:
                    self._inputs_in_hand[record.id] = found[record.id]
            while len(self._inputs_in_hand) > INPUTS_IN_HAND_MAX:
                self._inputs_in_hand.pop(next(iter(self._inputs_in_hand)))
            await self.dispatch.publish(ids[0], "started", batch=ids[1:])
        except asyncio.CancelledError:  # a stopping worker cut its claim-ahead short
            await self._end_leases(batch)
            await _safe(self.store.requeue(ids))
            raise
        except Exception:
            log.exception("could not start jobs %s; they go back in the queue", ", ".join(ids))
            await self._end_leases(batch)
            await _safe(self.store.requeue(ids))
            raise
        self.metrics.batch_started([(r.tier, now - r.created_at) for r in records])
        return [
            EngineJob(
                job_id=r.id,
                picture=image,
                prompt=r.prompt,
                strength=r.strength,
                seed=r.seed,
                steps=r.steps,
                negative_prompt=r.negative_prompt,
            )
            for r, image in zip(records, images, strict=True)
        ]

    async def _renew_lease(self, ids: list[str]) -> None:
        """Keep the claimed jobs while the engine works; if this process dies, the renewals stop
        and the jobs go back in line once the lease has run out."""
        lease_s = self.config.store.lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                held = await self.store.renew_lease(self.instance_id, ids, self.clock.now() + lease_s)
            except StoreError as exc:
                log.warning("could not renew the lease on jobs %s (%s); retrying", ", ".join(ids), exc)
                continue
            if held < len(ids):
                log.info(
                    "%d of jobs %s are no longer this worker's (cancelled or taken over)",
                    len(ids) - held,
                    ", ".join(ids),
                )

    async def _end_leases(self, job_ids: frozenset[str]) -> None:
        """Stop renewing the lease of every held batch among `job_ids`."""
        ended = [self._leases.pop(batch) for batch in list(self._leases) if batch & job_ids]
        for task in ended:
            task.cancel()
        await asyncio.gather(*ended, return_exceptions=True)

    async def give_back(self, job_ids: list[str]) -> None:
        """Jobs claimed ahead that the worker will not run (it is stopping): back in line at
        their rank, at once rather than when their lease runs out."""
        await self._end_leases(frozenset(job_ids))
        await _safe(self.store.requeue(job_ids))

    def report_progress(self, job_id: str, fraction: float) -> None:
        """Called on the event loop (the worker hops threads) as the engine steps."""
        self.dispatch.spawn(self.dispatch.publish(job_id, "progress", p=round(fraction, 3)))

    # Completing --------------------------------------------------------------------------------

    async def complete(self, outputs: list[EngineOutput]) -> None:
        """Store what the engine made and announce it. One failed job fails alone; a database
        that is away for a moment (a restart) is retried while the lease holds the jobs.

        First all of the batch in one transaction (one commit where each job took its own:
        the database's thread is what a fast engine waits for); if that fails, job by job."""
        now = self.clock.now()
        if outputs:
            self.views.batch_seconds.append(max(o.seconds for o in outputs))
            self.metrics.batch_ran(max(o.seconds for o in outputs))
        try:
            for output in outputs:
                self.views.progress.pop(output.job_id, None)
            try:
                prepared = await self._prepare_outputs(outputs)
                async with self.store.db.transaction():
                    finished = [await self._write_output(p, now) for p in prepared]
            except (StoreError, OSError) as exc:
                log.warning("could not store the results of jobs %s together (%s); storing them one by one",
                            ", ".join(o.job_id for o in outputs), exc)  # fmt: skip
            else:
                for p, done in zip(prepared, finished, strict=True):
                    await self._announce_output(p, done)
                return
            for output in outputs:  # the attempt together was each job's first try
                for attempt, delay in enumerate(self.store_retry_s, start=2):
                    await asyncio.sleep(delay)
                    try:
                        await self._store_output(output, now)
                        break
                    except (StoreError, OSError) as exc:
                        log.warning("job %s: could not store the result (try %d: %s)", output.job_id, attempt, exc)
                else:
                    # The job stays 'running': when its lease ends (or, on SQLite, at the next
                    # start) it goes back in line, so it is never done without a result.
                    log.error("could not store the result of job %s; it will run again", output.job_id)
        finally:
            await self._end_leases(frozenset(output.job_id for output in outputs))

    async def _store_output(self, output: EngineOutput, now: float) -> None:
        prepared = await self._prepare_output(output)
        await self._announce_output(prepared, await self._write_output(prepared, now))

    async def _prepare_outputs(self, outputs: list[EngineOutput]) -> list[_PreparedOutput]:
        """_prepare_output for a batch, with one safety-checker call for all its pictures
        where the checker takes batches (engine.safety.SafetyChecker.check_batch)."""
        by_id = {record.id: record for record in await self.store.jobs(output.job_id for output in outputs)}
        records = [by_id.get(output.job_id) for output in outputs]
        check_batch = getattr(self.safety_check, "check_batch", None)
        checked = [
            i for i, (output, record) in enumerate(zip(outputs, records, strict=True))
            if record is not None and output.picture is not None and self._needs_check(record)
        ]  # fmt: skip
        verdicts: dict[int, bool] = {}
        if check_batch is not None and checked:
            try:
                flags = await asyncio.to_thread(check_batch, [outputs[i].picture for i in checked])
                verdicts = dict(zip(checked, (bool(flag) for flag in flags), strict=True))
            except Exception:
                # Fail closed, as for one picture: unchecked results are not sent.
                ids = ", ".join(outputs[i].job_id for i in checked)
                log.exception("jobs %s: the safety check failed; the results are withheld", ids)
                verdicts = dict.fromkeys(checked, True)
        return [
            await self._prepare_output(output, record, verdicts.get(i))
            for i, (output, record) in enumerate(zip(outputs, records, strict=True))
        ]

    async def _prepare_output(
        self, output: EngineOutput, record: JobRecord | None = None, flagged: bool | None = None
    ) -> _PreparedOutput:
        """Everything but the writes: the job, the safety check (unless `flagged` is its
        verdict already), the bytes to store."""
        if record is None:
            record = await self.store.job(output.job_id)
        if record is None or output.picture is None:
            return _PreparedOutput(output, record)
        if flagged if flagged is not None else await self._flagged(record, output):
            return _PreparedOutput(output, record, withheld=True)
        return _PreparedOutput(output, record, stored=await asyncio.to_thread(stored_bytes, output.picture))

    def _needs_check(self, record: JobRecord) -> bool:
        if self.safety_check is None:
            return False
        return not (self.config.moderation.exempt_age_restricted and record.reply.get("age_restricted"))

    async def _flagged(self, record: JobRecord, output: EngineOutput) -> bool:
        check = self.safety_check
        if check is None or output.picture is None or not self._needs_check(record):
            return False
        try:
            return await asyncio.to_thread(check, output.picture)
        except Exception:
            # Fail closed: an unchecked result is not sent (the job fails, its quota comes back),
            # and the worker carries on; raising here used to end the worker task.
            log.exception("job %s: the safety check failed; the result is withheld", record.id)
            return True

    async def _write_output(self, p: _PreparedOutput, now: float) -> bool:
        """The job's end in the database; False when this worker no longer holds it."""
        output, record = p.output, p.record
        if record is None:
            return False
        if p.withheld:
            return await self.store.mark_failed(output.job_id, texts.WITHHELD, now, worker_id=self.instance_id)
        if p.stored is not None:
            deliver_after = self._deliver_after(record)
            return await self.store.finish_job(
                output.job_id, self.instance_id, p.stored, seed=output.seed, steps=output.steps, seconds=output.seconds,
                deliver_after=deliver_after, now=now,
            )  # fmt: skip
        error = output.error or texts.ENGINE_FAILED
        return await self.store.mark_failed(output.job_id, error, now, worker_id=self.instance_id)

    def _deliver_after(self, record: JobRecord) -> float:
        return record.created_at + self.config.tier(record.tier).min_turnaround_s

    async def _announce_output(self, p: _PreparedOutput, finished: bool) -> None:
        """After the write is committed: logs, metrics, delivery, the job event."""
        output, record, job_id = p.output, p.record, p.output.job_id
        input_picture = self._inputs_in_hand.pop(job_id, None)
        if record is None:
            return
        if p.withheld:
            log.warning("job %s: result withheld by the safety check", job_id)
        elif p.stored is not None:
            if finished:
                log.info("job %s done in %.2f s", job_id, output.seconds)
                self.metrics.job_seconds.observe(output.seconds)
            else:
                log.info("job %s finished after it was cancelled (or taken over); result dropped", job_id)
        else:
            log.warning("job %s failed: %s", job_id, output.error or texts.ENGINE_FAILED)
        if finished:
            if record.platform in self.dispatch.frontends:
                # A stored result's platform and deliver_after are known here: the delivery
                # need not read the job before it claims it.
                due = (
                    (record.platform, self._deliver_after(record)) if p.stored is not None and not p.withheld else None
                )
                # Held back (a free result's minimum turnaround), it is read again when due.
                in_hand = due is not None and input_picture is not None and due[1] <= self.clock.now()
                pictures = (input_picture, p.stored) if in_hand and p.stored is not None and input_picture else None
                if record.sweep_id is not None:  # delivered as a whole, once its last job ends
                    self.dispatch.schedule_sweep_delivery(record.sweep_id)
                else:
                    self.dispatch.schedule_delivery(job_id, due, pictures)
            await self.dispatch.publish(job_id, "finished", s=round(output.seconds, 3))


async def _safe(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("store update failed")
