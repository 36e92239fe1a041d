"""SQLite: members, jobs, daily usage and the audit of tier changes. Pictures live as files.

Every state change of a job is written here before anyone is told about it, so a restart (or a
crash) can rebuild the queue and deliver what was not delivered, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import aiosqlite

log = logging.getLogger("bot.store")

TIERS_BY_DEFAULT = "free"

# Each entry moves the schema one version up; never edit a released entry, append a new one.
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
]

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")


class StoreError(RuntimeError):
    """The database or the picture folder failed; the message is written for an admin."""


@dataclass(frozen=True)
class Account:
    id: int
    tier: str  # as stored; see effective_tier
    tier_expires_at: float | None

    def effective_tier(self, now: float) -> str:
        """An expired tier reads as free."""
        if self.tier_expires_at is not None and self.tier_expires_at <= now:
            return TIERS_BY_DEFAULT
        return self.tier


@dataclass(frozen=True)
class JobRecord:
    id: str
    account_id: int
    platform: str
    platform_user_id: str
    reply: dict[str, Any]  # what the owning front end needs to answer later (chat, message ids)
    prompt: str
    negative_prompt: str | None
    strength: float
    seed: int
    steps: int
    output_format: str | None
    width: int
    height: int
    batch_key: str
    tier: str
    rank: float
    seq: int
    status: str
    created_at: float
    quota_day: str
    started_at: float | None = None
    finished_at: float | None = None
    deliver_after: float | None = None
    delivered_at: float | None = None
    seconds: float | None = None
    error: str | None = None
    parent_job_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


_JOB_COLUMNS = [
    "id", "account_id", "platform", "platform_user_id", "reply_json", "prompt", "negative_prompt",
    "strength", "seed", "steps", "output_format", "width", "height", "batch_key", "tier", "rank",
    "seq", "status", "created_at", "quota_day", "started_at", "finished_at", "deliver_after",
    "delivered_at", "seconds", "error", "parent_job_id",
]  # fmt: skip


def _job_from_row(row: sqlite3.Row) -> JobRecord:
    values = dict(row)
    values["reply"] = json.loads(values.pop("reply_json"))
    return JobRecord(**values)


def _serialized(method):
    """One writer at a time: the connection is shared, and a commit from one coroutine must not
    land in the middle of another coroutine's transaction."""

    @functools.wraps(method)
    async def wrapper(self: "Store", *args: Any, **kwargs: Any) -> Any:
        async with self._write_lock:
            try:
                return await method(self, *args, **kwargs)
            except sqlite3.OperationalError as exc:
                # "database is locked", "disk I/O error", "database or disk is full" ...
                raise StoreError(f"The database refused a write: {exc}.") from exc

    return wrapper


