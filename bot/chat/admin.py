"""The admins' commands: /ban, /unban and /queue ([bot] admins is checked on every use)."""

from __future__ import annotations

from bot.chat import texts
from bot.chat.surface import CommandSurface
from bot.core.types import Member, Refused
from bot.i18n import translator
from bot.service import RestyleService

QUEUE_WAITING_SHOWN = 20  # waiting jobs /queue names
QUEUE_LOG_SHOWN = 20  # jobs /queue log lists unless asked for more
QUEUE_LOG_MOST = 50


async def ban(
    service: RestyleService, admin: Member, target: Member, reason: str, where: CommandSurface, *, banned: bool
) -> None:
    """A ban also cancels the member's waiting jobs (their status messages say so)."""
    tr = translator(admin.lang)
    if not service.admin.is_admin(admin):
        await where.reply(tr.gettext(texts.NOT_ADMIN).format(command="ban" if banned else "unban"))
        return
    result = await service.admin.ban(admin, target, reason, banned=banned)
    if isinstance(result, Refused):
        await where.reply(result.text)
        return
    who = where.style.member(target.platform, target.user_id, target.name)
    await where.reply(texts.banned(who, reason, len(result), tr) if banned else texts.unbanned(who, tr))
    for job_id in result:
        await where.finish_status(job_id, texts.CANCELLED)


async def queue(
    service: RestyleService, admin: Member, where: CommandSurface, *, log: bool, count: int | None = None
) -> None:
    """Who is waiting, per tier, or (`log`) the latest `count` jobs: who asked what, where. It
    names members and quotes their prompts, so it is answered only where the admin alone reads it."""
    tr = translator(admin.lang)
    if not service.admin.is_admin(admin):
        await where.reply(tr.gettext(texts.NOT_ADMIN).format(command="queue"))
        return
    if not where.private:
        await where.reply(tr.gettext(texts.QUEUE_IN_PRIVATE))
        return
    if log:
        entries = await service.admin.job_log(admin, min(QUEUE_LOG_MOST, count or QUEUE_LOG_SHOWN))
        await where.reply(entries.text if isinstance(entries, Refused) else texts.job_log(entries, where.style, tr))
        return
    waiting = [
        (position, tier, job_id, await service.jobs.job(job_id))
        for job_id, tier, position in await service.admin.waiting_summary(QUEUE_WAITING_SHOWN)
    ]
    await where.reply(texts.queue(await service.admin.queue_lengths(), waiting, service.clock.now(), where.style, tr))
