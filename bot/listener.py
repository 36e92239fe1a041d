"""One listener per platform stream, however many front ends run.

Telegram gives a token's updates to one `getUpdates` reader (a second one gets 409 Conflict), and
Discord sends every event of a shard to every gateway session of it: two front ends listening
would split Telegram's updates and handle each Discord event twice. So each stream (a Telegram
token, a Discord shard) has a lease in the database, the same pattern the workers' job leases
use: the holder renews it every `lease_s / 6`; when it stops (it died, or lost the database),
another front end takes the lease once it ran out and starts listening in its place. Every front
end, holder or not, still delivers results, edits statuses and serves the web page.

With SQLite there is one process, so its one front end always holds every lease.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from bot.clock import Clock

log = logging.getLogger("bot.listener")

# A front end that does not hold a lease looks for it at least this often, so a takeover comes
# at most this long after the holder's lease ran out (and lease_s / 3 for short leases).
CONTEND_EVERY_S = 1.0


class LeaseStore(Protocol):
    async def take_listener(self, name: str, holder: str, now: float, until: float) -> bool: ...

    async def release_listener(self, name: str, holder: str) -> None: ...

    async def listener_holders(self, prefix: str, now: float) -> list[tuple[str, str]]: ...


def stream_name(platform: str, secret: str, part: str = "") -> str:
    """The lease's name for one stream: the platform, a hash of its token (never the token
    itself: the database is read by more people than the config) and e.g. a shard."""
    digest = hashlib.sha256(f"restyle-listener:{secret}".encode()).hexdigest()[:16]
    return f"{platform}:{digest}" + (f":{part}" if part else "")


@dataclass
class ListenerLease:
    """One front end's claim on one stream."""

    store: LeaseStore
    name: str
    holder: str  # this process (the service's instance id)
    lease_s: float
    clock: Clock
    held_until: float | None = None  # as last written by us; None: not held

    @property
    def stop_before_s(self) -> float:
        """A holder whose renewals fail stops listening this long before its lease runs out."""
        return self.lease_s / 3

    @property
    def renew_every_s(self) -> float:
        # Twice per stop_before_s: a renewal that starts late (the loop lagged) or answers late
        # (a busy database) still has lease_s / 2 to land before the holder must stop; renewing
        # every lease_s / 3 left it lease_s / 3, and one slow query on a starved machine ended
        # a healthy gateway session (a new IDENTIFY, whose missed events Discord never sends).
        return self.lease_s / 6

    @property
    def contend_every_s(self) -> float:
        return min(self.lease_s / 3, CONTEND_EVERY_S)

    def may_listen(self) -> bool:
        """Held, with time to spare: a holder whose renewals fail stops stop_before_s before its
        lease runs out, so two never listen at once however the database fails."""
        return self.held_until is not None and self.clock.now() + self.stop_before_s < self.held_until

    def _renew_timeout_s(self, now: float) -> float:
        """How long a renewal may take: a holder waits until it would have to stop anyway (at
        least renew_every_s, when the loop woke that late); a contender lease_s / 3."""
        if self.held_until is None:
            return self.lease_s / 3
        return max(self.held_until - self.stop_before_s - now, self.renew_every_s)

    async def renew(self) -> bool:
        """Take or renew the lease; returns may_listen() afterwards. A database error keeps what
        was held until then (and logs), so one failed query does not end a session."""
        now = self.clock.now()
        try:
            # A query that hangs (a database cut off) counts as failed: waiting it out could
            # outlast the lease while we still listen.
            taken = await self._within(
                self.store.take_listener(self.name, self.holder, now, now + self.lease_s), self._renew_timeout_s(now)
            )
        except Exception as exc:
            log.warning(
                "could not renew the %s listener lease (%s, after %.1f s); keeping it until it runs out",
                self.name,
                str(exc) or type(exc).__name__,
                self.clock.now() - now,
            )
            return self.may_listen()
        self.held_until = now + self.lease_s if taken else None
        return taken

    async def _within(self, query: Awaitable[bool], timeout_s: float) -> bool:
        """`query`'s answer, or TimeoutError once `timeout_s` has passed on the lease's clock (the
        clock the lease's times are read on: a test's FakeClock moves both)."""
        answer = asyncio.ensure_future(query)
        timer = asyncio.ensure_future(self.clock.sleep(timeout_s))
        try:
            await asyncio.wait({answer, timer}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            answer.cancel()
            raise
        finally:
            timer.cancel()
        if not answer.done():
            # As wait_for does: the query is cancelled and its end awaited before the next one.
            answer.cancel()
            await asyncio.gather(answer, return_exceptions=True)
            raise TimeoutError(f"no answer within {timeout_s:.1f} s")
        return answer.result()

    async def release(self) -> None:
        if self.held_until is None:
            return
        self.held_until = None
        try:
            await self.store.release_listener(self.name, self.holder)
        except Exception as exc:
            # It runs out by itself within lease_s; another front end takes over then.
            log.warning("could not give up the %s listener lease (%s)", self.name, exc)


async def keep_listening(
    lease: ListenerLease,
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    wants: Callable[[bool], Awaitable[bool]] | None = None,
) -> None:
    """Listen while holding `lease`: `start()` when it is taken, `stop()` when it is lost, for
    as long as this runs (cancel it to end; a held lease is then stopped and given up).
    `wants(listening)`, when given, says whether this front end should hold the lease now (a
    fair share of Discord's shards): False makes it leave a free lease alone, or give up one
    it holds so that another front end takes it."""
    listening = False
    try:
        while True:
            if wants is not None and not await wants(listening):
                if listening:
                    log.info("giving the %s listener lease to a front end with fewer streams", lease.name)
                    listening = False
                    await stop()
                await lease.release()
                await lease.clock.sleep(lease.contend_every_s)
                continue
            tried_at = lease.clock.now()
            may = await lease.renew()
            if may and not listening:
                log.info("holding the %s listener lease: listening here", lease.name)
                try:
                    await start()
                except Exception:
                    log.exception("could not start listening on %s; giving the lease to another front end", lease.name)
                    await lease.release()
                    await lease.clock.sleep(lease.lease_s)
                    continue
                listening = True
            elif not may and listening:
                log.warning("lost the %s listener lease: another front end listens now", lease.name)
                listening = False
                await stop()
            if listening:
                # Counted from this try's start: a slow answer or a slow start() must not push the
                # next try toward the end of the lease (it comes at once when they took that long).
                await lease.clock.sleep(tried_at + lease.renew_every_s - lease.clock.now())
            else:
                await lease.clock.sleep(lease.contend_every_s)
    finally:
        if listening:
            await asyncio.shield(_stop_and_release(lease, stop))
        else:
            await asyncio.shield(lease.release())


async def _stop_and_release(lease: ListenerLease, stop: Callable[[], Awaitable[None]]) -> None:
    try:
        await stop()
    finally:
        await lease.release()


class InboxStore(Protocol):
    async def receive(self, platform: str, request_key: str, body: str, received_by: str, now: float) -> bool: ...

    async def mark_handled(self, platform: str, request_key: str, now: float) -> None: ...

    async def unhandled(self, platform: str, received_by_not_in: Collection[str] = ()) -> list[tuple[str, str]]: ...


@dataclass
class Inbox:
    """What came in on a platform's stream, written down before its receipt is confirmed to the
    platform: a front end that dies with updates in hand leaves them to the next holder, and an
    update the platform sends again (unconfirmed at the handover) is recognised by its key."""

    store: InboxStore
    platform: str
    holder: str
    clock: Clock

    async def receive(self, request_key: str, body: str) -> bool:
        """True: new, handle it. False: received before (by this or another front end)."""
        return await self.store.receive(self.platform, request_key, body, self.holder, self.clock.now())

    async def handled(self, request_key: str) -> None:
        await self.store.mark_handled(self.platform, request_key, self.clock.now())

    async def left_over(self, received_by_not_in: Collection[str] = ()) -> list[tuple[str, str]]:
        """(key, body) of what a former holder received and never finished handling; with
        `received_by_not_in`, leaving out what those (live) front ends have in hand."""
        return await self.store.unhandled(self.platform, received_by_not_in)


class ListenerStore(LeaseStore, InboxStore, Protocol):
    """Leases and inboxes: what Listeners needs of the store (bot.store.Store is one)."""


@dataclass
class Listeners:
    """Handed to each front end when several processes share the database (PostgreSQL): the
    leases and inboxes of its streams. None (SQLite, one process): listen without a lease."""

    store: ListenerStore
    holder: str
    lease_s: float
    clock: Clock

    def lease(self, name: str) -> ListenerLease:
        return ListenerLease(self.store, name, self.holder, self.lease_s, self.clock)

    async def holders(self, prefix: str) -> list[tuple[str, str]]:
        """(name, holder) of the leases running now whose names start with `prefix`."""
        return await self.store.listener_holders(prefix, self.clock.now())

    def inbox(self, platform: str) -> Inbox:
        return Inbox(self.store, platform, self.holder, self.clock)
