"""Billing: redeem codes, link codes, and payments (recorded, held, refunded); each sets a tier
through the accounts' audited tier change."""

from __future__ import annotations

import json
from typing import Any

from bot.store.accounts import AccountsStore


class BillingStore(AccountsStore):
    """Codes, link codes and payments; built on the accounts, whose tiers they set."""

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

    async def paid_charges(self, prefix: str) -> list[tuple[str, str]]:
        """(charge id without `prefix`, platform user id) of the payments still in force whose
        charge id starts with `prefix`."""
        rows = await self.db.fetch_all(
            "SELECT charge_id, platform_user_id FROM payments WHERE status = 'paid' AND substr(charge_id, 1, ?) = ? "
            "ORDER BY charge_id",
            len(prefix), prefix,
        )  # fmt: skip
        return [(row["charge_id"][len(prefix) :], row["platform_user_id"]) for row in rows]
