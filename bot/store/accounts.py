"""Accounts: a member's identities on each platform, their tier (audited), bans, and the count
of their code guesses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.store.base import StoreBase
from bot.store.db import StoreError

TIERS_BY_DEFAULT = "free"


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


class AccountsStore(StoreBase):
    """Accounts, identities, tiers and their audit, bans, guesses."""

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
