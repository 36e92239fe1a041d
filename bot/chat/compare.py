"""The before/after picture a member asks for from a result ("Side by side"), on any platform."""

from __future__ import annotations

import asyncio

from bot.core.types import Member, Reason, Refused
from bot.i18n import translator
from bot.service import RestyleService
from engine.pictures import before_after_file


async def side_by_side(service: RestyleService, member: Member, job_id: str, max_bytes: int) -> bytes | Refused:
    """The job's original and result in one JPEG under `max_bytes`, or why not (someone else's
    job, or one whose pictures are no longer kept). Built from what is stored: no GPU work."""
    result = await service.results.result_file(member, job_id, "png")
    if isinstance(result, Refused):
        return result
    original = await service.results.input_picture(job_id)
    if original is None:
        message = translator(member.lang).gettext("That picture is no longer kept; send it again with /restyle.")
        return Refused(Reason.NOT_FOUND, message)
    return await asyncio.to_thread(before_after_file, original, result, "jpeg", max_bytes)
