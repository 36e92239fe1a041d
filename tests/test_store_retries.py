"""The store's connection retries (tenacity): backoff on the injected clock, a deadline that is
kept, errors that waiting cannot fix given up at once, and the LISTEN reconnect backoff."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.db import PostgresDatabase, StoreError

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
