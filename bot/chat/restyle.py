"""A restyle request (a picture and the words for its new style): one flow for every chat platform.

Each platform reads a `RestyleRequest` from its event (a Telegram message, a Discord slash
command, "Restyle image" form or @mention) and builds a `RestyleSurface` (bot/chat/surface.py)
for where it came; `handle_restyle` does the rest, in this order, so nothing is fetched for a
request that cannot run: the place ([access] lists), the picture, its declared size, the
command's words, the download, then the job (queued, refused, or a request seen before)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.chat.surface import RestyleSurface
from bot.commands import CommandError, RestyleCommand, parse_restyle
from bot.core.types import Member, Refused
from bot.i18n import translator
from bot.service import RestyleService

log = logging.getLogger("bot.chat")


@dataclass(frozen=True)
class RestyleRequest:
    """`command`: the words to parse ("/restyle watercolor strength=0.4"), a command a platform's
    own form already read (Discord's slash options), or what is wrong with those; `request_key`
    names the request: the same one seen twice (an update delivered again) starts one job."""

    command: str | RestyleCommand | CommandError
    request_key: str


async def handle_restyle(
    service: RestyleService, member: Member, request: RestyleRequest, surface: RestyleSurface
) -> None:
    tr = translator(member.lang)
    refused = surface.place_refusal(member.lang)
    if refused is not None:
        if not refused.quiet:
            await surface.refuse(refused.text)
        return
    found = await surface.find_picture()
    if isinstance(found, str):
        await surface.refuse(found)
        return
    if found.size is not None and found.size > surface.max_download_bytes:
        await surface.refuse(surface.too_big(found.size, tr))
        return
    try:
        command = _command(request.command)
    except CommandError as exc:
        await surface.refuse(surface.bad_command(exc, tr))
        return
    data = await surface.download()
    if isinstance(data, str):
        await surface.refuse(data)
        return
    reply = await surface.reply_data()
    if reply is None:
        return
    result = await service.jobs.submit(member, data, command, reply, request_key=request.request_key)
    if isinstance(result, Refused):
        if result.quiet:
            await surface.not_started()
        else:
            await surface.refuse(surface.refusal_text(result))
        return
    if result.duplicate:
        log.info("job %s: request %s came again; answered already", result.job_id, request.request_key)
        await surface.answered_already()
        return
    await surface.queued(result, reply)


def _command(command: str | RestyleCommand | CommandError) -> RestyleCommand:
    if isinstance(command, CommandError):
        raise command
    return parse_restyle(command) if isinstance(command, str) else command
