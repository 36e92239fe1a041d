"""The database: members, jobs (which are the queue), pictures, usage, upgrades and audits.

Every state change of a job is written here before anyone is told about it, so a restart (or a
crash, of any process) loses nothing and delivers what was not delivered, once. The queue lives
in the jobs table: each waiting job's rank and sequence number order it (see bot/queue.py), so
any process can read a position, cancel a job, or claim a batch. The same SQL runs on SQLite
(one process) and PostgreSQL (many); bot/store/db.py and its two implementations translate
what differs.

Store inherits one small class per aggregate, all on StoreBase's one `db`, so callers keep calling
`store.claim_batch(...)` unchanged and one transaction may still span aggregates (payment + tier).
"""

from __future__ import annotations

from pathlib import Path

from bot.clock import Clock
from bot.store.accounts import TIERS_BY_DEFAULT, Account
from bot.store.billing import BillingStore
from bot.store.claims import ClaimsStore
from bot.store.coordination import CLAIM_LOCK, CoordinationStore
from bot.store.db import Database, Row, StoreError, is_postgres, sqlite_path
from bot.store.jobs import ACTIVE, JobRecord, JobsStore
from bot.store.pictures import PicturesStore
from bot.store.postgres import PostgresDatabase
from bot.store.schema import MIGRATION_LOCK, MIGRATIONS, import_picture_files, migrate
from bot.store.schema import schema_version as read_schema_version
from bot.store.sqlite import SqliteDatabase

__all__ = [
    "ACTIVE",
    "CLAIM_LOCK",
    "MIGRATION_LOCK",
    "MIGRATIONS",
    "TIERS_BY_DEFAULT",
    "Account",
    "Database",
    "JobRecord",
    "Row",
    "Store",
    "StoreError",
]


class Store(JobsStore, ClaimsStore, PicturesStore, BillingStore, CoordinationStore):
    """The bot's database, SQLite or PostgreSQL, behind one set of methods."""

    @classmethod
    async def open(cls, data_dir: Path, url: str = "", *, wait_s: float = 0.0, clock: Clock | None = None) -> Store:
        """`url` empty or `sqlite:///path`: SQLite (by default restyle.sqlite3 in data_dir);
        `postgresql://...`: a PostgreSQL database shared with other processes, waited for up
        to `wait_s` seconds when it cannot be reached yet."""
        data_dir = Path(data_dir)
        try:
            if not data_dir.exists():
                # Owner-only: it holds members' pictures and prompts, and the payment secret.
                data_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
                data_dir.chmod(0o700)
            probe = data_dir / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"The data folder {data_dir} cannot be written ({exc.strerror}). "
                "Set [bot] data_dir to a folder this user may write."
            ) from exc
        db: Database
        if is_postgres(url):
            db = await PostgresDatabase.open(url, wait_s=wait_s, clock=clock)
        else:
            path = sqlite_path(url) if url else data_dir / "restyle.sqlite3"
            if path is None:
                raise StoreError(f"[store] url must start with sqlite:/// or postgresql://, not {url.split(':')[0]!r}.")
            db = await SqliteDatabase.open(path)
        store = cls(db, data_dir)
        try:
            await migrate(db)
            await import_picture_files(db, data_dir, store.job)
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self.db.close()

    async def schema_version(self) -> int:
        return await read_schema_version(self.db)
