"""The composition root of the core: builds the use cases on one store and clock, and starts,
polls and closes them. Front ends, the worker and the CLI call the use cases themselves:
`service.jobs` (submit, again, cancel, status), `service.dispatch` (front ends, deliveries),
`service.batches` (the worker's side), `service.billing` (plans, payments, entitlements,
grants), `service.codes` (redeem codes, account links) and `service.admin` (places, bans,
queue, job log, retention).

Processes: in one process (SQLite, `--role all`) front ends and the worker share one service. On
PostgreSQL any number of front-end and worker processes each run a service on the same database:
a worker holds its jobs under a lease it renews, a front end takes a delivery lease before it
sends a result, and job events travel as database notifications, with polling behind them.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket

from bot.clock import Clock
from bot.config import Config
from bot.core.admin import Admin
from bot.core.batches import Batches
from bot.core.billing import Billing
from bot.core.codes import Codes
from bot.core.dispatch import JOB_EVENTS, Dispatch
from bot.core.guards import FloodGuard
from bot.core.jobs import Jobs
from bot.core.results import Results
from bot.core.views import JobViews
from bot.decoding import PictureDecoder
from bot.links import compare_links
from bot.metrics import ServiceMetrics
from bot.store import Store, StoreError
from engine.api import SafetyCheck

log = logging.getLogger("bot.service")


class RestyleService:
    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Clock,
        *,
        rng: random.Random | None = None,
        flood_guard: FloodGuard | None = None,
        safety_check: SafetyCheck | None = None,
        decoder: PictureDecoder | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.metrics = ServiceMetrics()
        # Names this process in the database (worker leases, delivery leases).
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.views = JobViews(config, store, clock)
        self.dispatch = Dispatch(store, clock, self.views, self.metrics, instance_id=self.instance_id)
        self.batches = Batches(
            config, store, clock, self.dispatch, self.views, self.metrics,
            instance_id=self.instance_id, safety_check=safety_check,
        )  # fmt: skip
        self.dispatch.on_cancelled = self.batches.interrupt_if_held
        self.jobs = Jobs(
            config, store, clock, self.dispatch, self.views,
            interrupt=self.batches.interrupt_if_held, rng=rng, flood_guard=flood_guard, decoder=decoder,
        )  # fmt: skip
        self.results = Results(store, self.views)
        self.billing = Billing(config, store, clock, self.jobs, self.metrics)
        self.codes = Codes(config, store, clock, self.jobs, self.billing)
        self.admin = Admin(config, store, clock, self.jobs, instance_id=self.instance_id)
        # With [web] public_url, each result links to its compare view on the page.
        self.compare_links = compare_links(config, store.data_dir)

    async def start(self) -> None:
        """Listen for job events and resume deliveries left from the last run. The one SQLite
        process also puts back in line what was running when it stopped; on a shared database
        that is the leases' work (the other processes may be running those jobs)."""
        await self.views.load_timings()
        await self.store.db.listen(JOB_EVENTS, self.dispatch.on_job_event)
        if not self.store.shared:
            await self.store.release_deliveries(None)
            running = await self.store.requeue()
            if running:
                log.info("%d jobs were running when the bot stopped; they are back in line", len(running))
        else:
            self.store.db.on_reconnect = self._on_reconnect
        self.dispatch.work.set()  # a worker looks at the queue once at start
        await self.dispatch.schedule_undelivered()

    async def poll(self) -> None:
        """The fallback behind notifications, every [store] poll_s: wake the worker, give back
        jobs of dead workers, deliver what nobody delivers, refresh the ETA's timings."""
        self.dispatch.work.set()
        if self.dispatch.frontends:
            await self.dispatch.schedule_undelivered()
            await self.views.load_timings()

    def _on_reconnect(self) -> None:
        """Notifications sent while the listener was away are lost: look at the queue now."""
        self.dispatch.work.set()
        self.dispatch.spawn(self.dispatch.schedule_undelivered())

    def stop_accepting(self) -> None:
        self.dispatch.accepting = False
        self.dispatch.work.set()  # a worker waiting for work wakes, sees the stop and returns

    async def close(self) -> None:
        await self.batches.close()
        await self.dispatch.close()
        try:  # what this process was delivering, another front end (or the next start) may take
            await self.store.release_deliveries(self.instance_id)
        except StoreError as exc:
            log.warning("could not release delivery leases (%s); they run out by themselves", exc)
        self.dispatch.work.set()  # wake a waiting worker so it can see the stop
