"""The service harness: the core with a real SQLite file (or the PostgreSQL the test module's
backend fixture sets) in a temp dir, a fake clock, a stand-in engine and a recording front end;
shared by the service, worker, rules, moderation, safety and reliability tests."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from bot.clock import FakeClock
from bot.config import load_config
from bot.core.types import Member
from bot.service import RestyleService
from bot.store import Store
from bot.worker import Worker
from tests.fakes import FakeEngine, RecordingFrontEnd, clock_deadlines, picture_bytes, wait_until

FREE = Member("test", "free-1", "Fay")
FREE2 = Member("test", "free-2", "Fred")
PRO = Member("test", "pro-1", "Paula")
MAX = Member("test", "max-1", "Max")


def write_config(tmp_path: Path, extra: str = "", store_url: str = "") -> Path:
    path = tmp_path / "config.toml"
    store = f'[store]\nurl = "{store_url}"\n' if store_url else ""
    path.write_text(f'[bot]\ndata_dir = "{tmp_path / "data"}"\n{store}{extra}\n')
    return path


class Harness:
    store_url = ""  # "": SQLite in the temp dir; the backend fixture sets a PostgreSQL URL
    # Opened and not closed yet: a test that fails before close() leaves its SQLite thread
    # running, and the whole pytest process would then hang at exit (conftest stops them).
    unclosed: list["Harness"] = []

    def __init__(self, tmp_path: Path, extra_config: str = "", clock: FakeClock | None = None, max_batch: int = 1):
        self.config = load_config(write_config(tmp_path, extra_config, self.store_url), env={})
        self.clock = clock or FakeClock()
        self.engine = FakeEngine(max_batch=max_batch)
        self.frontend = RecordingFrontEnd(clock=self.clock)
        self.service: RestyleService
        self.worker_task: asyncio.Task | None = None

    async def open(self) -> "Harness":
        self.store = await Store.open(self.config.bot.data_dir, self.config.store.url)
        Harness.unclosed.append(self)
        self.service = RestyleService(self.config, self.store, self.clock, rng=random.Random(7))
        self.service.dispatch.register(self.frontend)
        await self.service.start()
        self.worker = Worker(self.service.batches, self.engine)
        self.service.batches.set_engine_interrupt(self.worker.interrupt)
        return self

    def start_worker(self) -> None:
        self.worker_task = asyncio.create_task(self.worker.run())

    async def drain(self, advance: float = 0.0, timeout: float = 5.0, *, deliveries: bool = True) -> None:
        """Run until the queue is empty and nothing is running, then deliver what is due. Fails
        the test when that does not happen within `timeout` seconds (a job stuck queued or
        running), instead of letting the checks after it look at a half-finished queue."""

        async def drained() -> bool:
            counts = await self.store.count_by_status()
            return not counts.get("queued") and not counts.get("running") and not self.worker.busy

        await wait_until(drained, timeout=timeout, what="the queue to drain (nothing queued or running)")
        if not deliveries:  # the test holds a delivery itself
            return
        await self.quiet(timeout)
        if advance:
            await self.clock.advance(advance)
            await self.quiet(timeout)

    async def quiet(self, timeout: float = 5.0) -> None:
        """Until the service's background work (notifications, deliveries) has run or is parked
        on the fake clock (a held-back result, a retry pause), which only `advance` moves on."""
        service = self.service

        def quiet() -> bool:
            return not service.dispatch._background and len(service.dispatch._deliveries) <= len(clock_deadlines(self.clock))

        await wait_until(quiet, timeout=timeout, what="background notifications and deliveries to finish")

    async def close(self) -> None:
        self.service.stop_accepting()
        self.worker.stop()
        await self.service.close()
        if self.worker_task:
            await asyncio.wait_for(self.worker_task, 5)
        await self.store.close()
        if self in Harness.unclosed:
            Harness.unclosed.remove(self)

    def abandon(self) -> None:
        """After a test that failed before close(), on no event loop: stop the worker and the
        database's thread so the test run can end."""
        if hasattr(self, "worker"):
            self.worker.stop()
        self.engine.interrupt()  # a batch held by a test's gate
        connection = getattr(self.store.db, "_conn", None)
        if connection is not None and hasattr(connection, "stop"):  # aiosqlite: a thread per connection
            connection.stop()

    async def submit(self, member: Member, text: str = "/restyle oil painting", picture: bytes | None = None):
        picture = picture_bytes() if picture is None else picture
        return await self.service.jobs.submit(member, picture, text, {"chat": member.user_id})


async def make(tmp_path, **kwargs) -> Harness:
    h = Harness(tmp_path, **kwargs)
    await h.open()
    for member, tier in ((PRO, "pro"), (MAX, "max")):
        await h.service.jobs.set_tier(member, tier, None, reason="admin", changed_by="test")
    return h
