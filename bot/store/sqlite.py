"""SQLite, embedded: one process, one connection, one writer at a time (the default database)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite

from bot.store.db import Listener, Row, StoreError, _Rows

log = logging.getLogger("bot.db")


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
