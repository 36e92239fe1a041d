"""PostgreSQL, shared by any number of front-end and worker processes: a pool for queries, one
more connection for LISTEN, and the `?` placeholders and SQLite column types translated."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential

from bot.clock import Clock, SystemClock
from bot.store.db import Listener, Row, StoreError, _Rows

log = logging.getLogger("bot.db")


class PostgresDatabase(_Rows):
    """A pool of connections for queries and one more connection for LISTEN. A lost server
    (restart, failover) shows as StoreError on the queries in flight; the pool and the listener
    reconnect by themselves once it is back."""

    dialect = "postgresql"
    lock_clause = "FOR UPDATE"

    def __init__(self, url: str, pool: Any, clock: Clock | None = None) -> None:
        self._url = url
        self._pool = pool
        self._clock = clock or SystemClock()
        self._conn: contextvars.ContextVar[Any] = contextvars.ContextVar("pg_tx", default=None)
        self._listeners: dict[str, list[Listener]] = {}
        self._listen_conn: Any = None
        self._listen_task: asyncio.Task[None] | None = None
        self._closing = False
        # Set by the listener on (re)connection; the service polls once then, since
        # notifications sent while it was away are lost.
        self.on_reconnect: Callable[[], None] | None = None

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int = 10, wait_s: float = 0.0, clock: Clock | None = None
    ) -> PostgresDatabase:
        """Connect; while the server is unreachable (it starts after us, or restarts), keep
        trying for `wait_s` seconds (on `clock`), saying so in the log, before giving up with
        StoreError."""
        import asyncpg  # only deployments on PostgreSQL need the driver loaded

        clock = clock or SystemClock()
        deadline = clock.now() + wait_s
        backoff = wait_exponential(multiplier=0.5, max=5.0)  # 0.5, 1, 2, 4, 5, 5 ... s

        def pause(state: RetryCallState) -> float:
            return min(backoff(state), max(0.0, deadline - clock.now()))  # never past the deadline

        def say_why(state: RetryCallState) -> None:
            log.warning("PostgreSQL at %s cannot be reached yet (%s); trying again for %.0f s more",
                        _safe_url(url), state.outcome.exception() if state.outcome else "?",
                        deadline - clock.now())  # fmt: skip

        retrying = AsyncRetrying(
            # Refused, unreachable, or "the database system is starting up": worth waiting.
            retry=retry_if_exception_type((OSError, asyncpg.CannotConnectNowError)),
            stop=lambda _state: clock.now() >= deadline,
            wait=pause,
            sleep=clock.sleep,
            before_sleep=say_why,
            reraise=True,
        )

        async def connect() -> Any:
            # Awaited here: create_pool returns an awaitable, and tenacity calls a plain function
            # without awaiting what it returns.
            return await asyncpg.create_pool(url, min_size=1, max_size=pool_size, command_timeout=60)

        try:
            pool: Any = await retrying(connect)
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            raise StoreError(f"PostgreSQL at {_safe_url(url)} cannot be reached: {exc}.") from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # A wrong password or database name: waiting will not help.
            raise StoreError(f"PostgreSQL at {_safe_url(url)} refused the connection: {exc}.") from exc
        return cls(url, pool, clock)

    async def close(self) -> None:
        self._closing = True
        if self._listen_task is not None:
            self._listen_task.cancel()
            await asyncio.gather(self._listen_task, return_exceptions=True)
        if self._listen_conn is not None and not self._listen_conn.is_closed():
            await self._listen_conn.close()
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        import asyncpg

        try:
            yield
        except (
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
        ) as exc:
            # InternalClientError: a pooled connection caught mid-query by a server restart;
            # the pool drops it, and the caller's retry gets a fresh one.
            raise StoreError(f"PostgreSQL refused a query: {type(exc).__name__}: {exc}.") from exc

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        conn = self._conn.get()
        if conn is not None:
            yield conn
            return
        async with self._guard(), self._pool.acquire() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self._conn.get() is not None:
            yield
            return
        async with self._guard(), self._pool.acquire() as conn, conn.transaction():
            token = self._conn.set(conn)
            try:
                yield
            finally:
                self._conn.reset(token)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._connection() as conn, self._guard():
            status = await conn.execute(_pg_sql(sql), *args)
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            async with self._connection() as conn, self._guard():
                await conn.executemany(_pg_sql(sql), rows)

    async def fetch_written(self, sql: str, *args: Any) -> list[Row]:
        """Rows of one write with RETURNING (outside a transaction it commits on its own)."""
        async with self._connection() as conn, self._guard():
            return list(await conn.fetch(_pg_sql(sql), *args))

    async def fetch_all(self, sql: str, *args: Any) -> list[Row]:
        async with self._connection() as conn, self._guard():
            return list(await conn.fetch(_pg_sql(sql), *args))

    async def run_script(self, script: str) -> None:
        async with self._connection() as conn, self._guard():
            await conn.execute(postgres_ddl(script))

    async def reclaim(self) -> None:
        """Nothing to do here: PostgreSQL's (auto)vacuum reclaims deleted rows."""

    async def advisory_lock(self, key: int) -> None:
        """Inside a transaction: one process at a time past this point (migrations)."""
        await self.execute("SELECT pg_advisory_xact_lock(?)", key)

    # Notifications: LISTEN/NOTIFY ----------------------------------------------------------

    async def listen(self, channel: str, callback: Listener) -> None:
        self._listeners.setdefault(channel, []).append(callback)
        if self._listen_task is None:
            ready = asyncio.get_running_loop().create_future()
            self._listen_task = asyncio.create_task(self._keep_listening(ready), name="pg-listen")
            await ready
        elif self._listen_conn is not None and not self._listen_conn.is_closed():
            await self._listen_conn.add_listener(channel, self._dispatch)

    async def notify(self, channel: str, payload: str) -> None:
        await self.execute("SELECT pg_notify(?, ?)", channel, payload)

    def _dispatch(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        for callback in self._listeners.get(channel, ()):
            try:
                callback(payload)
            except Exception:
                log.exception("a listener of %s failed on %r", channel, payload)

    async def _keep_listening(self, ready: asyncio.Future[None]) -> None:
        """Hold a LISTEN connection; when the server goes away, reconnect with a short backoff."""
        import asyncpg

        first = True
        while not self._closing:
            lost = asyncio.Event()
            try:
                conn = await self._connect_listener(lost, retry=not first)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # At start the caller hears of it; once running, only closing ends the retries.
                if not ready.done():
                    ready.set_exception(StoreError(f"PostgreSQL LISTEN failed: {exc}."))
                return
            self._listen_conn = conn
            if first:
                first = False
                ready.set_result(None)
            else:
                log.info("PostgreSQL notifications reconnected")
                if self.on_reconnect is not None:
                    self.on_reconnect()
            # A dead server does not always close the socket at once: ask it now and then.
            while not lost.is_set():
                try:  # asyncio.timeout: wait_for may swallow a cancellation on Python 3.11
                    async with asyncio.timeout(5.0):
                        await lost.wait()
                except TimeoutError:
                    try:
                        async with asyncio.timeout(5.0):
                            await conn.execute("SELECT 1")
                    except Exception:
                        break
            with contextlib.suppress(Exception):
                await conn.close(timeout=1.0)
            if not self._closing:
                log.warning("PostgreSQL notification connection lost; reconnecting")

    async def _connect_listener(self, lost: asyncio.Event, *, retry: bool) -> Any:
        """A LISTEN connection on every channel; with `retry`, tried again with a short backoff
        (0.2 s doubling to 5 s, on this database's clock) until it works or the database closes."""
        import asyncpg

        async def connect() -> Any:
            conn = await asyncpg.connect(self._url)
            conn.add_termination_listener(lambda _c: lost.set())
            for channel in list(self._listeners):
                await conn.add_listener(channel, self._dispatch)
            return conn

        def say_why(state: RetryCallState) -> None:
            log.warning("PostgreSQL notifications unavailable (%s); retrying in %.1f s",
                        state.outcome.exception() if state.outcome else "?",
                        state.next_action.sleep if state.next_action else 0.0)  # fmt: skip

        retrying = AsyncRetrying(
            retry=retry_if_exception_type((OSError, asyncpg.PostgresError, asyncpg.InterfaceError)),
            stop=(lambda _state: self._closing) if retry else stop_after_attempt(1),
            wait=wait_exponential(multiplier=0.2, max=5.0),
            sleep=self._clock.sleep,
            before_sleep=say_why,
            reraise=True,
        )
        return await retrying(connect)


# SQL translation -----------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"'[^']*'|\?")


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """`?` placeholders to `$1, $2 ...` (question marks inside string literals stay)."""
    counter = 0

    def number(match: re.Match[str]) -> str:
        nonlocal counter
        if match.group(0) != "?":
            return match.group(0)
        counter += 1
        return f"${counter}"

    return _PLACEHOLDER.sub(number, sql)


_DDL_TYPES = [
    # SQLite's rowid alias becomes an identity column; every INTEGER is 64-bit (seeds, ids),
    # and REAL is double precision (timestamps in seconds need more than float4's 7 digits).
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
]


def postgres_ddl(script: str) -> str:
    """A migration written for SQLite, in PostgreSQL's column types; the same tables either way."""
    for pattern, replacement in _DDL_TYPES:
        script = pattern.sub(replacement, script)
    return script


def _safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
