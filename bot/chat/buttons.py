"""What every result's and status's buttons share across platforms: whose they are."""

from __future__ import annotations

from bot.core import texts
from bot.core.types import JobView, Member
from bot.i18n import translator
from bot.service import RestyleService


async def owned_job(
    service: RestyleService, member: Member, job_id: str, gone: str = texts.JOB_GONE, not_yours: str = texts.NOT_YOURS
) -> JobView | str:
    """The job behind a button, or what to tell the member who pressed it instead (a job that
    is gone, said with `gone`; or someone else's, said with `not_yours`: buttons sit in shared
    chats for everyone to press). Both English msgids."""
    job = await service.jobs.job(job_id)
    if job is None:
        return translator(member.lang).gettext(gone)
    if (job.platform, job.user_id) != (member.platform, member.user_id):
        return translator(member.lang).gettext(not_yours)
    return job
