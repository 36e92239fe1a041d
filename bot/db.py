"""One small interface over the two databases the bot runs on: SQLite (embedded, one process,
the default) and PostgreSQL (shared by any number of front-end and worker processes).

The store writes its SQL once, with `?` placeholders and the subset both databases understand;
this module translates placeholders and column types, runs transactions, and carries
notifications (LISTEN/NOTIFY on PostgreSQL, in-process calls on SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential

from bot.clock import Clock, SystemClock

log = logging.getLogger("bot.db")


class Row(Protocol):
    """A result row, read by column name or by position: sqlite3.Row and asyncpg.Record both are."""

    def __getitem__(self, key: str | int, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...


Listener = Callable[[str], None]


class StoreError(RuntimeError):
    """The database (or the picture storage) failed; the message is written for an admin."""


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///path` URL; None for any other URL."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class _Rows:
    """The reads both databases derive from fetch_all."""

    async def fetch_all(self, sql: str, *args: Any) -> list[Row]:
        raise NotImplementedError

    async def fetch_one(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch_all(sql, *args)
        return rows[0] if rows else None

    async def fetch_row(self, sql: str, *args: Any) -> Row:
        """The row a query always has (an aggregate, a row its caller knows exists)."""
        row = await self.fetch_one(sql, *args)
        if row is None:
            raise StoreError(f"no row where one was expected: {sql.split(' WHERE ')[0]}")
        return row

    async def fetch_value(self, sql: str, *args: Any) -> Any:
        row = await self.fetch_one(sql, *args)
        return None if row is None else row[0]


# SQLite copies the WAL back into the database file inside the commit that crosses
# wal_autocheckpoint pages (1000), on the connection's one thread. With 64 KiB pages and ~590 KB
# result pictures that was a 75-85 ms commit every ~0.7 s at 100 jobs/s, and every claim and
# every result of the worker waited behind it (bench/worker_duty.py: ~8 % of a 40 ms engine's
# time). So a second connection copies the WAL as commits come, on a thread of its own (sqlite3
# lets go of the GIL while it works), PASSIVE: it neither waits for nor blocks the main
# connection. The WAL starts over only after a checkpoint by the writer itself, so the writer's
# own checkpoint stays where SQLite puts it; it then finds all but the last ~0.1 s of commits
# copied already: 10-50 ms instead of 75-85. (Moving it out to 4000 pages made it rarer but
# 140-380 ms, with 256 MB of WAL; a RESTART checkpoint from the copier, to start the WAL over
# itself, made the main connection's writes fail with "database is locked".)
WAL_COPY_EVERY_S = 0.1  # at most this often, while writes come
WAL_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default, said here because the copier relies on it


async def _set_wal_mode(conn: Any, attempts: int = 100) -> None:
    """PRAGMA journal_mode=WAL needs the file to itself while a new database becomes WAL, and
    SQLite answers "database is locked" at once then, without waiting out the busy timeout: two
    processes opening one new file at the same moment (a bot and `doctor`) both must get in."""
    for attempt in range(attempts):
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.05)


class SqliteDatabase(_Rows):
    """One connection, one writer at a time (SQLite allows no more), autocommit outside
    `transaction()`. Notifications stay in this process: only one process may use the file."""

    dialect = "sqlite"
    lock_clause = ""  # SELECT ... FOR UPDATE: the single writer lock already serializes

    def __init__(self, conn: aiosqlite.Connection, path: Path | None = None) -> None:
        self._conn = conn
        self._write_lock = asyncio.Lock()
        self._in_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar("sqlite_tx", default=False)
        self._listeners: dict[str, list[Listener]] = {}
        self._path = path  # None: no WAL copier (the writer checkpoints, as SQLite does by default)
        self._wal_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-wal-copy")
        self._wal_conn: sqlite3.Connection | None = None  # used on _wal_thread only
        self._wal_lock = asyncio.Lock()  # a copy, or reclaim()'s TRUNCATE: one at a time
        self._wal_copier: asyncio.Task[None] | None = None
        self._wal_dirty = False
        self._closing = False
        self.on_reconnect: Callable[[], None] | None = None  # never called: see Database

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        _owner_only(Path(path))
        try:
            conn = await aiosqlite.connect(path, timeout=10.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"The database {path} cannot be opened: {exc}.") from exc
        try:
            conn.row_factory = sqlite3.Row
            # Deleted rows (purged prompts and pictures) are overwritten with zeros, not left in
            # free pages; some SQLite builds do this by default, this makes it so on all.
            await conn.execute("PRAGMA secure_delete=ON")
            await conn.execute("PRAGMA page_size=65536")
            await _set_wal_mode(conn)
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        except sqlite3.Error as exc:
            await conn.close()
            raise StoreError(f"The database {path} cannot be opened: {exc}.") from exc
        return cls(conn, Path(path))

    async def close(self) -> None:
        self._closing = True
        if self._wal_copier is not None:  # a copy in flight finishes on its thread before the close below
            self._wal_copier.cancel()
            await asyncio.gather(self._wal_copier, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._wal_thread, self._close_wal_conn)
        self._wal_thread.shutdown(wait=False)
        await self._conn.close()

    # The WAL copier ----------------------------------------------------------------------

    def _wrote(self) -> None:
        """After a commit: have the copier run soon (it coalesces a burst of commits)."""
        if self._path is None or self._closing:
            return
        self._wal_dirty = True
        if self._wal_copier is None or self._wal_copier.done():
            self._wal_copier = asyncio.get_running_loop().create_task(self._copy_wal(), name="sqlite-wal-copy")

    async def _copy_wal(self) -> None:
        loop = asyncio.get_running_loop()
        while self._wal_dirty and not self._closing:
            self._wal_dirty = False
            async with self._wal_lock:
                await loop.run_in_executor(self._wal_thread, self._checkpoint_passive)
            if not self._closing:
                await asyncio.sleep(WAL_COPY_EVERY_S)

    def _checkpoint_passive(self) -> None:
        try:
            if self._wal_conn is None:
                if self._path is None:  # no file of its own (the copier is not started then)
                    return
                self._wal_conn = sqlite3.connect(self._path, timeout=0.0, isolation_level=None, check_same_thread=False)
            self._wal_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            # The writer's own checkpoint (WAL_AUTOCHECKPOINT_PAGES) still bounds the WAL.
            log.warning("could not copy the WAL into %s (%s); the next commit tries again", self._path, exc)

    def _close_wal_conn(self) -> None:
        if self._wal_conn is not None:
            self._wal_conn.close()
            self._wal_conn = None

    async def reclaim(self) -> None:
        """After deleting what must not linger: move the WAL into the database file (where
        secure_delete has zeroed the freed space) and empty it, so the deleted rows' old copies
        in the WAL are gone too."""
        async with self._wal_lock, self._write_lock, self._guard():
            async with self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cursor:
                await cursor.fetchall()

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            # "database is locked", "disk I/O error", "database or disk is full" ...
            raise StoreError(f"The database refused a query: {exc}.") from exc

    @contextlib.asynccontextmanager
    async def _writer(self) -> AsyncIterator[None]:
        if self._in_transaction.get():
            yield
            return
        async with self._write_lock:
            yield

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error; nested calls join the outer one."""
        if self._in_transaction.get():
            yield
            return
        async with self._write_lock, self._guard():
            await self._begin()
            token = self._in_transaction.set(True)
            try:
                yield
            except BaseException:
                await self._conn.rollback()
                raise
            finally:
                self._in_transaction.reset(token)
            await self._conn.commit()
        self._wrote()

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE, cancellation-safe. A task cancelled while its BEGIN is on the way
        (App.stop cancels a batch being stored) does not stop the BEGIN: it still runs on
        aiosqlite's thread, and a transaction nobody owns would take in every later write on this
        connection, never committed ("cannot start a transaction within a transaction"). So
        let it land, undo it, and only then let the cancellation through."""

        async def begin() -> None:
            await self._conn.execute("BEGIN IMMEDIATE")

        started = asyncio.ensure_future(begin())
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError:
            await asyncio.wait([started])
            if not started.cancelled() and started.exception() is None:
                await self._conn.rollback()
            raise

    async def execute(self, sql: str, *args: Any) -> int:
        """A write; returns the number of rows it changed."""
        async with self._writer(), self._guard():
            count = await self._on_thread(_changed_rows, sql, args)
        if not self._in_transaction.get():
            self._wrote()
        return count

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self._writer(), self._guard():
            await self._conn.executemany(sql, list(rows))
        if not self._in_transaction.get():
            self._wrote()

    async def fetch_all(self, sql: str, *args: Any) -> list[Row]:
        """Rows of a SELECT (or of a write with RETURNING: call it inside `transaction()`)."""
        async with self._guard():
            return await self._on_thread(_all_rows, sql, args)

    async def _on_thread(
        self, query: Callable[[sqlite3.Connection, str, Sequence[Any]], Any], sql: str, args: Sequence[Any]
    ) -> Any:
        """One statement, whole, in one trip to aiosqlite's thread. aiosqlite's own cursor API
        makes three (execute, fetchall, close; a write two), and each trip is a hand-over of
        the GIL both ways and a wake-up of the event loop: at ~40 statements a batch that was
        ~90 trips, the biggest share of the database thread's CPU per job and the latency a fast
        engine waited on (bench/worker_duty.py). `_execute` is how aiosqlite's own helpers
        (execute_fetchall, execute_insert) run a function there."""
        connection = self._conn
        return await connection._execute(query, connection._conn, sql, args)

    async def fetch_written(self, sql: str, *args: Any) -> list[Row]:
        """Rows of one write with RETURNING, committed on its own (or in the caller's
        transaction): one trip where transaction() + fetch_all takes three (BEGIN, it, COMMIT)."""
        async with self._writer(), self._guard():
            rows = await self._on_thread(_all_rows, sql, args)
        if not self._in_transaction.get():
            self._wrote()
        return rows

    async def run_script(self, script: str) -> None:
        """Several statements at once (migrations), inside the caller's transaction."""
        async with self._guard():
            for statement in split_statements(script):
                await self._conn.execute(statement)

    # Notifications: in-process only --------------------------------------------------------

    async def listen(self, channel: str, callback: Listener) -> None:
        self._listeners.setdefault(channel, []).append(callback)

    async def notify(self, channel: str, payload: str) -> None:
        loop = asyncio.get_running_loop()
        for callback in self._listeners.get(channel, ()):
            loop.call_soon(callback, payload)


