"""Who hears what: the front-end registry, job events between processes, progress updates and
the delivery of results (delivery leases, retries).

Job events travel as database notifications (every process, this one included, hears them),
with polling behind them. Dispatch also holds the small state every use case shares: the
worker's wake-up event, whether the bot still accepts work, and its background tasks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bot.clock import Clock
from bot.core.types import Delivery, DeliveryFailed, FrontEnd, JobView, SweepDelivery
from bot.core.views import JobViews
from bot.metrics import ServiceMetrics
from bot.store import ACTIVE, JobRecord, Store, StoreError
from engine.pictures import sweep_sheet

log = logging.getLogger("bot.core.dispatch")

# How many of the first waiting jobs hear about their new position after each batch; the rest
# are far back, and telling thousands of members "you moved up one" would only hit rate limits.
NOTIFY_HEAD = 10
# Delivery retries: a platform outage must not lose a result, but nor should it spin.
DELIVERY_BACKOFF_S = (2.0, 5.0, 15.0, 60.0, 300.0, 900.0)
# Job events between processes (and within one): {"id": job id, "event": queued | started |
# progress | finished | cancelled, "p": progress 0..1, "s": engine seconds, "batch": the other
# job ids of a started batch}.
JOB_EVENTS = "restyle_jobs"
# A front end holds a result it is sending this long (renewed before each try): another front
# end takes it over only if this one died.
DELIVERY_LEASE_S = 120.0
# A database write that failed is tried again after these pauses (a PostgreSQL restart takes a
# few seconds); the worker's lease keeps its jobs meanwhile.
STORE_RETRY_S = (0.5, 1.0, 2.0, 4.0, 8.0)


class Dispatch:
    def __init__(
        self, store: Store, clock: Clock, views: JobViews, metrics: ServiceMetrics, *, instance_id: str
    ) -> None:
        self.store = store
        self.clock = clock
        self.views = views
        self.metrics = metrics
        self.instance_id = instance_id
        self.frontends: dict[str, FrontEnd] = {}
        # Set when there may be work: a worker waiting for a job wakes on it.
        self.work = asyncio.Event()
        self.accepting = True  # False once the bot is stopping: no new jobs, no new claims
        # Called with a cancelled job's id (Batches.interrupt_if_held, set by the service).
        self.on_cancelled: Callable[[str], None] | None = None
        self.store_retry_s: tuple[float, ...] = STORE_RETRY_S
        self._deliveries: dict[str, asyncio.Task[None]] = {}
        self._gave_up: set[str] = set()  # deliveries retried only after a restart
        # Sweeps asked for again while their delivery task ran: it may have looked before the
        # last job ended, so it runs once more when it is done.
        self._sweeps_again: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def delivery_failures(self) -> int:
        return int(self.metrics.value("restyle_delivery_failures_total"))

    def register(self, frontend: FrontEnd) -> None:
        self.frontends[frontend.platform] = frontend

    def spawn(self, awaitable: Coroutine[Any, Any, Any]) -> None:
        if self._closed:
            # A job event after close (the worker's last batch, a late notification): nobody
            # would await or cancel its task, so it is not started at all.
            awaitable.close()
            return
        task = asyncio.get_running_loop().create_task(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._deliveries.values()) + list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Job events --------------------------------------------------------------------------------

    async def publish(self, job_id: str, event: str, **extra: Any) -> None:
        """Tell every process (this one included) about a job; best effort, since the polling
        behind it finds what a lost event would have said."""
        try:
            await self.store.db.notify(JOB_EVENTS, json.dumps({"id": job_id, "event": event, **extra}))
        except StoreError as exc:
            log.warning("job %s: could not announce %s (%s); polling will catch up", job_id, event, exc)

    def on_job_event(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            job_id, event = message["id"], message["event"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed job event %r", payload)
            return
        progress = self.views.progress
        if event == "queued":
            self.work.set()
        elif event == "started":  # a batch: "id" and the others in "batch"
            started = [job_id, *message.get("batch", ())]
            for one in started:
                progress[one] = 0.0
            if self.frontends:  # the batch's records in one read, not one each
                self.spawn(self._send_updates(started))
            self._notify_head()
        elif event == "progress":
            progress[job_id] = float(message.get("p", 0.0))
            self.notify(job_id)
        elif event == "finished":
            progress.pop(job_id, None)
            if "s" in message:
                self.views.batch_seconds.append(float(message["s"]))
            if self.frontends:
                self.spawn(self._deliver_if_mine(job_id))
        elif event == "cancelled":
            progress.pop(job_id, None)
            if self.on_cancelled is not None:
                self.on_cancelled(job_id)

    async def _deliver_if_mine(self, job_id: str) -> None:
        if job_id in self._deliveries:  # this process finished it and is delivering it already
            return
        record = await self.store.job(job_id)
        if record is not None and record.platform in self.frontends and record.delivered_at is None:
            if record.sweep_id is not None:
                self.schedule_sweep_delivery(record.sweep_id)
            else:
                self.schedule_delivery(job_id)

    # Delivery --------------------------------------------------------------------------------

    async def schedule_undelivered(self) -> None:
        """Deliver finished jobs of this process's front ends that nobody is delivering: at
        start, and as the fallback when a notification was missed."""
        for job_id in await self.store.undelivered_jobs(self.frontends, self.clock.now()):
            if job_id not in self._gave_up:
                self.schedule_delivery(job_id)

    def schedule_delivery(
        self, job_id: str, due: tuple[str, float] | None = None, pictures: tuple[bytes, bytes] | None = None
    ) -> None:
        """`due`: the job's platform and deliver_after, where the caller has just stored its
        result (the delivery then claims it without reading it first); `pictures`: its input and
        result as stored, where the caller has them (then they are not read back either)."""
        if job_id in self._deliveries:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(job_id, due, pictures), name=f"deliver-{job_id}")
        self._deliveries[job_id] = task
        task.add_done_callback(lambda _: self._deliveries.pop(job_id, None))

    def schedule_sweep_delivery(self, sweep_id: str) -> None:
        """Deliver a strength sweep as a whole if it has ended (a job of it finished, failed or
        was cancelled): the delivery finds out, under the sweep's claim."""
        if sweep_id in self._deliveries:
            self._sweeps_again.add(sweep_id)
            return
        self.schedule_delivery(sweep_id)
        task = self._deliveries.get(sweep_id)
        if task is not None:
            task.add_done_callback(lambda _: self._sweep_delivery_ended(sweep_id))

    def _sweep_delivery_ended(self, sweep_id: str) -> None:
        if sweep_id in self._sweeps_again and not self._closed:
            self._sweeps_again.discard(sweep_id)
            self.schedule_sweep_delivery(sweep_id)

    async def _deliver(
        self, job_id: str, due: tuple[str, float] | None = None, pictures: tuple[bytes, bytes] | None = None
    ) -> None:
        for delay in (*self.store_retry_s, None):
            try:
                await self._deliver_once(job_id, due, pictures)
                return
            except StoreError as exc:
                if delay is None:  # the delivery lease runs out and a poll tries again
                    log.warning("job %s: delivery postponed, the database failed (%s)", job_id, exc)
                    return
                # This process may hold the delivery lease: try again itself, soon.
                log.warning("job %s: delivery interrupted by the database (%s); retrying in %.1f s", job_id, exc, delay)
                await asyncio.sleep(delay)

    async def _deliver_once(
        self, job_id: str, due: tuple[str, float] | None = None, pictures: tuple[bytes, bytes] | None = None
    ) -> None:
        if due is None:
            known = await self.store.job(job_id)
            if known is not None and known.sweep_id is not None:
                await self._deliver_sweep(known.sweep_id)
                return
            if known is None or known.delivered_at is not None:
                return
            due = (known.platform, known.deliver_after or 0.0)
        platform, deliver_after = due
        wait = deliver_after - self.clock.now()
        if wait > 0:
            self.notify(job_id)  # held back: the status says when it arrives
            await self.clock.sleep(wait)
        for attempt, backoff in enumerate((*DELIVERY_BACKOFF_S, None)):
            frontend = self.frontends.get(platform)
            if frontend is None:
                log.warning("job %s: no %s front end is running; delivery waits for a restart", job_id, platform)
                return
            now = self.clock.now()
            # The job as it is once claimed, in the claim's own statement.
            record = await self.store.claim_delivery_record(job_id, self.instance_id, now, now + DELIVERY_LEASE_S)
            if record is None:
                return  # delivered already, or another front end is delivering it
            view = await self.views.view(record)
            try:
                if record.status == "done":
                    input_picture: bytes | None
                    result_picture: bytes | None
                    if pictures is not None:  # the first try, straight from the worker
                        input_picture, result_picture = pictures
                        pictures = None  # not held through a retry's backoff
                    else:
                        both = await self.store.job_pictures(job_id)
                        input_picture, result_picture = both.get("input"), both.get("result")
                        del both
                    if input_picture is None or result_picture is None:
                        log.error("job %s: its pictures are gone (purged?); nothing to deliver", job_id)
                        return
                    await frontend.deliver_result(Delivery(view, input_picture, result_picture))
                    del input_picture, result_picture  # held no longer than the send
                else:
                    await frontend.deliver_failure(view)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if await self._retry_after_failed_send("job", job_id, exc, attempt, backoff, self.store.claim_delivery):
                    continue
                return
            await self._mark_delivered(job_id)
            log.info("job %s delivered", job_id)
            return

    async def _deliver_sweep(self, sweep_id: str) -> None:
        """A strength sweep, once all its jobs have ended, as one delivery: the lease is on the
        lead, the results go out together (deliver_sweep, or one by one to a front end without
        it), and every job of it is marked delivered."""
        jobs = await self.store.sweep_jobs(sweep_id)
        if not jobs or any(job.status in ACTIVE for job in jobs):
            return  # the last job to end delivers it
        platform = jobs[0].platform
        deliver_after = max((job.deliver_after or 0.0 for job in jobs if job.status == "done"), default=0.0)
        wait = deliver_after - self.clock.now()
        if wait > 0:
            self.notify(sweep_id)  # held back: the status says when it arrives
            await self.clock.sleep(wait)
        for attempt, backoff in enumerate((*DELIVERY_BACKOFF_S, None)):
            frontend = self.frontends.get(platform)
            if frontend is None:
                log.warning("sweep %s: no %s front end is running; delivery waits for a restart", sweep_id, platform)
                return
            now = self.clock.now()
            claimed = await self.store.claim_sweep_delivery(sweep_id, self.instance_id, now, now + DELIVERY_LEASE_S)
            if not claimed:
                return  # not over yet, delivered already, or another front end is delivering it
            try:
                await self._send_sweep(frontend, sweep_id, claimed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                extend = self.store.claim_sweep_delivery
                if await self._retry_after_failed_send("sweep", sweep_id, exc, attempt, backoff, extend):
                    continue
                return
            await self._record_sent(self.store.mark_sweep_delivered, sweep_id)
            log.info("sweep %s delivered (jobs %s)", sweep_id, ", ".join(job.id for job in claimed))
            return

    async def _send_sweep(self, frontend: FrontEnd, sweep_id: str, jobs: list[JobRecord]) -> None:
        views = [await self.views.view(job) for job in jobs]
        undelivered = {job.id for job in jobs if job.delivered_at is None}
        results: dict[str, bytes] = {}
        input_picture: bytes | None = None
        for job in jobs:
            if job.status != "done":
                continue
            pictures = await self.store.job_pictures(job.id)
            if "result" not in pictures or "input" not in pictures:
                log.error("job %s (sweep %s): its pictures are gone (purged?); left out", job.id, sweep_id)
                continue
            results[job.id] = pictures["result"]
            input_picture = input_picture or pictures["input"]
        if not results or input_picture is None:
            # Nothing to show: one failure notice for the sweep (the first failed job says why).
            failed = [view for view in views if view.status == "failed"] or views
            await frontend.deliver_failure(failed[0])
            return
        deliver_sweep = getattr(frontend, "deliver_sweep", None)
        if deliver_sweep is None:
            await self._send_sweep_one_by_one(frontend, views, undelivered, input_picture, results)
            return
        sheet = await self._sheet(sweep_id, views, results)
        await deliver_sweep(SweepDelivery(sweep_id, views, input_picture, results, sheet))

    async def _send_sweep_one_by_one(
        self,
        frontend: FrontEnd,
        views: list[JobView],
        undelivered: set[str],
        input_picture: bytes,
        results: dict[str, bytes],
    ) -> None:
        """For a front end without deliver_sweep: each done job as an ordinary result, each
        marked delivered once sent, so a retry after a failed send does not repeat the others."""
        for view in views:
            if view.id in results and view.id in undelivered:
                await frontend.deliver_result(Delivery(view, input_picture, results[view.id]))
                await self._mark_delivered(view.id)

    async def _sheet(self, sweep_id: str, views: list[JobView], results: dict[str, bytes]) -> bytes | None:
        labelled = [(f"{view.strength:g}", results[view.id]) for view in views if view.id in results]
        try:
            return await asyncio.to_thread(sweep_sheet, labelled)
        except (ValueError, OSError):  # PictureError is a ValueError
            # The results still go out, one by one (SweepDelivery.sheet None says so).
            log.exception("sweep %s: its 3-up picture could not be drawn; sending the results alone", sweep_id)
            return None

    async def _retry_after_failed_send(
        self,
        what: str,
        key: str,
        exc: Exception,
        attempt: int,
        backoff: float | None,
        extend_claim: Callable[[str, str, float, float], Awaitable[Any]],
    ) -> bool:
        """After a front end raised on a send (of a job or a sweep, named by `key`): True once
        the backoff is slept, with the claim extended over it so no one else sends meanwhile;
        False when it gave up until the next start (a permanent failure, or the last try)."""
        self.metrics.delivery_failures.inc()
        permanent = isinstance(exc, DeliveryFailed) and exc.permanent
        if permanent or backoff is None:
            log.error("%s %s: delivery gave up after %d tries (%s); it is retried at the next start",
                      what, key, attempt + 1, exc)  # fmt: skip
            self._gave_up.add(key)
            await self.store.release_deliveries(self.instance_id, key)
            return False
        log.warning("%s %s: delivery failed (%s); retrying in %.0f s", what, key, exc, backoff)
        now = self.clock.now()
        await extend_claim(key, self.instance_id, now, now + backoff + DELIVERY_LEASE_S)
        await self.clock.sleep(backoff)
        return True

    async def _mark_delivered(self, job_id: str) -> None:
        await self._record_sent(self.store.mark_delivered, job_id)

    async def _record_sent(self, mark: Callable[[str, float], Awaitable[Any]], key: str) -> None:
        """Sent: record it (a job, or a whole sweep), trying through a short database outage,
        since a delivery that is not recorded would be sent again once its lease runs out."""
        for delay in (*self.store_retry_s, None):
            try:
                await mark(key, self.clock.now())
                return
            except StoreError:
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    # The steps of one delivery (bot/chat/delivery.py) ----------------------------------------

    async def steps_sent(self, job_id: str) -> set[str]:
        """The steps of a job's delivery recorded as sent, by an earlier try or an earlier run."""
        job = await self.store.job(job_id)
        return set(job.reply.get("sent", [])) if job is not None else set()

    async def step_sent(self, job_id: str, step: str) -> None:
        """`step` of the job's delivery went out: recorded in its reply data, through a short
        database outage, so that no retry or restart sends it again."""
        await self._record_sent(lambda key, _now: self.store.add_to_reply(key, {}, sent=step), job_id)

    async def wait_delivered(self) -> None:
        """For tests and shutdown: wait until scheduled deliveries have run."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries.values()), return_exceptions=True)

    # Progress updates ------------------------------------------------------------------------

    def _notify_head(self) -> None:
        if self.frontends:
            self.spawn(self._send_head_updates())

    async def _send_head_updates(self) -> None:
        # One query for the whole head and the running count, where a view of each job read it,
        # counted its position and the running jobs again (4 queries a job, 40 a batch: a fast
        # engine's worker spent a third of its database time here). The i-th waiting job's
        # position is i.
        try:
            head, running = await self.store.waiting_head(NOTIFY_HEAD)
        except StoreError as exc:
            log.warning("could not read the head of the queue for updates: %s", exc)
            return
        for position, record in enumerate(head):
            frontend = self.frontends.get(record.platform)
            if frontend is not None:
                self.spawn(self._send_view(frontend, record, position, running))

    async def _send_updates(self, job_ids: list[str]) -> None:
        try:
            records = await self.store.jobs(job_ids)
        except StoreError as exc:
            log.warning("jobs %s: could not read them for progress updates (%s)", ", ".join(job_ids), exc)
            return
        for record in records:
            frontend = self.frontends.get(record.platform)
            if frontend is not None:
                self.spawn(self._send_view(frontend, record, None, None))

    async def _send_view(
        self, frontend: FrontEnd, record: JobRecord, position: int | None, running: int | None
    ) -> None:
        try:
            await frontend.job_updated(await self.views.view(record, position=position, running=running))
        except Exception:
            log.warning("job %s: progress update failed", record.id, exc_info=True)

    def notify(self, job_id: str) -> None:
        """The front end that owns the job hears its state (best effort, in the background)."""
        if self.frontends:
            self.spawn(self._send_update(job_id))

    async def _send_update(self, job_id: str) -> None:
        try:
            record = await self.store.job(job_id)
            frontend = self.frontends.get(record.platform) if record is not None else None
            if record is None or frontend is None:
                return
            await frontend.job_updated(await self.views.view(record))
        except Exception:
            # Progress is cosmetic: the result still arrives through _deliver.
            log.warning("job %s: progress update failed", job_id, exc_info=True)
