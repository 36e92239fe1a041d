"""The listener lease (bot/listener.py, Store.take_listener) and the incoming-update record, on
SQLite and PostgreSQL, with a FakeClock: take, renew, expire, take over, give up."""

from __future__ import annotations

import asyncio

import pytest

from bot.clock import FakeClock, SystemClock
from bot.listener import ListenerLease, keep_listening, stream_name
from bot.store import Store
from tests.fakes import wait_until

LEASE_S = 9.0
NAME = "telegram:abc"


async def test_a_lease_is_held_by_one_front_end_until_it_runs_out(store: Store):
    now = 1000.0
    assert await store.take_listener(NAME, "a", now, now + LEASE_S)
    assert not await store.take_listener(NAME, "b", now + 1, now + 1 + LEASE_S)
    assert await store.listener_holder(NAME, now + 1) == "a"
    # Renewed by its holder, it stays past the first term
    assert await store.take_listener(NAME, "a", now + 6, now + 6 + LEASE_S)
    assert not await store.take_listener(NAME, "b", now + LEASE_S + 1, now + 20)
    # Not renewed, it runs out and another takes it over
    later = now + 6 + LEASE_S + 0.5
    assert await store.listener_holder(NAME, later) is None
    assert await store.take_listener(NAME, "b", later, later + LEASE_S)
    assert await store.listener_holder(NAME, later) == "b"
    assert not await store.take_listener(NAME, "a", later + 1, later + 1 + LEASE_S)
    # Given up, it is free at once; other streams are leases of their own
    await store.release_listener(NAME, "a")  # not a's: nothing happens
    assert await store.listener_holder(NAME, later + 1) == "b"
    await store.release_listener(NAME, "b")
    assert await store.take_listener(NAME, "a", later + 1, later + 1 + LEASE_S)
    assert await store.take_listener("discord:abc:0/2", "b", later + 1, later + 1 + LEASE_S)


async def test_an_update_is_written_down_once_and_the_unhandled_ones_are_found_again(store: Store):
    assert await store.receive("telegram", "update:5", '{"update_id": 5}', "a", 100.0)
    assert await store.receive("telegram", "update:6", '{"update_id": 6}', "a", 100.5)
    assert not await store.receive("telegram", "update:5", '{"update_id": 5}', "b", 101.0)
    assert await store.receive("discord", "update:5", "{}", "a", 100.0)  # per platform
    await store.mark_handled("telegram", "update:5", 102.0)
    assert await store.unhandled("telegram") == [("update:6", '{"update_id": 6}')]
    await store.mark_handled("telegram", "update:6", 103.0)
    assert await store.unhandled("telegram") == []
    assert await store.forget_incoming(before=102.5) == 1
    # Forgotten only once handled long ago: update 6 is still known
    assert not await store.receive("telegram", "update:6", "{}", "b", 104.0)


def test_a_stream_name_never_carries_the_token():
    name = stream_name("telegram", "123456:SECRET-token", "")
    assert name.startswith("telegram:") and "SECRET" not in name and "123456" not in name
    assert stream_name("discord", "t", "0/2") != stream_name("discord", "t", "1/2")


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")


