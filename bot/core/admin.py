"""What admins and the bot's upkeep do: where the bot works, bans, the queue summary, the job
log, retention (purging, recompressing cold pictures) and the front ends' shared markers."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from bot.clock import Clock
from bot.config import Config, is_admin
from bot.core import texts
from bot.core.jobs import Jobs
from bot.core.types import Member, Reason, Refused
from bot.i18n import translator
from bot.moderation import Place, place_refusal
from bot.store import Store
from engine.pictures import is_uncompressed, stored_as_png

log = logging.getLogger("bot.core.admin")


class Admin:
    def __init__(self, config: Config, store: Store, clock: Clock, jobs: Jobs, *, instance_id: str) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.jobs = jobs
        self.instance_id = instance_id
        self._places_told: set[Place] = set()

    def check_place(self, place: Place, lang: str | None = None) -> Refused | None:
        """None where the bot works. Elsewhere a refusal that is said once per chat, then quiet."""
        message = place_refusal(self.config.access, place)
        if message is None:
            return None
        quiet = place in self._places_told
        self._places_told.add(place)
        return Refused(Reason.PLACE, translator(lang).gettext(message), quiet=quiet, lang=lang)

    def is_admin(self, member: Member) -> bool:
        return is_admin(self.config, member.platform, member.user_id)

    async def ban(self, admin: Member, target: Member, reason: str, *, banned: bool = True) -> list[str] | Refused:
        """Ban (or unban) a member; a ban cancels their waiting jobs. Returns the cancelled ids."""
        if not self.is_admin(admin):
            return Refused(Reason.NOT_ADMIN, translator(admin.lang).gettext(texts.NOT_ADMIN), lang=admin.lang)
        now = self.clock.now()
        account = await self.store.account_for(target.platform, target.user_id, now, target.name)
        await self.store.set_ban(account.id, banned, reason=reason or "no reason given", by=admin.key, now=now)
        log.info("%s %s %s: %s", admin.key, "banned" if banned else "unbanned", target.key, reason)
        return await self.jobs.cancel(target) if banned else []

    async def purge_expired(self) -> int:
        """Delete jobs and pictures older than [moderation] retention_days; returns how many."""
        before = self.clock.now() - self.config.moderation.retention_days * 86400
        ids = await self.store.purge_finished(before)
        if ids:
            log.info("purged %d jobs older than %.0f days", len(ids), self.config.moderation.retention_days)
        return len(ids)

    async def compact_pictures(self, older_than_s: float = 3600.0) -> int:
        """Recompress the pictures of jobs delivered more than `older_than_s` ago from the fast
        uncompressed form to PNG (about half the disk); returns how many files changed."""
        changed = 0
        saved = 0
        for job_id in await self.store.delivered_before(self.clock.now() - older_than_s):
            for kind in ("input", "result"):
                data = await self.store.picture(job_id, kind)
                if data is None or not is_uncompressed(data):
                    continue
                png = await asyncio.to_thread(stored_as_png, data)
                await self.store.replace_picture(job_id, kind, png)
                changed += 1
                saved += len(data) - len(png)
        if changed:
            log.info("recompressed %d pictures to PNG, %.1f MB saved", changed, saved / 1e6)
        return changed

    async def waiting_summary(self, limit: int = 20) -> list[tuple[str, str, int]]:
        """For admins' /queue: (job id, tier, position) of the first waiting jobs."""
        return [(job_id, tier, i) for i, (job_id, tier) in enumerate(await self.store.waiting(limit))]

    async def job_log(self, admin: Member, limit: int = 20) -> list[dict[str, Any]] | Refused:
        """For admins answering a complaint: the latest jobs, newest first, as plain dicts (id,
        platform, user_id, reply (where it was asked), prompt, status, error, created_at,
        finished_at)."""
        if not self.is_admin(admin):
            return Refused(Reason.NOT_ADMIN, translator(admin.lang).gettext(texts.NOT_ADMIN), lang=admin.lang)
        rows = await self.store.job_log(limit)
        return [
            {
                "id": row["id"],
                "platform": row["platform"],
                "user_id": row["platform_user_id"],
                "reply": json.loads(row["reply_json"] or "{}"),
                "prompt": row["prompt"],
                "status": row["status"],
                "error": row["error"],
                "created_at": row["created_at"],
                "finished_at": row["finished_at"],
            }
            for row in rows
        ]

    async def jobs_by_status(self) -> dict[str, int]:
        return await self.store.count_by_status()

    async def queue_lengths(self) -> dict[str, int]:
        counts = {name: 0 for name in self.config.tiers}
        counts.update(await self.store.waiting_by_tier())
        return counts

    async def running_count(self) -> int:
        return await self.store.running_count()

    async def discord_commands_synced(self) -> dict[str, str]:
        """The hash of the command payload last synced per scope ("global" or a server id)."""
        return await self.store.last_marker("discord_commands_synced")

    async def record_discord_commands(self, hashes: dict[str, str]) -> None:
        await self.store.add_marker("discord_commands_synced", hashes, done_by="discord", now=self.clock.now())

    async def claim_discord_command_sync(self, for_s: float) -> bool:
        """Only one process syncs the Discord commands: False while another one's claim runs."""
        now = self.clock.now()
        return await self.store.claim_marker("discord_commands_sync", self.instance_id, now, now + for_s)

    async def release_discord_command_sync(self) -> None:
        await self.store.release_marker("discord_commands_sync", self.instance_id, self.clock.now())
