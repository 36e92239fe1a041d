"""The store's connection retries (tenacity): backoff on the injected clock, a deadline that is
kept, errors that waiting cannot fix given up at once, and the LISTEN reconnect backoff."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from bot.store import StoreError
from bot.store.postgres import PostgresDatabase

REFUSED_URL = "postgresql://restyle:secret@127.0.0.1:1/x"  # port 1: refused at once


class RecordingClock:
    """Sleeping moves its time on at once and writes the pause down."""

    def __init__(self) -> None:
        self.time = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds
        await asyncio.sleep(0)


async def test_open_backs_off_on_the_clock_it_is_given_and_keeps_its_deadline(caplog):
    clock = RecordingClock()
    with caplog.at_level(logging.WARNING), pytest.raises(StoreError, match=r"127\.0\.0\.1:1/x cannot be reached"):
        await PostgresDatabase.open(REFUSED_URL, wait_s=12.0, clock=clock)
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 4.5]  # doubling, capped at 5 s, the last cut to the deadline
    assert clock.time == 1012.0
    waits = [r.getMessage() for r in caplog.records if "cannot be reached yet" in r.getMessage()]
    assert len(waits) == 5 and "secret" not in " ".join(waits)


async def test_open_without_a_wait_tries_once():
    clock = RecordingClock()
    with pytest.raises(StoreError, match="cannot be reached"):
        await PostgresDatabase.open(REFUSED_URL, clock=clock)
    assert clock.sleeps == []


async def test_a_database_that_refuses_us_is_not_waited_for(pg_url):
    clock = RecordingClock()
    wrong = pg_url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(StoreError, match="refused the connection"):
        await PostgresDatabase.open(wrong, wait_s=30.0, clock=clock)
    assert clock.sleeps == []


class FakeListenConnection:
    def __init__(self) -> None:
        self.channels: list[str] = []

    def add_termination_listener(self, callback) -> None:
        pass

    async def add_listener(self, channel: str, callback) -> None:
        self.channels.append(channel)


async def test_listen_reconnect_backs_off_on_the_database_clock(monkeypatch, caplog):
    import asyncpg

    failures = [OSError("refused"), asyncpg.CannotConnectNowError("starting up"), OSError("refused")]
    conn = FakeListenConnection()

    async def connect(url: str):
        if failures:
            raise failures.pop(0)
        return conn

    monkeypatch.setattr(asyncpg, "connect", connect)
    clock = RecordingClock()
    db = PostgresDatabase("postgresql://x@127.0.0.1:1/x", pool=None, clock=clock)
    db._listeners = {"jobs": [lambda payload: None]}
    with caplog.at_level(logging.WARNING):
        assert await db._connect_listener(asyncio.Event(), retry=True) is conn
    assert clock.sleeps == [0.2, 0.4, 0.8]
    assert conn.channels == ["jobs"]
    assert sum("notifications unavailable" in r.getMessage() for r in caplog.records) == 3


async def test_first_listen_failure_is_not_retried(monkeypatch):
    import asyncpg

    async def connect(url: str):
        raise OSError("refused")

    monkeypatch.setattr(asyncpg, "connect", connect)
    clock = RecordingClock()
    db = PostgresDatabase("postgresql://x@127.0.0.1:1/x", pool=None, clock=clock)
    with pytest.raises(OSError):
        await db._connect_listener(asyncio.Event(), retry=False)
    assert clock.sleeps == []


class TerminatingConnection:
    """A LISTEN connection the test ends: like asyncpg's, it calls every termination listener
    with itself (asyncpg.Connection._call_termination_listeners)."""

    def __init__(self) -> None:
        self.termination_listeners: list = []
        self.closed = False

    def add_termination_listener(self, callback) -> None:
        self.termination_listeners.append(callback)

    async def add_listener(self, channel: str, callback) -> None:
        pass

    def terminate(self) -> None:
        for callback in self.termination_listeners:
            callback(self)

    async def close(self, timeout: float | None = None) -> None:
        self.closed = True


async def test_a_late_termination_of_an_old_listen_connection_leaves_the_new_one_alone(monkeypatch):
    """Each connection's termination listener sets that connection's own 'lost' event. A closure
    over the reconnect loop's variable (ruff B023) set the newest one instead: an old connection
    ending late (its close timed out, the socket went later) dropped the healthy new one."""
    import asyncpg

    made: list[TerminatingConnection] = []

    async def connect(url: str):
        made.append(TerminatingConnection())
        return made[-1]

    lost_events: list[asyncio.Event] = []
    real_event = asyncio.Event

    class RecordedEvent(real_event):  # the loop's `lost` events, in the order it makes them
        def __init__(self) -> None:
            super().__init__()
            if sys._getframe(1).f_globals.get("__name__") == "bot.store.postgres":
                lost_events.append(self)

    monkeypatch.setattr(asyncpg, "connect", connect)
    monkeypatch.setattr(asyncio, "Event", RecordedEvent)
    reconnected = real_event()
    db = PostgresDatabase("postgresql://x@127.0.0.1:1/x", pool=None, clock=RecordingClock())
    db._listeners = {"jobs": [lambda payload: None]}
    db.on_reconnect = reconnected.set
    ready = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(db._keep_listening(ready))
    try:
        await asyncio.wait_for(ready, 5)
        first = made[0]
        first.terminate()  # the server went away
        await asyncio.wait_for(reconnected.wait(), 5)
        assert len(made) == 2 and first.closed and len(lost_events) == 2

        first.terminate()  # ... and the old connection's termination arrives once more, late
        assert lost_events[0].is_set()
        assert not lost_events[1].is_set(), "the old connection's listener set the new connection's event"
    finally:
        db._closing = True
        made[-1].terminate()
        await asyncio.wait_for(task, 5)
    assert len(made) == 2  # no third connection