def _all_rows(connection: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[Any]:
    cursor = connection.execute(sql, args)
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


def _changed_rows(connection: sqlite3.Connection, sql: str, args: Sequence[Any]) -> int:
    cursor = connection.execute(sql, args)
    try:
        return cursor.rowcount
    finally:
        cursor.close()


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


def split_statements(script: str) -> list[str]:
    """Migrations hold no semicolons inside literals, so splitting on them is enough."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _owner_only(path: Path) -> None:
    """The database file, and its -wal and -shm files, readable by this user only: a new file is
    created 0600 before SQLite opens it (SQLite gives -wal and -shm the database file's mode),
    and one left wider by an older version is narrowed."""
    if str(path) == ":memory:":
        return
    try:
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # an empty file is an empty database
        for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if each.exists() and each.stat().st_mode & 0o077:
                each.chmod(0o600)
                log.info("%s was readable by other users; it is now readable by its owner only", each)
    except OSError as exc:  # not ours to change (a path the admin chose): say so, and carry on
        log.warning("could not make %s readable by its owner only: %s", path, exc)


def _safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class Database(Protocol):
    """What the store asks of a database; SqliteDatabase and PostgresDatabase both are one."""

    dialect: str
    lock_clause: str  # after a SELECT that a transaction goes on to update
    # Called after the database came back from an outage (notifications sent meanwhile are lost);
    # SQLite never sets it off: its file does not go away.
    on_reconnect: Callable[[], None] | None

    def transaction(self) -> AbstractAsyncContextManager[None]: ...
    async def execute(self, sql: str, *args: Any) -> int: ...
    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...
    async def fetch_all(self, sql: str, *args: Any) -> list[Row]: ...
    async def fetch_written(self, sql: str, *args: Any) -> list[Row]: ...
    async def fetch_one(self, sql: str, *args: Any) -> Row | None: ...
    async def fetch_row(self, sql: str, *args: Any) -> Row: ...
    async def fetch_value(self, sql: str, *args: Any) -> Any: ...
    async def run_script(self, script: str) -> None: ...
    async def listen(self, channel: str, callback: Listener) -> None: ...
    async def notify(self, channel: str, payload: str) -> None: ...
    async def reclaim(self) -> None: ...
    async def close(self) -> None: ...
