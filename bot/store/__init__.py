"""The database: members, jobs (which are the queue), pictures, usage, upgrades and audits.

Every state change of a job is written here before anyone is told about it, so a restart (or a
crash, of any process) loses nothing and delivers what was not delivered, once. The queue lives
in the jobs table: each waiting job's rank and sequence number order it (see bot/queue.py), so
any process can read a position, cancel a job, or claim a batch. The same SQL runs on SQLite
(one process) and PostgreSQL (many); bot/store/db.py and its two implementations translate
what differs.

Store is one class built by inheritance from one small class per aggregate (jobs, claims,
pictures, accounts, billing, coordination), all on the one `db` of StoreBase: every caller keeps
calling `store.claim_batch(...)`, and one transaction can still span aggregates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

from bot.clock import Clock
from bot.store.accounts import TIERS_BY_DEFAULT, Account, AccountsStore
from bot.store.claims import ClaimsStore
from bot.store.db import Database, Row, StoreError, is_postgres, sqlite_path
from bot.store.jobs import ACTIVE, JobRecord, JobsStore
from bot.store.pictures import PicturesStore
from bot.store.postgres import PostgresDatabase
from bot.store.schema import MIGRATION_LOCK, MIGRATIONS, import_picture_files, migrate
from bot.store.schema import schema_version as read_schema_version
from bot.store.sqlite import SqliteDatabase

log = logging.getLogger("bot.store")

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

CLAIM_LOCK = 0x7265_7375  # advisory lock key: one process at a time reads and takes a claim marker


class Store(JobsStore, ClaimsStore, PicturesStore, AccountsStore):
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

    async def link_code(self, code_hash: str) -> dict[str, Any] | None:
        row = await self.db.fetch_one("SELECT * FROM link_codes WHERE hash = ?", code_hash)
        return dict(row) if row else None

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