class HangingStore:
    """The store as a process frozen or cut off from the database sees it: every call hangs
    (a killed process renews nothing either) once `frozen` is set."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.frozen = False

    async def take_listener(self, *args) -> bool:
        if self.frozen:
            await asyncio.Event().wait()
        return await self.store.take_listener(*args)

    async def release_listener(self, *args) -> None:
        await self.store.release_listener(*args)


class FailingStore(HangingStore):
    async def take_listener(self, *args) -> bool:
        if self.frozen:
            raise ConnectionError("database gone")
        return await self.store.take_listener(*args)


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_the_second_front_end_takes_over_once_the_holders_lease_runs_out(store: Store):
    clock = FakeClock()
    frozen = HangingStore(store)
    a, b = Recorder(), Recorder()
    lease_a = ListenerLease(frozen, NAME, "a", LEASE_S, clock)
    lease_b = ListenerLease(store, NAME, "b", LEASE_S, clock)
    task_a = asyncio.create_task(keep_listening(lease_a, a.start, a.stop))
    await wait_until(lambda: a.events == ["start"])
    task_b = asyncio.create_task(keep_listening(lease_b, b.start, b.stop))
    for _ in range(6):  # a renews every 3 s; b tries every second and never gets it
        await clock.advance(1.0)
        await asyncio.sleep(0.01)
    assert b.events == [] and await store.listener_holder(NAME, clock.now()) == "a"
    frozen.frozen = True  # a stops renewing (dies)
    renewed_at = lease_a.held_until - LEASE_S
    while not b.events:
        assert clock.now() <= renewed_at + LEASE_S + lease_b.contend_every_s, "b did not take over in time"
        await clock.advance(0.5)
        await asyncio.sleep(0.01)
    assert b.events == ["start"] and clock.now() > renewed_at + LEASE_S
    # a's hanging renewal timed out on the lease's clock and a stopped before b started
    assert a.events == ["start", "stop"]
    task_b.cancel()
    await asyncio.gather(task_b, return_exceptions=True)
    assert b.events == ["start", "stop"]
    # Cancelled, b gave the lease up at once: no one holds it
    assert await store.listener_holder(NAME, clock.now()) is None
    task_a.cancel()
    await asyncio.gather(task_a, return_exceptions=True)


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_a_holder_that_cannot_renew_stops_listening_before_its_lease_runs_out(store: Store):
    clock = FakeClock()
    failing = FailingStore(store)
    a = Recorder()
    lease = ListenerLease(failing, NAME, "a", LEASE_S, clock)
    task = asyncio.create_task(keep_listening(lease, a.start, a.stop))
    await wait_until(lambda: a.events == ["start"])
    until = lease.held_until
    failing.frozen = True
    while a.events == ["start"]:
        await clock.advance(0.5)
        await asyncio.sleep(0.01)
    assert a.events == ["start", "stop"]
    assert clock.now() < until, "it listened on past its lease: another front end may have taken it"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class SlowStore(HangingStore):
    """A starved machine: the next renewals answer `late` real seconds late, then as usual."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.late: list[float] = []
        self.answered: list[bool] = []

    async def take_listener(self, *args) -> bool:
        await asyncio.sleep(self.late.pop(0) if self.late else 0.0)
        taken = await self.store.take_listener(*args)
        self.answered.append(taken)
        return taken


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
@pytest.mark.parametrize("late", [[3.6], [2.7, 2.7]], ids=["one-late-answer", "two-in-a-row"])
async def test_a_holder_rides_out_renewals_that_answer_late_but_within_its_lease(store: Store, late: list[float]):
    # Real seconds: the lateness is the loop's and the database's, not a FakeClock's. A 9 s
    # lease: renewals every 1.5 s, each counted from the last one's start, and a holder must stop
    # 3 s before its lease runs out, so a renewal may answer up to 4.5 s late. Renewals used to
    # come every 3 s counted from the last one's answer, and be given up after 3 s: any late
    # answer ended a healthy Discord session (a new IDENTIFY: what came meanwhile reached no one).
    slow = SlowStore(store)
    a = Recorder()
    lease = ListenerLease(slow, NAME, "a", LEASE_S, SystemClock())
    task = asyncio.create_task(keep_listening(lease, a.start, a.stop))
    try:
        await wait_until(lambda: a.events == ["start"], timeout=5)
        slow.late = list(late)
        answers = len(slow.answered)
        # The late renewals, and the one after them, all renewed: a listened on throughout
        await wait_until(lambda: len(slow.answered) > answers + len(late), timeout=2 * LEASE_S + sum(late))
        assert slow.answered[answers:] == [True] * (len(late) + 1)
        assert a.events == ["start"], "a gave up a lease it still held"
        assert await store.listener_holder(NAME, lease.clock.now()) == "a"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert a.events == ["start", "stop"]
