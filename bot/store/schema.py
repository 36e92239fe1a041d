"""The tables, and how a database gets to the newest schema: migrations, one version at a time,
one process at a time; and, once, the pictures older versions kept as files."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.store.db import Database, StoreError
from bot.store.postgres import PostgresDatabase

log = logging.getLogger("bot.store")

MIGRATION_LOCK = 0x7265_7374  # advisory lock key: one process migrates at a time

# Each entry moves the schema one version up; never edit a released entry, append a new one.
# Written in SQLite's types; bot/store/postgres.py maps them to PostgreSQL's (same tables on both).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        tier TEXT NOT NULL DEFAULT 'free',
        tier_expires_at REAL,
        created_at REAL NOT NULL
    );
    CREATE TABLE identities (
        platform TEXT NOT NULL,
        platform_user_id TEXT NOT NULL,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        display_name TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (platform, platform_user_id)
    );
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        platform TEXT NOT NULL,
        platform_user_id TEXT NOT NULL,
        reply_json TEXT NOT NULL,
        prompt TEXT NOT NULL,
        negative_prompt TEXT,
        strength REAL NOT NULL,
        seed INTEGER NOT NULL,
        steps INTEGER NOT NULL,
        output_format TEXT,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        batch_key TEXT NOT NULL,
        tier TEXT NOT NULL,
        rank REAL NOT NULL,
        seq INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        deliver_after REAL,
        delivered_at REAL,
        seconds REAL,
        error TEXT,
        quota_day TEXT NOT NULL,
        parent_job_id TEXT
    );
    CREATE INDEX jobs_waiting ON jobs (status, rank, seq);
    CREATE INDEX jobs_account ON jobs (account_id, status);
    CREATE INDEX jobs_undelivered ON jobs (delivered_at, status);
    CREATE TABLE daily_usage (
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        day TEXT NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (account_id, day)
    );
    CREATE TABLE tier_changes (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        from_tier TEXT NOT NULL,
        to_tier TEXT NOT NULL,
        expires_at REAL,
        reason TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        at REAL NOT NULL
    );
    """,
    """
    CREATE TABLE bans (
        account_id INTEGER PRIMARY KEY REFERENCES accounts(id),
        reason TEXT NOT NULL,
        banned_by TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE admin_actions (
        id INTEGER PRIMARY KEY,
        action TEXT NOT NULL,
        account_id INTEGER REFERENCES accounts(id),
        detail TEXT NOT NULL,
        done_by TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX jobs_finished ON jobs (finished_at);
    """,
    """
    CREATE TABLE codes (
        hash TEXT PRIMARY KEY,
        tier TEXT NOT NULL,
        days INTEGER NOT NULL,
        created_at REAL NOT NULL,
        valid_until REAL NOT NULL,
        used_at REAL,
        used_by INTEGER REFERENCES accounts(id)
    );
    CREATE TABLE link_codes (
        hash TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        platform TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE payments (
        charge_id TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        platform_user_id TEXT NOT NULL,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        plan TEXT NOT NULL,
        tier TEXT NOT NULL,
        amount INTEGER NOT NULL,
        currency TEXT NOT NULL,
        prev_tier TEXT NOT NULL,
        prev_expires_at REAL,
        expires_at REAL,
        subscription_expires_at REAL,
        status TEXT NOT NULL CHECK (status IN ('paid', 'refunded')),
        at REAL NOT NULL,
        refunded_at REAL
    );
    CREATE INDEX payments_account ON payments (account_id);
    """,
    """
    CREATE TABLE pictures (
        job_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('input', 'result')),
        data BLOB NOT NULL,
        PRIMARY KEY (job_id, kind)
    );
    ALTER TABLE jobs ADD COLUMN worker_id TEXT;
    ALTER TABLE jobs ADD COLUMN lease_until REAL;
    ALTER TABLE jobs ADD COLUMN delivery_by TEXT;
    ALTER TABLE jobs ADD COLUMN delivery_until REAL;
    CREATE INDEX jobs_batch ON jobs (status, batch_key, rank, seq);
    CREATE INDEX jobs_lease ON jobs (status, lease_until);
    """,
    """
    CREATE TABLE job_seq (n INTEGER NOT NULL);
    INSERT INTO job_seq SELECT COALESCE(MAX(seq), 0) FROM jobs;
    DROP INDEX jobs_waiting;
    DROP INDEX jobs_batch;
    CREATE INDEX jobs_waiting ON jobs (status, rank, seq, id);
    CREATE INDEX jobs_batch ON jobs (status, batch_key, rank, seq, id);
    """,
    """
    CREATE TABLE guesses (
        member_key TEXT PRIMARY KEY,
        window_start REAL NOT NULL,
        tries INTEGER NOT NULL
    );
    """,
    """
    ALTER TABLE jobs ADD COLUMN request_key TEXT;
    CREATE UNIQUE INDEX jobs_request ON jobs (platform, request_key);
    """,
    """
    CREATE TABLE listener_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until REAL NOT NULL,
        taken_at REAL NOT NULL
    );
    CREATE TABLE incoming (
        platform TEXT NOT NULL,
        request_key TEXT NOT NULL,
        body TEXT NOT NULL,
        received_by TEXT NOT NULL,
        received_at REAL NOT NULL,
        handled_at REAL,
        PRIMARY KEY (platform, request_key)
    );
    CREATE INDEX incoming_open ON incoming (platform, handled_at, received_at);
    """,
    """
    ALTER TABLE jobs ADD COLUMN sweep_id TEXT;
    CREATE INDEX jobs_sweep ON jobs (sweep_id);
    """,
]


async def migrate(db: Database) -> None:
    async with db.transaction():
        if isinstance(db, PostgresDatabase):
            await db.advisory_lock(MIGRATION_LOCK)  # two processes starting at once
        await db.run_script("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = await db.fetch_value("SELECT MAX(version) FROM schema_version") or 0
        if current > len(MIGRATIONS):
            raise StoreError(f"The database was written by a newer restyle-bot (schema {current}); upgrade the bot.")
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            await db.run_script(script)
            await db.execute("INSERT INTO schema_version VALUES (?)", version)
            log.info("database schema migrated to version %d", version)


async def schema_version(db: Database) -> int:
    return await db.fetch_value("SELECT MAX(version) FROM schema_version")


async def import_picture_files(db: Database, data_dir: Path, find_job: Callable[[str], Awaitable[object]]) -> None:
    """Before schema 4 pictures were files in data_dir/pictures; move them into the
    database once, so an upgrade loses no queued job and no kept result. `find_job` answers
    None for a job the database does not hold (its files are dropped)."""
    folder = data_dir / "pictures"
    if not folder.is_dir():
        return
    moved = 0
    for path in sorted(folder.glob("*.img")):
        job_id, _, suffix = path.name.removesuffix(".img").rpartition(".")
        kind = {"in": "input", "out": "result"}.get(suffix)
        if kind is None:
            continue
        if await find_job(job_id) is not None:
            await db.execute(
                "INSERT INTO pictures (job_id, kind, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                job_id, kind, path.read_bytes(),
            )  # fmt: skip
            moved += 1
        path.unlink()
    for leftover in folder.glob("*.tmp"):
        leftover.unlink()
    if moved:
        log.info("moved %d picture files into the database", moved)
