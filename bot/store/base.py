"""What every part of the store shares: the one database, the data folder, and small SQL helpers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bot.store.db import Database
from bot.store.postgres import PostgresDatabase


class StoreBase:
    """The state each aggregate's queries run on; Store is built from its subclasses."""

    def __init__(self, db: Database, data_dir: Path) -> None:
        self.db = db
        self.data_dir = data_dir

    @property
    def shared(self) -> bool:
        """True on PostgreSQL, where other processes use the same database."""
        return isinstance(self.db, PostgresDatabase)


def in_list(ids: list[str]) -> str:
    """`(?, ?, ...)`: the placeholders of an IN over these ids."""
    return f"({', '.join('?' * len(ids))})"


def chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
