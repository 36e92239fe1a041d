"""What processes agree on through the database: markers (a note of what was done, or a claim on
a one-process task), listener leases (who holds a platform's update stream) and the inbox of
incoming updates."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from bot.store.base import StoreBase
from bot.store.postgres import PostgresDatabase

CLAIM_LOCK = 0x7265_7375  # advisory lock key: one process at a time reads and takes a claim marker


class CoordinationStore(StoreBase):
    """Markers, listener leases and the incoming-update inbox."""

    # Markers ---------------------------------------------------------------------------------

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
