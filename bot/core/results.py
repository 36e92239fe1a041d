"""A finished job's pictures for the member who asked: its result and original as files, a
strength sweep's result kept as an ordinary one, a sweep's results as files. No new GPU work;
each checks the job is still kept and that it is the member's."""

from __future__ import annotations

import asyncio

from bot.core import texts
from bot.core.types import Delivery, Member, Reason, Refused
from bot.core.views import JobViews
from bot.i18n import translator
from bot.store import JobRecord, Store
from engine.pictures import convert_stored


class Results:
    def __init__(self, store: Store, views: JobViews) -> None:
        self.store = store
        self.views = views

    async def keep(self, member: Member, job_id: str) -> Delivery | Refused:
        """ "Keep 0.5" under a sweep: that job's result as an ordinary Delivery, for the front
        end to send like any result (its Again / Subtler / Stronger work from it as from any)."""
        job = await self.store.job(job_id)
        pictures = await self.store.job_pictures(job_id) if job is not None and job.status == "done" else {}
        if job is None or "input" not in pictures or "result" not in pictures:
            return _refused(member, Reason.NOT_FOUND, texts.RESULT_GONE)
        if not _owns(member, job):
            return _refused(member, Reason.NOT_YOURS, texts.NOT_YOURS)
        return Delivery(await self.views.view(job), pictures["input"], pictures["result"])

    async def sweep_files(
        self, member: Member, sweep_id: str, fmt: str, max_bytes: int | None = None
    ) -> list[tuple[float, bytes]] | Refused:
        """A sweep's done results as files (png / jpeg / webp, each under max_bytes), as
        (strength, bytes) in strength order; no new GPU work."""
        jobs = await self.store.sweep_jobs(sweep_id)
        if not jobs:
            return _refused(member, Reason.NOT_FOUND, texts.RESULTS_GONE)
        if not _owns(member, jobs[0]):
            return _refused(member, Reason.NOT_YOURS, texts.SWEEP_NOT_YOURS)
        files = []
        for job in jobs:
            data = await self.store.picture(job.id, "result") if job.status == "done" else None
            if data is not None:
                files.append((job.strength, await asyncio.to_thread(convert_stored, data, fmt, max_bytes)))
        if not files:
            return _refused(member, Reason.NOT_FOUND, texts.RESULTS_GONE)
        return files

    async def result_file(self, member: Member, job_id: str, fmt: str, max_bytes: int | None = None) -> bytes | Refused:
        """The stored result converted to png / jpeg / webp; no new GPU work."""
        job = await self.store.job(job_id)
        data = await self.store.picture(job_id, "result") if job is not None and job.status == "done" else None
        if job is None or data is None:
            return _refused(member, Reason.NOT_FOUND, texts.RESULT_GONE)
        if not _owns(member, job):
            return _refused(member, Reason.NOT_YOURS, texts.NOT_YOURS)
        return await asyncio.to_thread(convert_stored, data, fmt, max_bytes)

    async def input_file(self, member: Member, job_id: str, fmt: str, max_bytes: int | None = None) -> bytes | Refused:
        """The prepared picture (the original as the engine saw it) as png / jpeg / webp."""
        job = await self.store.job(job_id)
        data = await self.store.picture(job_id, "input") if job is not None else None
        if job is None or data is None:
            return _refused(member, Reason.NOT_FOUND, texts.PICTURE_GONE)
        if not _owns(member, job):
            return _refused(member, Reason.NOT_YOURS, texts.NOT_YOURS_TO_SEE)
        return await asyncio.to_thread(convert_stored, data, fmt, max_bytes)

    async def input_picture(self, job_id: str) -> bytes | None:
        """The prepared picture of a job (lossless; open it with Pillow), or None once purged."""
        return await self.store.picture(job_id, "input")


def _owns(member: Member, job: JobRecord) -> bool:
    return (job.platform, job.platform_user_id) == (member.platform, member.user_id)


def _refused(member: Member, reason: Reason, text: str) -> Refused:
    return Refused(reason, translator(member.lang).gettext(text))
