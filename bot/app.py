"""Puts the house together: config → store → service → front ends, and the engine and worker.

This is the one module that knows every room; it passes data and objects between them so that
none of the rooms has to import another across a line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.adapters import Adapter
from bot.clock import Clock, SystemClock
from bot.config import Config
from bot.listener import Listeners
from bot.service import RestyleService
from bot.store import Store
from bot.worker import Worker
from engine.api import RestyleEngine

log = logging.getLogger("bot")

EngineFactory = Callable[[Config], RestyleEngine]
PURGE_INTERVAL_S = 3600.0  # jobs past [moderation] retention_days are deleted this often
# all: front ends and one worker in one process (SQLite or PostgreSQL); frontend and worker:
# one half each, any number of each on one PostgreSQL database.
ROLES = ("all", "frontend", "worker")
STARTUP_WAIT_S = 60.0
# Incoming update keys are kept this long after handling: Telegram keeps an unconfirmed update
# for 24 hours (Bot API, getUpdates), so none can come again later than that.
INCOMING_KEPT_S = 2 * 86400.0  # how long a starting process waits for an unreachable PostgreSQL


def check_role(config: Config, role: str) -> str | None:
    """Why this role cannot run with this config (a sentence for the owner), or None."""
    if role not in ROLES:
        return f"--role must be one of {', '.join(ROLES)}, not {role!r}."
    if role != "all" and not config.store.shared:
        return (
            f"--role {role} needs a database shared between processes: set [store] url (or "
            "RESTYLE_STORE_URL) to postgresql://user:password@host/db. SQLite serves one process "
            "with --role all."
        )
    return None


def load_diffusers_engine(config: Config) -> RestyleEngine:
    """The real engine; imported here, not at the top, so the core never imports torch."""
    from engine.pipeline import DiffusersEngine

    e = config.engine
    return DiffusersEngine.load(
        e.model,
        device=e.device,
        dtype=e.dtype,
        steps=e.steps,
        guidance_scale=e.guidance_scale,
        max_batch=e.max_batch,
        turbo=e.turbo,
        local_files_only=e.local_files_only,
        vae=e.vae,
        tiny_vae=e.tiny_vae,
        cudnn_benchmark=e.cudnn_benchmark,
        compile=e.compile,
        cuda_graphs=e.cuda_graphs,
        compile_sizes=e.compile_sizes,
    )


@dataclass
class Health:
    """What /readyz reports; the app flips these as it starts and stops."""

    engine_ready: bool = False
    store_open: bool = True
    engine_error: str | None = None
    runs_engine: bool = True  # False in a front-end process: its readiness needs no engine


def load_safety_check(config: Config) -> Callable[[Any], bool]:
    """diffusers' safety checker from [moderation] safety_checker, on the engine's device (in
    float16 on CUDA): on the CPU it took seconds a picture and capped the bot whatever the GPU;
    the worker checks a whole batch in one call (its check_batch)."""
    from engine.loading import resolve_device
    from engine.safety import load_safety_checker

    return load_safety_checker(
        config.moderation.safety_checker or "",
        device=resolve_device(config.engine.device),
        half_on_gpu=True,
        local_files_only=config.engine.local_files_only,
    )


def build_adapters(config: Config, service: RestyleService, health: Health, role: str = "all") -> list[Adapter]:
    """The front ends the config asks for; each platform library is imported only when used.
    A worker process serves only /healthz, /readyz and /metrics (unless [web] enabled = false)."""
    adapters: list[Adapter] = []
    if role == "worker":
        if config.web.enabled is not False:
            from bot.adapters.web import WebAdapter

            adapters.append(WebAdapter(config, service, health, page=False))
        return adapters
    if config.telegram.token:
        from bot.adapters.telegram.adapter import TelegramAdapter

        adapters.append(TelegramAdapter(config, service))
    if config.discord.token:
        from bot.adapters.discord.adapter import DiscordAdapter

        adapters.append(DiscordAdapter(config, service))
    if config.web_enabled:
        from bot.adapters.web import WebAdapter

        adapters.append(WebAdapter(config, service, health))
    elif config.web.enabled is None:
        # Chat-only: still serve /healthz, /readyz and /metrics on [web] host:port, without the
        # page; `[web] enabled = false` turns the listener off entirely.
        from bot.adapters.web import WebAdapter

        adapters.append(WebAdapter(config, service, health, page=False))
    return adapters


@dataclass
class App:
    config: Config
    service: RestyleService
    store: Store
    adapters: list[Adapter]
    engine_factory: EngineFactory
    role: str = "all"
    worker: Worker | None = None
    health: Health = field(default_factory=Health)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _purge_task: asyncio.Task[None] | None = None
    _poll_task: asyncio.Task[None] | None = None
    _stopped: bool = False

    @classmethod
    async def create(
        cls,
        config: Config,
        *,
        role: str = "all",
        clock: Clock | None = None,
        engine_factory: EngineFactory = load_diffusers_engine,
        adapters: Callable[[Config, RestyleService, Health], list[Adapter]] | None = None,
    ) -> App:
        problem = check_role(config, role)
        if problem:
            raise ValueError(problem)
        # A process may start before its PostgreSQL (machines booting together): wait a minute.
        store = await Store.open(config.bot.data_dir, config.store.url, wait_s=STARTUP_WAIT_S)
        service = RestyleService(config, store, clock or SystemClock())
        health = Health(runs_engine=role != "frontend")
        factory = adapters or functools.partial(build_adapters, role=role)
        return cls(config, service, store, factory(config, service, health), engine_factory, role=role, health=health)

    async def start(self) -> None:
        """Front ends first, so members get answers (and places in the queue) while the model
        is still loading; the worker starts once the engine is ready."""
        for adapter in self.adapters:
            if adapter.platform != "web-ops":  # health only: no jobs of its own
                self.service.dispatch.register(adapter)
        await self.service.start()
        if self.store.shared:
            # Several front ends may share this database: each platform stream (a Telegram
            # token, a Discord shard) is read by the one holding its lease (bot/listener.py).
            listeners = Listeners(
                self.store, self.service.instance_id, self.config.store.listener_lease_s, self.service.clock
            )
            for adapter in self.adapters:
                if hasattr(adapter, "listeners"):
                    adapter.listeners = listeners
        try:
            for adapter in self.adapters:
                await adapter.start()
                log.info("%s front end started", adapter.platform)
        except BaseException:
            # A front end that cannot start (a refused token, a taken port) ends the run: what
            # was opened is closed again, so the process exits (and the database is left clean).
            await self.stop()
            raise
        if self.role != "frontend":
            self._tasks.append(asyncio.create_task(self._load_engine_and_work(), name="engine"))
        if self.role != "worker":
            self._purge_task = asyncio.create_task(self._purge_expired_periodically(), name="purge")
        if self.store.shared:
            self._poll_task = asyncio.create_task(self._poll_periodically(), name="poll")
        log.info("running as %s on %s", self.role, "PostgreSQL" if self.store.shared else "SQLite")

    async def _poll_periodically(self) -> None:
        """The fallback behind PostgreSQL's notifications: a lost one costs at most poll_s."""
        while True:
            await asyncio.sleep(self.config.store.poll_s)
            try:
                await self.service.poll()
            except Exception as exc:
                log.warning("polling the database failed (%s); trying again in %.0f s", exc, self.config.store.poll_s)

    async def _purge_expired_periodically(self) -> None:
        """Delete jobs and pictures past the retention period, and recompress delivered
        pictures: at start, then every hour."""
        while True:
            try:
                await self.service.admin.purge_expired()
                await self.service.admin.compact_pictures()
                if self.store.shared:
                    await self.store.forget_incoming(self.service.clock.now() - INCOMING_KEPT_S)
            except Exception:
                log.exception("could not purge or compact old jobs; trying again in an hour")
            await self.service.clock.sleep(PURGE_INTERVAL_S)

    async def _load_engine_and_work(self) -> None:
        try:
            engine = await asyncio.to_thread(self.engine_factory, self.config)
            if self.config.moderation.safety_checker and self.service.batches.safety_check is None:
                self.service.batches.safety_check = await asyncio.to_thread(load_safety_check, self.config)
        except Exception as exc:
            self.health.engine_error = str(exc)
            raise
        self.worker = Worker(self.service.batches, engine)
        self.service.batches.set_engine_interrupt(self.worker.interrupt)
        self.health.engine_ready = True
        log.info("engine ready; the worker is taking jobs")
        await self.worker.run()

    async def stop(self) -> None:
        """Stop taking work, let the running batch finish (bounded), keep the queue on disk.
        Once: a start that failed has stopped already."""
        if self._stopped:
            return
        self._stopped = True
        self.service.stop_accepting()
        if self.worker:
            self.worker.stop()
        grace = self.config.queue.shutdown_grace_s
        engine_task = self._tasks[0] if self._tasks else None
        if engine_task and not engine_task.done():
            done, _ = await asyncio.wait([engine_task], timeout=grace)
            if not done:
                log.warning("the running batch did not finish within %.0f s; it runs again at the next start", grace)
                engine_task.cancel()
        for task in (self._purge_task, self._poll_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for adapter in reversed(self.adapters):
            try:
                await adapter.stop()
            except Exception:
                log.exception("%s front end did not stop cleanly", adapter.platform)
        await self.service.close()
        await self.store.close()
        self.health.store_open = False

    async def run_until_signalled(self) -> None:
        """Run until SIGTERM or SIGINT; a second signal exits at once."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if stop.is_set():
                log.warning("second signal: exiting now; waiting jobs stay queued on disk")
                os._exit(1)
            log.info("signal %s: finishing the running batch, then stopping", signal.Signals(signum).name)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await self.start()
        engine_task = self._tasks[0] if self._tasks else None
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([t for t in (stopper, engine_task) if t is not None], return_when=asyncio.FIRST_COMPLETED)
        if engine_task is not None and engine_task.done() and not stop.is_set():
            stopper.cancel()
            exc = engine_task.exception()
            await self.stop()
            if exc is not None:
                raise exc
            return
        await self.stop()
