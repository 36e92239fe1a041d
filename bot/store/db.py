"""What the store asks of a database, and the reads both databases derive from one query.

The store writes its SQL once, with `?` placeholders and the subset both databases understand;
the two implementations (bot/store/sqlite.py, bot/store/postgres.py) translate placeholders and
column types, run transactions, and carry notifications (LISTEN/NOTIFY on PostgreSQL, in-process
calls on SQLite).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol


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
