"""The database: members, jobs (which are the queue), pictures, usage, upgrades and audits.

Every state change of a job is written here before anyone is told about it, so a restart (or a
crash, of any process) loses nothing and delivers what was not delivered, once. The queue lives
in the jobs table: each waiting job's rank and sequence number order it (see bot/queue.py), so
any process can read a position, cancel a job, or claim a batch. The same SQL runs on SQLite
(one process) and PostgreSQL (many); bot/store/db.py and its two implementations translate
what differs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot.clock import Clock
from bot.store.db import Database, Row, StoreError, is_postgres, sqlite_path
from bot.store.postgres import PostgresDatabase
from bot.store.schema import MIGRATION_LOCK, MIGRATIONS, import_picture_files, migrate
from bot.store.schema import schema_version as read_schema_version
from bot.store.sqlite import SqliteDatabase

log = logging.getLogger("bot.store")

__all__ = ["Account", "JobRecord", "Store", "StoreError", "MIGRATIONS", "MIGRATION_LOCK"]

TIERS_BY_DEFAULT = "free"
CLAIM_LOCK = 0x7265_7375  # advisory lock key: one process at a time reads and takes a claim marker


ACTIVE = ("queued", "running")


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
    worker_id: str | None = None  # the worker process that runs it (while running)
    # The incoming request that asked for it (an update, interaction or form nonce), unique per
    # platform: the same request delivered twice, or retried, finds this job instead of a new one.
    request_key: str | None = None


_JOB_COLUMNS = [
    "id", "account_id", "platform", "platform_user_id", "reply_json", "prompt", "negative_prompt",
    "strength", "seed", "steps", "output_format", "width", "height", "batch_key", "tier", "rank",
    "seq", "status", "created_at", "quota_day", "started_at", "finished_at", "deliver_after",
    "delivered_at", "seconds", "error", "parent_job_id", "worker_id", "request_key",
]  # fmt: skip
_SELECT_JOB = f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs"


def _job_from_row(row: Row) -> JobRecord:
    values = {column: row[column] for column in _JOB_COLUMNS}
    values["reply"] = json.loads(values.pop("reply_json"))
    return JobRecord(**values)


def _in(ids: list[str]) -> str:
    return f"({', '.join('?' * len(ids))})"


class Store:
    """The bot's database, SQLite or PostgreSQL, behind one set of methods."""

    def __init__(self, db: Database, data_dir: Path) -> None:
        self.db = db
        self.data_dir = data_dir

    @property
    def shared(self) -> bool:
        """True on PostgreSQL, where other processes use the same database."""
        return isinstance(self.db, PostgresDatabase)

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

    # Pictures --------------------------------------------------------------------------------

    async def picture(self, job_id: str, kind: str) -> bytes | None:
        """A job's input ("input") or result ("result") picture: lossless bytes Pillow reads."""
        data = await self.db.fetch_value("SELECT data FROM pictures WHERE job_id = ? AND kind = ?", job_id, kind)
        return bytes(data) if data is not None else None

    async def pictures(self, job_ids: Iterable[str], kind: str) -> dict[str, bytes]:
        """The `kind` pictures of these jobs, by job id (a job without one is left out)."""
        ids = list(job_ids)
        if not ids:
            return {}
        rows = await self.db.fetch_all(
            f"SELECT job_id, data FROM pictures WHERE kind = ? AND job_id IN {_in(ids)}", kind, *ids
        )
        return {row["job_id"]: bytes(row["data"]) for row in rows}

    async def job_pictures(self, job_id: str) -> dict[str, bytes]:
        """A job's pictures by kind ("input", "result"), in one read."""
        rows = await self.db.fetch_all("SELECT kind, data FROM pictures WHERE job_id = ?", job_id)
        return {row["kind"]: bytes(row["data"]) for row in rows}

    async def has_picture(self, job_id: str, kind: str) -> bool:
        return (
            await self.db.fetch_value("SELECT 1 FROM pictures WHERE job_id = ? AND kind = ?", job_id, kind) is not None
        )

    async def replace_picture(self, job_id: str, kind: str, data: bytes) -> None:
        await self.db.execute("UPDATE pictures SET data = ? WHERE job_id = ? AND kind = ?", data, job_id, kind)

    # Accounts --------------------------------------------------------------------------------

    async def account_for(self, platform: str, user_id: str, now: float, display_name: str = "") -> Account:
        """The account behind a platform identity, created on first sight."""
        found = await self._identity_account(platform, user_id)
        if found is not None:
            return found
        async with self.db.transaction():
            found = await self._identity_account(platform, user_id)  # another process was quicker
            if found is not None:
                return found
            account_id = await self.db.fetch_value(
                "INSERT INTO accounts (tier, created_at) VALUES ('free', ?) RETURNING id", now
            )
            inserted = await self.db.execute(
                "INSERT INTO identities (platform, platform_user_id, account_id, display_name) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                platform, user_id, account_id, display_name,
            )  # fmt: skip
            if inserted != 1:
                raise StoreError(f"two processes created an account for {platform}:{user_id} at once; try again.")
        return Account(account_id, "free", None)

    async def _identity_account(self, platform: str, user_id: str) -> Account | None:
        row = await self.db.fetch_one(
            "SELECT a.id, a.tier, a.tier_expires_at FROM identities i JOIN accounts a ON a.id = i.account_id "
            "WHERE i.platform = ? AND i.platform_user_id = ?",
            platform, user_id,
        )  # fmt: skip
        return Account(row["id"], row["tier"], row["tier_expires_at"]) if row is not None else None

    async def account(self, account_id: int) -> Account:
        row = await self.db.fetch_row("SELECT id, tier, tier_expires_at FROM accounts WHERE id = ?", account_id)
        return Account(row["id"], row["tier"], row["tier_expires_at"])

    async def set_tier(
        self, account_id: int, tier: str, expires_at: float | None, *, reason: str, changed_by: str, now: float
    ) -> Account:
        async with self.db.transaction():
            await self._write_tier(account_id, tier, expires_at, reason=reason, changed_by=changed_by, now=now)
        return Account(account_id, tier, expires_at)

    async def tier_changes(self, account_id: int) -> list[dict[str, Any]]:
        rows = await self.db.fetch_all(
            "SELECT from_tier, to_tier, expires_at, reason, changed_by, at FROM tier_changes "
            "WHERE account_id = ? ORDER BY id",
            account_id,
        )
        return [dict(row) for row in rows]

    async def _write_tier(
        self, account_id: int, tier: str, expires_at: float | None, *, reason: str, changed_by: str, now: float
    ) -> None:
        """Inside a caller's transaction: change the tier and audit it."""
        before = await self.account(account_id)
        await self.db.execute(
            "UPDATE accounts SET tier = ?, tier_expires_at = ? WHERE id = ?", tier, expires_at, account_id
        )
        await self.db.execute(
            "INSERT INTO tier_changes (account_id, from_tier, to_tier, expires_at, reason, changed_by, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            account_id, before.effective_tier(now), tier, expires_at, reason, changed_by, now,
        )  # fmt: skip

    # Upgrades: codes, links, payments --------------------------------------------------------

    async def add_codes(self, hashes: list[str], tier: str, days: int, valid_until: float, now: float) -> None:
        async with self.db.transaction():
            await self.db.execute_many(
                "INSERT INTO codes (hash, tier, days, created_at, valid_until) VALUES (?, ?, ?, ?, ?)",
                [(h, tier, days, now, valid_until) for h in hashes],
            )

    async def code(self, code_hash: str) -> dict[str, Any] | None:
        row = await self.db.fetch_one("SELECT * FROM codes WHERE hash = ?", code_hash)
        return dict(row) if row else None

    async def use_code(
        self, code_hash: str, account_id: int, tier: str, expires_at: float | None, *, changed_by: str, now: float
    ) -> bool:
        """Spend a code and set the tier it gives, in one transaction; False (nothing written)
        when the code was used or expired meanwhile."""
        async with self.db.transaction():
            used = await self.db.execute(
                "UPDATE codes SET used_at = ?, used_by = ? WHERE hash = ? AND used_at IS NULL AND valid_until > ?",
                now, account_id, code_hash, now,
            )  # fmt: skip
            if used != 1:
                return False
            await self._write_tier(account_id, tier, expires_at, reason="code", changed_by=changed_by, now=now)
            return True

    async def add_link_code(
        self, code_hash: str, account_id: int, platform: str, expires_at: float, now: float
    ) -> None:
        """One live link code per account: a new /link replaces the last one."""
        async with self.db.transaction():
            await self.db.execute("DELETE FROM link_codes WHERE account_id = ? OR expires_at <= ?", account_id, now)
            await self.db.execute(
                "INSERT INTO link_codes (hash, account_id, platform, expires_at) VALUES (?, ?, ?, ?)",
                code_hash, account_id, platform, expires_at,
            )  # fmt: skip

    async def count_guess(self, member_key: str, now: float, window_s: float) -> tuple[int, float]:
        """One more code attempt by this member, counted before the code is looked up: returns
        (attempts in the current window, this one included; when the window started). One
        statement, so concurrent attempts (other tasks, other processes) each get their own count."""
        async with self.db.transaction():
            row = await self.db.fetch_one(
                "INSERT INTO guesses (member_key, window_start, tries) VALUES (?, ?, 1) "
                "ON CONFLICT (member_key) DO UPDATE SET "
                "tries = CASE WHEN guesses.window_start <= ? THEN 1 ELSE guesses.tries + 1 END, "
                "window_start = CASE WHEN guesses.window_start <= ? THEN ? ELSE guesses.window_start END "
                "RETURNING tries, window_start",
                member_key, now, now - window_s, now - window_s, now,
            )  # fmt: skip
        assert row is not None  # an upsert with RETURNING always returns its row
        return int(row["tries"]), float(row["window_start"])

    async def forgive_guess(self, member_key: str) -> None:
        """The attempt counted by `count_guess` was a right code: it is no wrong guess."""
        await self.db.execute("UPDATE guesses SET tries = tries - 1 WHERE member_key = ? AND tries > 0", member_key)

    async def link_code(self, code_hash: str) -> dict[str, Any] | None:
        row = await self.db.fetch_one("SELECT * FROM link_codes WHERE hash = ?", code_hash)
        return dict(row) if row else None

    async def identities(self, account_id: int) -> list[tuple[str, str]]:
        rows = await self.db.fetch_all(
            "SELECT platform, platform_user_id FROM identities WHERE account_id = ? ORDER BY platform", account_id
        )
        return [(row["platform"], row["platform_user_id"]) for row in rows]

    async def merge_accounts(
        self,
        keep: int,
        drop: int,
        code_hash: str,
        *,
        tier: str,
        expires_at: float | None,
        day: str,
        changed_by: str,
        now: float,
    ) -> None:
        """Move every identity of `drop` to `keep`, carry today's usage over (the larger count,
        never the sum), spend the link code and set the merged tier (audited when it changes)."""
        async with self.db.transaction():
            await self.db.execute("UPDATE identities SET account_id = ? WHERE account_id = ?", keep, drop)
            await self.db.execute(
                "INSERT INTO daily_usage (account_id, day, used) "
                "SELECT ?, day, used FROM daily_usage WHERE account_id = ? AND day = ? "
                "ON CONFLICT (account_id, day) DO UPDATE SET used = "
                "CASE WHEN excluded.used > daily_usage.used THEN excluded.used ELSE daily_usage.used END",
                keep, drop, day,
            )  # fmt: skip
            await self.db.execute("DELETE FROM link_codes WHERE hash = ? OR account_id = ?", code_hash, drop)
            before = await self.account(keep)
            if (before.tier, before.tier_expires_at) != (tier, expires_at):
                await self._write_tier(keep, tier, expires_at, reason="link", changed_by=changed_by, now=now)

    async def payment(self, charge_id: str) -> dict[str, Any] | None:
        row = await self.db.fetch_one("SELECT * FROM payments WHERE charge_id = ?", charge_id)
        return dict(row) if row else None

    async def record_payment(self, payment: dict[str, Any], *, reason: str, changed_by: str, now: float) -> bool:
        """Record a payment and set the tier it bought, once per charge id: False (and nothing
        written) for a charge id already recorded."""
        async with self.db.transaction():
            columns = ", ".join(payment)
            inserted = await self.db.execute(
                f"INSERT INTO payments ({columns}) VALUES ({', '.join('?' * len(payment))}) ON CONFLICT DO NOTHING",
                *payment.values(),
            )
            if inserted != 1:
                return False
            await self._write_tier(
                payment["account_id"],
                payment["tier"],
                payment["expires_at"],
                reason=reason,
                changed_by=changed_by,
                now=now,
            )
            return True

    async def paid_before(self, account_id: int, plan: str, amount: int, currency: str) -> bool:
        """Whether this account paid `amount` `currency` for `plan` before (a renewal's price)."""
        return await self.db.fetch_value(
            "SELECT 1 FROM payments WHERE account_id = ? AND plan = ? AND amount = ? AND currency = ? "
            "AND status = 'paid' LIMIT 1",
            account_id, plan, amount, currency,
        ) is not None  # fmt: skip

    async def record_payment_problem(
        self, charge_id: str, account_id: int, problem: str, detail: dict[str, Any], now: float
    ) -> bool:
        """Write down a payment that was taken but granted nothing (admin_actions, action
        "payment_held", done_by the charge id), once per charge id: False when already written."""
        async with self.db.transaction():
            await self.db.fetch_one(f"SELECT id FROM accounts WHERE id = ? {self.db.lock_clause}", account_id)
            known = await self.db.fetch_value(
                "SELECT 1 FROM admin_actions WHERE action = 'payment_held' AND done_by = ?", charge_id
            )
            if known is not None:
                return False
            await self.db.execute(
                "INSERT INTO admin_actions (action, account_id, detail, done_by, at) VALUES ('payment_held', ?, ?, ?, ?)",
                account_id, json.dumps({"problem": problem, **detail}, sort_keys=True), charge_id, now,
            )  # fmt: skip
            return True

    async def held_payments(self) -> list[dict[str, Any]]:
        """Payments taken that granted nothing, oldest first (for an admin to sort out)."""
        rows = await self.db.fetch_all(
            "SELECT account_id, detail, done_by AS charge_id, at FROM admin_actions WHERE action = 'payment_held' "
            "ORDER BY id"
        )
        return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]

    async def set_payment_expiry(self, charge_id: str, expires_at: float | None) -> None:
        await self.db.execute("UPDATE payments SET expires_at = ? WHERE charge_id = ?", expires_at, charge_id)

    async def refund_payment(
        self,
        charge_id: str,
        tier: str,
        expires_at: float | None,
        *,
        changed_by: str,
        now: float,
        reason: str = "refund",
    ) -> bool:
        """Mark a payment refunded (no longer in force) and set the reverted tier; False when it
        was refunded already. `reason` goes to the tier change (an ended subscription is no refund)."""
        async with self.db.transaction():
            row = await self.db.fetch_one(
                "UPDATE payments SET status = 'refunded', refunded_at = ? WHERE charge_id = ? AND status = 'paid' "
                "RETURNING account_id",
                now, charge_id,
            )  # fmt: skip
            if row is None:
                return False
            await self._write_tier(row["account_id"], tier, expires_at, reason=reason, changed_by=changed_by, now=now)
            return True

    async def add_marker(self, action: str, detail: dict[str, Any], *, done_by: str, now: float) -> None:
        """Write down something the bot did (admin_actions, no account), e.g. what it last synced."""
        await self.db.execute(
            "INSERT INTO admin_actions (action, account_id, detail, done_by, at) VALUES (?, NULL, ?, ?, ?)",
            action, json.dumps(detail, sort_keys=True), done_by, now,
        )  # fmt: skip

    async def last_marker(self, action: str) -> dict[str, Any]:
        detail = await self.db.fetch_value(
            "SELECT detail FROM admin_actions WHERE action = ? AND account_id IS NULL ORDER BY id DESC LIMIT 1", action
        )
        return json.loads(detail) if detail else {}

    async def claim_marker(self, action: str, holder: str, now: float, until: float) -> bool:
        """Take the claim `action` (a one-process task, e.g. syncing the Discord commands) until
        `until`; False while another holder's claim runs. A compare-and-set: the read and the
        write happen in one transaction that one process at a time gets into (SQLite's BEGIN
        IMMEDIATE; an advisory lock on PostgreSQL, whose reads would not wait otherwise)."""
        async with self.db.transaction():
            if isinstance(self.db, PostgresDatabase):
                await self.db.advisory_lock(CLAIM_LOCK)
            current = await self.last_marker(action)
            if current.get("holder") not in (None, holder) and float(current.get("until") or 0) > now:
                return False
            await self.add_marker(action, {"holder": holder, "until": until}, done_by=holder, now=now)
            return True

    async def release_marker(self, action: str, holder: str, now: float) -> None:
        """End `holder`'s claim at once, so the next process need not wait it out."""
        async with self.db.transaction():
            if isinstance(self.db, PostgresDatabase):
                await self.db.advisory_lock(CLAIM_LOCK)
            if (await self.last_marker(action)).get("holder") == holder:
                await self.add_marker(action, {"holder": None, "until": 0}, done_by=holder, now=now)

    async def paid_charges(self, prefix: str) -> list[tuple[str, str]]:
        """(charge id without `prefix`, platform user id) of the payments still in force whose
        charge id starts with `prefix`."""
        rows = await self.db.fetch_all(
            "SELECT charge_id, platform_user_id FROM payments WHERE status = 'paid' AND substr(charge_id, 1, ?) = ? "
            "ORDER BY charge_id",
            len(prefix), prefix,
        )  # fmt: skip
        return [(row["charge_id"][len(prefix) :], row["platform_user_id"]) for row in rows]

    # Listeners: which front end holds a platform's update stream, and what came in ----------

    async def take_listener(self, name: str, holder: str, now: float, until: float) -> bool:
        """Take or renew the lease on listener `name` (a Telegram token's getUpdates, a Discord
        shard's gateway session) until `until`; False while another holder's lease runs."""
        return (
            await self.db.execute(
                "INSERT INTO listener_leases (name, holder, until, taken_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until, "
                "taken_at = CASE WHEN listener_leases.holder = excluded.holder THEN listener_leases.taken_at "
                "ELSE excluded.taken_at END "
                "WHERE listener_leases.holder = excluded.holder OR listener_leases.until < ?",
                name,
                holder,
                until,
                now,
                now,
            )  # fmt: skip
            == 1
        )

    async def release_listener(self, name: str, holder: str) -> None:
        """Give the lease up at once (a clean stop), so another front end need not wait it out."""
        await self.db.execute("DELETE FROM listener_leases WHERE name = ? AND holder = ?", name, holder)

    async def listener_holder(self, name: str, now: float) -> str | None:
        """Who holds listener `name` now (None: nobody, or the lease ran out)."""
        return await self.db.fetch_value("SELECT holder FROM listener_leases WHERE name = ? AND until >= ?", name, now)

    async def listener_holders(self, prefix: str, now: float) -> list[tuple[str, str]]:
        """(name, holder) of the leases running now whose name starts with `prefix`."""
        rows = await self.db.fetch_all(
            "SELECT name, holder FROM listener_leases WHERE substr(name, 1, ?) = ? AND until >= ? ORDER BY name",
            len(prefix), prefix, now,
        )  # fmt: skip
        return [(row["name"], row["holder"]) for row in rows]

    async def receive(self, platform: str, request_key: str, body: str, received_by: str, now: float) -> bool:
        """Write an incoming update down before its receipt is confirmed to the platform; False
        when it was written before (fetched again after a handover, or delivered twice)."""
        return (
            await self.db.execute(
                "INSERT INTO incoming (platform, request_key, body, received_by, received_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (platform, request_key) DO NOTHING",
                platform,
                request_key,
                body,
                received_by,
                now,
            )  # fmt: skip
            == 1
        )

    async def mark_handled(self, platform: str, request_key: str, now: float) -> None:
        await self.db.execute(
            "UPDATE incoming SET handled_at = ? WHERE platform = ? AND request_key = ? AND handled_at IS NULL",
            now, platform, request_key,
        )  # fmt: skip

    async def unhandled(self, platform: str, received_by_not_in: Collection[str] = ()) -> list[tuple[str, str]]:
        """(request key, body) of the updates received but never handled (their front end died
        with them in hand), oldest first; leaving out those received by `received_by_not_in`."""
        rows = await self.db.fetch_all(
            "SELECT request_key, body, received_by FROM incoming WHERE platform = ? AND handled_at IS NULL "
            "ORDER BY received_at, request_key",
            platform,
        )
        return [(row["request_key"], row["body"]) for row in rows if row["received_by"] not in received_by_not_in]

    async def forget_incoming(self, before: float) -> int:
        """Drop the record of updates handled before `before`: a platform redelivers an update
        only within hours (Telegram keeps unconfirmed ones 24 h), so older keys are never seen again."""
        return await self.db.execute("DELETE FROM incoming WHERE handled_at IS NOT NULL AND handled_at < ?", before)

    # Bans ------------------------------------------------------------------------------------

    async def set_ban(self, account_id: int, banned: bool, *, reason: str, by: str, now: float) -> None:
        """Ban or unban, and record it in the audit of admin actions."""
        async with self.db.transaction():
            if banned:
                await self.db.execute(
                    "INSERT INTO bans (account_id, reason, banned_by, at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (account_id) DO UPDATE SET reason = excluded.reason, banned_by = excluded.banned_by, "
                    "at = excluded.at",
                    account_id, reason, by, now,
                )  # fmt: skip
            else:
                await self.db.execute("DELETE FROM bans WHERE account_id = ?", account_id)
            await self.db.execute(
                "INSERT INTO admin_actions (action, account_id, detail, done_by, at) VALUES (?, ?, ?, ?, ?)",
                "ban" if banned else "unban", account_id, reason, by, now,
            )  # fmt: skip

    async def is_banned(self, account_id: int) -> bool:
        return await self.db.fetch_value("SELECT 1 FROM bans WHERE account_id = ?", account_id) is not None

    async def admin_actions(self, account_id: int) -> list[dict[str, Any]]:
        rows = await self.db.fetch_all(
            "SELECT action, detail, done_by, at FROM admin_actions WHERE account_id = ? ORDER BY id", account_id
        )
        return [dict(row) for row in rows]

    # Retention -------------------------------------------------------------------------------

    async def purge_finished(self, before: float) -> list[str]:
        """Forget jobs that ended before `before`, with their pictures; returns their ids.
        Daily usage rows stay: they hold no prompt or picture."""
        async with self.db.transaction():
            rows = await self.db.fetch_all(
                "DELETE FROM jobs WHERE status IN ('done', 'failed', 'cancelled') AND finished_at < ? RETURNING id",
                before,
            )
            ids = [row["id"] for row in rows]
            for chunk in _chunks(ids, 500):
                await self.db.execute(f"DELETE FROM pictures WHERE job_id IN {_in(chunk)}", *chunk)
        if ids:
            await self.db.reclaim()  # the purged prompts and pictures leave no copy behind
        return ids

    async def delivered_before(self, before: float) -> list[str]:
        """Jobs with a result delivered before `before` (their pictures may be compacted)."""
        rows = await self.db.fetch_all("SELECT id FROM jobs WHERE status = 'done' AND delivered_at < ?", before)
        return [row["id"] for row in rows]

    async def job_log(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest jobs with who asked, where, what and how it ended, for complaints."""
        rows = await self.db.fetch_all(
            "SELECT id, platform, platform_user_id, reply_json, prompt, status, error, created_at, finished_at "
            "FROM jobs ORDER BY created_at DESC LIMIT ?",
            limit,
        )
        return [dict(row) for row in rows]

    # Quota -----------------------------------------------------------------------------------

    async def used_today(self, account_id: int, day: str) -> int:
        used = await self.db.fetch_value(
            "SELECT used FROM daily_usage WHERE account_id = ? AND day = ?", account_id, day
        )
        return used or 0

    # Jobs: adding ----------------------------------------------------------------------------

    async def add_job(
        self,
        job: JobRecord,
        *,
        quota_limit: int,
        max_active: int,
        rank_for: Callable[[float | None], float],
        picture: bytes | None = None,
        picture_from: str | None = None,
    ) -> JobRecord | str:
        """Queue a new job with its input picture, spending one unit of its member's daily
        quota, in one transaction. The rank comes from `rank_for(the member's last active
        rank)`, read under a lock on the member's account, so two processes queueing for one
        member at once still space the jobs apart.

        Returns the stored job, or "quota" / "queue_limit" (and nothing written). A job with
        a request_key already stored for its platform returns that job, and nothing is written
        or charged: the same request retried (its first commit's outcome unknown) queues once.
        """
        async with self.db.transaction():
            await self.db.fetch_one(f"SELECT id FROM accounts WHERE id = ? {self.db.lock_clause}", job.account_id)
            if job.request_key is not None:
                # Under the account's lock: a second copy of the request waits for the first.
                existing = await self.job_for_request(job.platform, job.request_key)
                if existing is not None:
                    return existing
            active = await self.db.fetch_row(
                "SELECT COUNT(*) AS n, MAX(rank) AS last FROM jobs WHERE account_id = ? AND status IN ('queued', 'running')",
                job.account_id,
            )
            if active["n"] >= max_active:
                return "queue_limit"
            used = await self.used_today(job.account_id, job.quota_day)
            if used >= quota_limit:
                return "quota"
            await self.db.execute(
                "INSERT INTO daily_usage (account_id, day, used) VALUES (?, ?, 1) "
                "ON CONFLICT (account_id, day) DO UPDATE SET used = daily_usage.used + 1",
                job.account_id, job.quota_day,
            )  # fmt: skip
            # One counter row: arrival order across processes, without scanning the jobs.
            seq = await self.db.fetch_value("UPDATE job_seq SET n = n + 1 RETURNING n")
            stored = replace(job, rank=rank_for(active["last"]), seq=seq)
            await self.db.execute(
                f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' * len(_JOB_COLUMNS))})",
                *self._job_values(stored),
            )
            if picture is not None:
                await self.db.execute(
                    "INSERT INTO pictures (job_id, kind, data) VALUES (?, 'input', ?)", job.id, picture
                )
            elif picture_from is not None:
                copied = await self.db.execute(
                    "INSERT INTO pictures (job_id, kind, data) SELECT ?, kind, data FROM pictures "
                    "WHERE job_id = ? AND kind = 'input'",
                    job.id, picture_from,
                )  # fmt: skip
                if copied != 1:
                    raise StoreError(f"the picture of job {picture_from} is gone")
            return stored

    @staticmethod
    def _job_values(job: JobRecord) -> list[Any]:
        values = []
        for column in _JOB_COLUMNS:
            if column == "reply_json":
                values.append(json.dumps(job.reply, separators=(",", ":")))
            else:
                values.append(getattr(job, column))
        return values

    # Jobs: reading ---------------------------------------------------------------------------

    async def job(self, job_id: str) -> JobRecord | None:
        row = await self.db.fetch_one(f"{_SELECT_JOB} WHERE id = ?", job_id)
        return _job_from_row(row) if row else None

    async def job_for_request(self, platform: str, request_key: str) -> JobRecord | None:
        """The job an incoming request (see JobRecord.request_key) already queued, if any."""
        row = await self.db.fetch_one(f"{_SELECT_JOB} WHERE platform = ? AND request_key = ?", platform, request_key)
        return _job_from_row(row) if row else None

    async def jobs(self, job_ids: Iterable[str]) -> list[JobRecord]:
        ids = list(job_ids)
        if not ids:
            return []
        rows = await self.db.fetch_all(f"{_SELECT_JOB} WHERE id IN {_in(ids)}", *ids)
        by_id = {row["id"]: _job_from_row(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    async def member_active_jobs(self, account_id: int) -> list[JobRecord]:
        """The member's waiting and running jobs, best-ranked first."""
        rows = await self.db.fetch_all(
            f"{_SELECT_JOB} WHERE account_id = ? AND status IN ('queued', 'running') ORDER BY rank, seq, id",
            account_id,
        )
        return [_job_from_row(row) for row in rows]

    async def position(self, job_id: str) -> int | None:
        """How many waiting jobs run before this one (0: next); None if it is not waiting."""
        row = await self.db.fetch_one("SELECT rank, seq, status FROM jobs WHERE id = ?", job_id)
        if row is None or row["status"] != "queued":
            return None
        return await self.db.fetch_value(
            "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND (rank, seq, id) < (?, ?, ?)",
            row["rank"], row["seq"], job_id,
        )  # fmt: skip

    async def waiting(self, limit: int) -> list[tuple[str, str]]:
        """(job id, tier) of the first `limit` waiting jobs, in the order they will run."""
        rows = await self.db.fetch_all(
            "SELECT id, tier FROM jobs WHERE status = 'queued' ORDER BY rank, seq, id LIMIT ?", limit
        )
        return [(row["id"], row["tier"]) for row in rows]

    async def waiting_jobs(self, limit: int) -> list[JobRecord]:
        """The first `limit` waiting jobs, in the order they will run: the i-th has position i."""
        rows = await self.db.fetch_all(f"{_SELECT_JOB} WHERE status = 'queued' ORDER BY rank, seq, id LIMIT ?", limit)
        return [_job_from_row(row) for row in rows]

    async def waiting_head(self, limit: int) -> tuple[list[JobRecord], int]:
        """waiting_jobs(limit) and running_count() in one read (0 running when none waits)."""
        rows = await self.db.fetch_all(
            f"SELECT {', '.join(_JOB_COLUMNS)}, (SELECT COUNT(*) FROM jobs WHERE status = 'running') AS running_now "
            "FROM jobs WHERE status = 'queued' ORDER BY rank, seq, id LIMIT ?",
            limit,
        )  # fmt: skip
        return [_job_from_row(row) for row in rows], int(rows[0]["running_now"]) if rows else 0

    async def waiting_by_tier(self) -> dict[str, int]:
        rows = await self.db.fetch_all("SELECT tier, COUNT(*) AS n FROM jobs WHERE status = 'queued' GROUP BY tier")
        return {row["tier"]: row["n"] for row in rows}

    async def running_count(self) -> int:
        return await self.db.fetch_value("SELECT COUNT(*) FROM jobs WHERE status = 'running'")

    async def undelivered_jobs(self, platforms: Iterable[str], now: float) -> list[str]:
        """Finished jobs of these platforms whose member has not been told yet (results and
        failure notices), that no front end is delivering right now."""
        names = list(platforms)
        if not names:
            return []
        rows = await self.db.fetch_all(
            "SELECT id FROM jobs WHERE delivered_at IS NULL AND status IN ('done', 'failed') "
            f"AND platform IN {_in(names)} AND (delivery_until IS NULL OR delivery_until < ?) ORDER BY finished_at",
            *names, now,
        )  # fmt: skip
        return [row["id"] for row in rows]

    async def count_by_status(self) -> dict[str, int]:
        rows = await self.db.fetch_all("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
        return {row["status"]: row["n"] for row in rows}

    async def recent_seconds(self, limit: int) -> list[float]:
        rows = await self.db.fetch_all(
            "SELECT seconds FROM jobs WHERE status = 'done' AND seconds IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
            limit,
        )
        return [row["seconds"] for row in rows]

    # Jobs: the worker's side -----------------------------------------------------------------

    async def claim_batch(self, max_batch: int, worker_id: str, now: float, lease_until: float) -> list[JobRecord]:
        """Mark the best-ranked waiting job and up to max_batch - 1 compatible ones (same batch
        key, best-ranked first) running for this worker, in one statement. On PostgreSQL rows
        other workers are claiming are skipped, not waited for (FOR UPDATE SKIP LOCKED)."""
        skip = f"{self.db.lock_clause} SKIP LOCKED" if self.db.lock_clause else ""
        # One statement is its own transaction on both databases (SQLite takes the write lock
        # before it reads, as BEGIN IMMEDIATE would): no BEGIN and COMMIT around it, which on
        # SQLite were two more trips to the database's thread on the path the engine waits on.
        claim = asyncio.ensure_future(self.db.fetch_written(
            "WITH best AS ("
            f" SELECT batch_key FROM jobs WHERE status = 'queued' ORDER BY rank, seq, id LIMIT 1 {skip}"
            "), picked AS ("
            " SELECT id FROM jobs WHERE status = 'queued' AND batch_key = (SELECT batch_key FROM best)"
            f" ORDER BY rank, seq, id LIMIT ? {skip}"
            ") "
            "UPDATE jobs SET status = 'running', started_at = ?, worker_id = ?, lease_until = ? "
            f"WHERE id IN (SELECT id FROM picked) RETURNING {', '.join(_JOB_COLUMNS)}",
            max_batch, now, worker_id, lease_until,
        ))  # fmt: skip
        try:
            rows = await asyncio.shield(claim)
        except asyncio.CancelledError:
            # A stopping worker cut its claim-ahead short. The statement still runs to its end
            # (on aiosqlite's thread, or on the server), and with no transaction to roll back
            # what it took would stay 'running' for a worker that never runs it: back in line.
            await asyncio.wait([claim])
            if not claim.cancelled() and claim.exception() is None and claim.result():
                await self.requeue([row["id"] for row in claim.result()])
            raise
        return sorted((_job_from_row(row) for row in rows), key=lambda job: (job.rank, job.seq, job.id))

    async def renew_lease(self, worker_id: str, job_ids: list[str], lease_until: float) -> int:
        """Keep this worker's running jobs; returns how many it still holds."""
        if not job_ids:
            return 0
        return await self.db.execute(
            f"UPDATE jobs SET lease_until = ? WHERE status = 'running' AND worker_id = ? AND id IN {_in(job_ids)}",
            lease_until, worker_id, *job_ids,
        )  # fmt: skip

    async def requeue_expired(self, now: float) -> list[str]:
        """Running jobs whose worker stopped renewing its lease (it died) go back in line at
        their original rank."""
        async with self.db.transaction():
            rows = await self.db.fetch_all(
                "UPDATE jobs SET status = 'queued', started_at = NULL, worker_id = NULL, lease_until = NULL "
                "WHERE status = 'running' AND lease_until < ? RETURNING id",
                now,
            )
        return [row["id"] for row in rows]

    async def requeue(self, job_ids: list[str] | None = None) -> list[str]:
        """Put running jobs back in line at their original rank: these (a batch that could not
        start), or all of them (None: the one SQLite process starting again)."""
        where = "status = 'running'" + (f" AND id IN {_in(job_ids)}" if job_ids is not None else "")
        if job_ids is not None and not job_ids:
            return []
        async with self.db.transaction():
            rows = await self.db.fetch_all(
                "UPDATE jobs SET status = 'queued', started_at = NULL, worker_id = NULL, lease_until = NULL "
                f"WHERE {where} RETURNING id",
                *(job_ids or ()),
            )
        return [row["id"] for row in rows]

    async def finish_job(
        self,
        job_id: str,
        worker_id: str,
        result: bytes,
        *,
        seed: int,
        steps: int,
        seconds: float,
        deliver_after: float,
        now: float,
    ) -> bool:
        """Store a result and mark the job done, together. False (nothing written) when this
        worker no longer holds the job: it was cancelled, or its lease ran out and it went back
        in line, so the one result kept is the one from the worker that holds it."""
        async with self.db.transaction():
            held = await self.db.execute(
                "UPDATE jobs SET status = 'done', seed = ?, steps = ?, seconds = ?, deliver_after = ?, finished_at = ?, "
                "lease_until = NULL WHERE id = ? AND status = 'running' AND worker_id = ?",
                seed, steps, seconds, deliver_after, now, job_id, worker_id,
            )  # fmt: skip
            if held != 1:
                return False
            await self.db.execute(
                "INSERT INTO pictures (job_id, kind, data) VALUES (?, 'result', ?) "
                "ON CONFLICT (job_id, kind) DO UPDATE SET data = excluded.data",
                job_id, result,
            )  # fmt: skip
            return True

    async def mark_failed(self, job_id: str, error: str, now: float, *, worker_id: str | None = None) -> bool:
        """Fail an active job (held by `worker_id`, when given) and give its quota unit back;
        False if it had already ended or another worker holds it."""
        return await self._end_with_refund(job_id, "failed", error, now, worker_id) is not None

    async def mark_cancelled(self, job_id: str, now: float) -> JobRecord | None:
        """Cancel an active job and give its quota unit back; nothing is delivered for it.
        Returns the job as it was (status queued or running, and its worker) or None."""
        return await self._end_with_refund(job_id, "cancelled", None, now, None)

    async def _end_with_refund(
        self, job_id: str, status: str, error: str | None, now: float, worker_id: str | None
    ) -> JobRecord | None:
        async with self.db.transaction():
            row = await self.db.fetch_one(f"{_SELECT_JOB} WHERE id = ? {self.db.lock_clause}", job_id)
            if row is None or row["status"] not in ACTIVE:
                return None
            if worker_id is not None and (row["status"] != "running" or row["worker_id"] != worker_id):
                return None
            await self.db.execute(
                "UPDATE jobs SET status = ?, error = ?, finished_at = ?, delivered_at = ?, lease_until = NULL "
                "WHERE id = ?",
                status, error, now, now if status == "cancelled" else None, job_id,
            )  # fmt: skip
            await self.db.execute(
                "UPDATE daily_usage SET used = CASE WHEN used > 0 THEN used - 1 ELSE 0 END "
                "WHERE account_id = ? AND day = ?",
                row["account_id"], row["quota_day"],
            )  # fmt: skip
            return _job_from_row(row)

    # Jobs: the front ends' side --------------------------------------------------------------

    async def claim_delivery(self, job_id: str, owner: str, now: float, until: float) -> bool:
        """Take (or renew) the right to deliver a finished job until `until`, so that of several
        front ends exactly one sends it; False when another holds it or it was delivered."""
        return await self.claim_delivery_record(job_id, owner, now, until) is not None

    async def claim_delivery_record(self, job_id: str, owner: str, now: float, until: float) -> JobRecord | None:
        """claim_delivery that answers with the job as it is once claimed (None: not claimed),
        in the same statement: a delivery read the job again right after claiming it."""
        rows = await self.db.fetch_written(
            "UPDATE jobs SET delivery_by = ?, delivery_until = ? WHERE id = ? AND delivered_at IS NULL "
            "AND status IN ('done', 'failed') AND (delivery_by IS NULL OR delivery_by = ? OR delivery_until < ?) "
            f"RETURNING {', '.join(_JOB_COLUMNS)}",
            owner, until, job_id, owner, now,
        )  # fmt: skip
        return _job_from_row(rows[0]) if rows else None

    async def release_deliveries(self, owner: str | None, job_id: str | None = None) -> None:
        """Give up delivery leases: one job's or all of `owner`'s (None: everybody's, for the
        one SQLite process at start), so another front end or the next start may deliver."""
        where, args = ("delivery_by IS NOT NULL", []) if owner is None else ("delivery_by = ?", [owner])
        if job_id is not None:
            where, args = f"{where} AND id = ?", [*args, job_id]
        await self.db.execute(
            f"UPDATE jobs SET delivery_by = NULL, delivery_until = NULL WHERE delivered_at IS NULL AND {where}", *args
        )

    async def mark_delivered(self, job_id: str, now: float) -> None:
        await self.db.execute("UPDATE jobs SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL", now, job_id)

    async def set_ranks(self, ranks: dict[str, float], tier: str) -> None:
        async with self.db.transaction():
            await self.db.execute_many(
                "UPDATE jobs SET rank = ?, tier = ? WHERE id = ? AND status = 'queued'",
                [(rank, tier, job_id) for job_id, rank in ranks.items()],
            )

    async def update_reply(self, job_id: str, reply: dict[str, Any]) -> None:
        """Front ends add to a job's reply data (e.g. the id of the status message they sent)."""
        await self.db.execute(
            "UPDATE jobs SET reply_json = ? WHERE id = ?", json.dumps(reply, separators=(",", ":")), job_id
        )


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