class Store:
    """One SQLite database file (WAL) and the picture folder beside it."""

    def __init__(self, db: aiosqlite.Connection, data_dir: Path) -> None:
        self._db = db
        self._write_lock = asyncio.Lock()
        self.data_dir = data_dir
        self.pictures_dir = data_dir / "pictures"

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on any error. Callers hold the write lock
        (@_serialized); a `return` inside commits what was written so far (nothing, where a
        check failed before the first change)."""
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            await self._db.rollback()
            raise
        await self._db.commit()

    @classmethod
    async def open(cls, data_dir: Path) -> "Store":
        data_dir = Path(data_dir)
        try:
            (data_dir / "pictures").mkdir(parents=True, exist_ok=True)
            probe = data_dir / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"The data folder {data_dir} cannot be written ({exc.strerror}). "
                "Set [bot] data_dir to a folder this user may write."
            ) from exc
        try:
            db = await aiosqlite.connect(data_dir / "restyle.sqlite3", timeout=10.0)
        except sqlite3.Error as exc:
            raise StoreError(f"The database in {data_dir} cannot be opened: {exc}.") from exc
        try:
            db.row_factory = sqlite3.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA foreign_keys=ON")
            store = cls(db, data_dir)
            await store._migrate()
        except BaseException as exc:
            await db.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"The database in {data_dir} cannot be opened: {exc}.") from exc
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        await self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        async with self._db.execute("SELECT MAX(version) FROM schema_version") as cur:
            (current,) = await cur.fetchone()
        current = current or 0
        if current > len(MIGRATIONS):
            raise StoreError(
                f"The database was written by a newer restyle-bot (schema {current}); upgrade the bot."
            )
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            await self._db.executescript(f"BEGIN; {script}; INSERT INTO schema_version VALUES ({version}); COMMIT;")
            log.info("database schema migrated to version %d", version)

    async def schema_version(self) -> int:
        async with self._db.execute("SELECT MAX(version) FROM schema_version") as cur:
            (version,) = await cur.fetchone()
        return version

    # Pictures --------------------------------------------------------------------------------

    # A lossless picture whose format Pillow reads from its content: uncompressed TIFF when
    # written on the hot path, recompressed to PNG in place an hour after delivery.
    def input_path(self, job_id: str) -> Path:
        return self.pictures_dir / f"{job_id}.in.img"

    def result_path(self, job_id: str) -> Path:
        return self.pictures_dir / f"{job_id}.out.img"

    def write_picture(self, path: Path, data: bytes) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half of one."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"Could not save a picture in {self.pictures_dir}: {exc.strerror}.") from exc

    # Accounts --------------------------------------------------------------------------------

    @_serialized
    async def account_for(self, platform: str, user_id: str, now: float, display_name: str = "") -> Account:
        """The account behind a platform identity, created on first sight."""
        async with self._db.execute(
            "SELECT a.id, a.tier, a.tier_expires_at FROM identities i JOIN accounts a ON a.id = i.account_id "
            "WHERE i.platform = ? AND i.platform_user_id = ?",
            (platform, user_id),
        ) as cur:
            row = await cur.fetchone()
        if row is not None:
            return Account(row["id"], row["tier"], row["tier_expires_at"])
        cur = await self._db.execute("INSERT INTO accounts (tier, created_at) VALUES ('free', ?)", (now,))
        account_id = cur.lastrowid
        await self._db.execute(
            "INSERT INTO identities (platform, platform_user_id, account_id, display_name) VALUES (?, ?, ?, ?)",
            (platform, user_id, account_id, display_name),
        )
        await self._db.commit()
        return Account(account_id, "free", None)

    async def account(self, account_id: int) -> Account:
        async with self._db.execute(
            "SELECT id, tier, tier_expires_at FROM accounts WHERE id = ?", (account_id,)
        ) as cur:
            row = await cur.fetchone()
        return Account(row["id"], row["tier"], row["tier_expires_at"])

    @_serialized
    async def set_tier(
        self, account_id: int, tier: str, expires_at: float | None, *, reason: str, changed_by: str, now: float
    ) -> Account:
        await self._write_tier(account_id, tier, expires_at, reason=reason, changed_by=changed_by, now=now)
        await self._db.commit()
        return Account(account_id, tier, expires_at)

    async def tier_changes(self, account_id: int) -> list[dict[str, Any]]:
        async with self._db.execute(
            "SELECT from_tier, to_tier, expires_at, reason, changed_by, at FROM tier_changes "
            "WHERE account_id = ? ORDER BY id",
            (account_id,),
        ) as cur:
            return [dict(row) for row in await cur.fetchall()]

    async def _write_tier(
        self, account_id: int, tier: str, expires_at: float | None, *, reason: str, changed_by: str, now: float
    ) -> None:
        """Inside a caller's transaction: change the tier and audit it."""
        before = await self.account(account_id)
        await self._db.execute(
            "UPDATE accounts SET tier = ?, tier_expires_at = ? WHERE id = ?", (tier, expires_at, account_id)
        )
        await self._db.execute(
            "INSERT INTO tier_changes (account_id, from_tier, to_tier, expires_at, reason, changed_by, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (account_id, before.effective_tier(now), tier, expires_at, reason, changed_by, now),
        )

    # Upgrades: codes, links, payments --------------------------------------------------------

    @_serialized
    async def add_codes(self, hashes: list[str], tier: str, days: int, valid_until: float, now: float) -> None:
        await self._db.executemany(
            "INSERT INTO codes (hash, tier, days, created_at, valid_until) VALUES (?, ?, ?, ?, ?)",
            [(h, tier, days, now, valid_until) for h in hashes],
        )
        await self._db.commit()

    async def code(self, code_hash: str) -> dict[str, Any] | None:
        async with self._db.execute("SELECT * FROM codes WHERE hash = ?", (code_hash,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    @_serialized
    async def use_code(
        self, code_hash: str, account_id: int, tier: str, expires_at: float | None, *, changed_by: str, now: float
    ) -> bool:
        """Spend a code and set the tier it gives, in one transaction; False (nothing written)
        when the code was used or expired meanwhile."""
        async with self._transaction():
            cur = await self._db.execute(
                "UPDATE codes SET used_at = ?, used_by = ? WHERE hash = ? AND used_at IS NULL AND valid_until > ?",
                (now, account_id, code_hash, now),
            )
            if cur.rowcount != 1:
                return False
            await self._write_tier(account_id, tier, expires_at, reason="code", changed_by=changed_by, now=now)
            return True

    @_serialized
    async def add_link_code(self, code_hash: str, account_id: int, platform: str, expires_at: float, now: float) -> None:
        """One live link code per account: a new /link replaces the last one."""
        await self._db.execute("DELETE FROM link_codes WHERE account_id = ? OR expires_at <= ?", (account_id, now))
        await self._db.execute(
            "INSERT INTO link_codes (hash, account_id, platform, expires_at) VALUES (?, ?, ?, ?)",
            (code_hash, account_id, platform, expires_at),
        )
        await self._db.commit()

    async def link_code(self, code_hash: str) -> dict[str, Any] | None:
        async with self._db.execute("SELECT * FROM link_codes WHERE hash = ?", (code_hash,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def identities(self, account_id: int) -> list[tuple[str, str]]:
        async with self._db.execute(
            "SELECT platform, platform_user_id FROM identities WHERE account_id = ? ORDER BY platform", (account_id,)
        ) as cur:
            return [(row["platform"], row["platform_user_id"]) for row in await cur.fetchall()]

    @_serialized
    async def merge_accounts(
        self, keep: int, drop: int, code_hash: str, *, tier: str, expires_at: float | None, day: str,
        changed_by: str, now: float,
    ) -> None:
        """Move every identity of `drop` to `keep`, carry today's usage over (the larger count,
        never the sum), spend the link code and set the merged tier (audited when it changes)."""
        async with self._transaction():
            await self._db.execute("UPDATE identities SET account_id = ? WHERE account_id = ?", (keep, drop))
            await self._db.execute(
                "INSERT INTO daily_usage (account_id, day, used) "
                "SELECT ?, day, used FROM daily_usage WHERE account_id = ? AND day = ? "
                "ON CONFLICT (account_id, day) DO UPDATE SET used = MAX(used, excluded.used)",
                (keep, drop, day),
            )
            await self._db.execute("DELETE FROM link_codes WHERE hash = ? OR account_id = ?", (code_hash, drop))
            before = await self.account(keep)
            if (before.tier, before.tier_expires_at) != (tier, expires_at):
                await self._write_tier(keep, tier, expires_at, reason="link", changed_by=changed_by, now=now)

    async def payment(self, charge_id: str) -> dict[str, Any] | None:
        async with self._db.execute("SELECT * FROM payments WHERE charge_id = ?", (charge_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    @_serialized
    async def record_payment(self, payment: dict[str, Any], *, reason: str, changed_by: str, now: float) -> bool:
        """Record a payment and set the tier it bought, once per charge id: False (and nothing
        written) for a charge id already recorded."""
        async with self._transaction():
            columns = ", ".join(payment)
            cur = await self._db.execute(
                f"INSERT OR IGNORE INTO payments ({columns}) VALUES ({', '.join('?' * len(payment))})",
                list(payment.values()),
            )
            if cur.rowcount != 1:
                return False
            await self._write_tier(
                payment["account_id"], payment["tier"], payment["expires_at"], reason=reason, changed_by=changed_by, now=now
            )
            return True

    @_serialized
    async def set_payment_expiry(self, charge_id: str, expires_at: float | None) -> None:
        await self._db.execute("UPDATE payments SET expires_at = ? WHERE charge_id = ?", (expires_at, charge_id))
        await self._db.commit()

    @_serialized
    async def refund_payment(
        self, charge_id: str, tier: str, expires_at: float | None, *, changed_by: str, now: float
    ) -> bool:
        """Mark a payment refunded and set the reverted tier; False when it was refunded already."""
        async with self._transaction():
            cur = await self._db.execute(
                "UPDATE payments SET status = 'refunded', refunded_at = ? WHERE charge_id = ? AND status = 'paid' "
                "RETURNING account_id",
                (now, charge_id),
            )
            row = await cur.fetchone()
            await cur.close()
            if row is None:
                return False
            await self._write_tier(row["account_id"], tier, expires_at, reason="refund", changed_by=changed_by, now=now)
            return True

    # Bans ------------------------------------------------------------------------------------

    @_serialized
    async def set_ban(self, account_id: int, banned: bool, *, reason: str, by: str, now: float) -> None:
        """Ban or unban, and record it in the audit of admin actions."""
        if banned:
            await self._db.execute(
                "INSERT INTO bans (account_id, reason, banned_by, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (account_id) DO UPDATE SET reason = excluded.reason, banned_by = excluded.banned_by, "
                "at = excluded.at",
                (account_id, reason, by, now),
            )
        else:
            await self._db.execute("DELETE FROM bans WHERE account_id = ?", (account_id,))
        await self._db.execute(
            "INSERT INTO admin_actions (action, account_id, detail, done_by, at) VALUES (?, ?, ?, ?, ?)",
            ("ban" if banned else "unban", account_id, reason, by, now),
        )
        await self._db.commit()

    async def is_banned(self, account_id: int) -> bool:
        async with self._db.execute("SELECT 1 FROM bans WHERE account_id = ?", (account_id,)) as cur:
            return await cur.fetchone() is not None

    async def admin_actions(self, account_id: int) -> list[dict[str, Any]]:
        async with self._db.execute(
            "SELECT action, detail, done_by, at FROM admin_actions WHERE account_id = ? ORDER BY id", (account_id,)
        ) as cur:
            return [dict(row) for row in await cur.fetchall()]

    # Retention -------------------------------------------------------------------------------

    @_serialized
    async def purge_finished(self, before: float) -> list[str]:
        """Forget jobs that ended before `before`; returns their ids so their pictures can be
        deleted. Daily usage rows stay: they hold no prompt or picture."""
        async with self._db.execute(
            "SELECT id FROM jobs WHERE status IN ('done', 'failed', 'cancelled') AND finished_at < ?", (before,)
        ) as cur:
            ids = [row["id"] for row in await cur.fetchall()]
        await self._db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in ids])
        await self._db.commit()
        return ids

    async def delivered_before(self, before: float) -> list[str]:
        """Jobs with a result delivered before `before` (their pictures may be compacted)."""
        async with self._db.execute(
            "SELECT id FROM jobs WHERE status = 'done' AND delivered_at < ?", (before,)
        ) as cur:
            return [row["id"] for row in await cur.fetchall()]

    async def job_log(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest jobs with who asked, where, what and how it ended, for complaints."""
        async with self._db.execute(
            "SELECT id, platform, platform_user_id, reply_json, prompt, status, error, created_at, finished_at "
            "FROM jobs ORDER BY created_at DESC LIMIT ?",
            (limit,),
        ) as cur:
            return [dict(row) for row in await cur.fetchall()]

    # Quota -----------------------------------------------------------------------------------

    async def used_today(self, account_id: int, day: str) -> int:
        async with self._db.execute(
            "SELECT used FROM daily_usage WHERE account_id = ? AND day = ?", (account_id, day)
        ) as cur:
            row = await cur.fetchone()
        return row["used"] if row else 0

    # Jobs ------------------------------------------------------------------------------------

    @_serialized
    async def add_job(self, job: JobRecord, *, quota_limit: int) -> bool:
        """Record a new job and spend one unit of its member's daily quota, in one transaction.

        False (and nothing written) when the quota is used up.
        """
        async with self._transaction():
            async with self._db.execute(
                "SELECT used FROM daily_usage WHERE account_id = ? AND day = ?", (job.account_id, job.quota_day)
            ) as cur:
                row = await cur.fetchone()
            if row is not None and row["used"] >= quota_limit:
                return False
            await self._db.execute(
                "INSERT INTO daily_usage (account_id, day, used) VALUES (?, ?, 1) "
                "ON CONFLICT (account_id, day) DO UPDATE SET used = used + 1",
                (job.account_id, job.quota_day),
            )
            values = self._job_values(job)
            await self._db.execute(
                f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' * len(_JOB_COLUMNS))})",
                values,
            )
            return True

    @staticmethod
    def _job_values(job: JobRecord) -> list[Any]:
        values = []
        for column in _JOB_COLUMNS:
            if column == "reply_json":
                values.append(json.dumps(job.reply, separators=(",", ":")))
            else:
                values.append(getattr(job, column))
        return values

    async def job(self, job_id: str) -> JobRecord | None:
        async with self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return _job_from_row(row) if row else None

    async def jobs(self, job_ids: Iterable[str]) -> list[JobRecord]:
        ids = list(job_ids)
        if not ids:
            return []
        async with self._db.execute(
            f"SELECT * FROM jobs WHERE id IN ({', '.join('?' * len(ids))})", ids
        ) as cur:
            rows = {row["id"]: _job_from_row(row) for row in await cur.fetchall()}
        return [rows[i] for i in ids if i in rows]

    async def active_jobs(self) -> list[JobRecord]:
        """Jobs queued or running when the process stopped, in their original order."""
        async with self._db.execute(
            "SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY rank, seq"
        ) as cur:
            return [_job_from_row(row) for row in await cur.fetchall()]

    async def undelivered_jobs(self) -> list[JobRecord]:
        """Finished jobs whose member has not been told yet (results and failure notices)."""
        async with self._db.execute(
            "SELECT * FROM jobs WHERE delivered_at IS NULL AND status IN ('done', 'failed') ORDER BY finished_at"
        ) as cur:
            return [_job_from_row(row) for row in await cur.fetchall()]

    async def max_seq(self) -> int:
        async with self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs") as cur:
            (seq,) = await cur.fetchone()
        return seq

    @_serialized
    async def mark_running(self, job_ids: list[str], now: float) -> None:
        await self._db.executemany(
            "UPDATE jobs SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued'",
            [(now, i) for i in job_ids],
        )
        await self._db.commit()

    @_serialized
    async def requeue(self, job_ids: list[str]) -> None:
        await self._db.executemany(
            "UPDATE jobs SET status = 'queued', started_at = NULL WHERE id = ? AND status = 'running'",
            [(i,) for i in job_ids],
        )
        await self._db.commit()

    @_serialized
    async def mark_done(
        self, job_id: str, *, seed: int, steps: int, seconds: float, deliver_after: float, now: float
    ) -> bool:
        """False if the job was cancelled meanwhile (its result is then dropped)."""
        cur = await self._db.execute(
            "UPDATE jobs SET status = 'done', seed = ?, steps = ?, seconds = ?, deliver_after = ?, finished_at = ? "
            "WHERE id = ? AND status = 'running'",
            (seed, steps, seconds, deliver_after, now, job_id),
        )
        await self._db.commit()
        return cur.rowcount == 1

    async def mark_failed(self, job_id: str, error: str, now: float) -> bool:
        """Fail an active job and give its quota unit back; False if it had already ended."""
        return await self._end_with_refund(job_id, "failed", error, now)

    async def mark_cancelled(self, job_id: str, now: float) -> bool:
        """Cancel an active job and give its quota unit back; nothing is delivered for it."""
        return await self._end_with_refund(job_id, "cancelled", None, now)

    @_serialized
    async def _end_with_refund(self, job_id: str, status: str, error: str | None, now: float) -> bool:
        async with self._transaction():
            cur = await self._db.execute(
                "UPDATE jobs SET status = ?, error = ?, finished_at = ?, "
                "delivered_at = CASE WHEN ? = 'cancelled' THEN ? ELSE NULL END "
                "WHERE id = ? AND status IN ('queued', 'running') RETURNING account_id, quota_day",
                (status, error, now, status, now, job_id),
            )
            row = await cur.fetchone()
            await cur.close()
            if row is not None:
                await self._db.execute(
                    "UPDATE daily_usage SET used = MAX(used - 1, 0) WHERE account_id = ? AND day = ?",
                    (row["account_id"], row["quota_day"]),
                )
            return row is not None

    @_serialized
    async def mark_delivered(self, job_id: str, now: float) -> None:
        await self._db.execute(
            "UPDATE jobs SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL", (now, job_id)
        )
        await self._db.commit()

    @_serialized
    async def set_ranks(self, ranks: dict[str, float], tier: str) -> None:
        await self._db.executemany(
            "UPDATE jobs SET rank = ?, tier = ? WHERE id = ? AND status = 'queued'",
            [(rank, tier, job_id) for job_id, rank in ranks.items()],
        )
        await self._db.commit()

    @_serialized
    async def update_reply(self, job_id: str, reply: dict[str, Any]) -> None:
        """Front ends add to a job's reply data (e.g. the id of the status message they sent)."""
        await self._db.execute(
            "UPDATE jobs SET reply_json = ? WHERE id = ?", (json.dumps(reply, separators=(",", ":")), job_id)
        )
        await self._db.commit()

    async def count_by_status(self) -> dict[str, int]:
        async with self._db.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status") as cur:
            return {row["status"]: row["n"] for row in await cur.fetchall()}

    async def recent_seconds(self, limit: int) -> list[float]:
        async with self._db.execute(
            "SELECT seconds FROM jobs WHERE status = 'done' AND seconds IS NOT NULL "
            "ORDER BY finished_at DESC LIMIT ?",
            (limit,),
        ) as cur:
            return [row["seconds"] for row in await cur.fetchall()]
