"""The buttons under a result, a status and a sweep, pressed: one flow for every chat platform.

Each platform reads a `Press` from its button (Telegram's callback data, Discord's custom_id)
and builds a `PressSurface` (bot/chat/surface.py) for where it was pressed; `handle_press`
does the rest: whose job it is, then Cancel, a file in a format, Side by side, Keep, the
sweep's files, or a new job (Again / Subtler / Stronger / Try 3 strengths)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.chat import texts
from bot.chat.buttons import owned_job
from bot.chat.compare import side_by_side
from bot.chat.surface import PressSurface
from bot.chat.sweep import SENDING_SWEEP_FILES, SWEEP_GONE, sweep_file_name, sweep_refusal
from bot.commands import OUTPUT_FORMATS, STRENGTH_CHANGES
from bot.core import texts as core_texts
from bot.core.types import JobView, Member, Refused
from bot.i18n import N_, Text, translator
from bot.service import RestyleService
from engine.pictures import PictureError

log = logging.getLogger("bot.chat")

CANCEL = "cancel"
FILE = "file"  # with a format: png, webp or jpeg
COMPARE = "compare"  # the before and after in one picture
SWEEP = "sweep"  # "Try 3 strengths"
KEEP = "keep"  # under a sweep: one of its results
SWEEP_FILES = "sweepfiles"  # under a sweep: its results as files
NEW_JOB = (*STRENGTH_CHANGES, SWEEP)  # again, subtler, stronger, sweep

TOO_LATE = N_("Too late to cancel: that job has already finished.")
SENDING_FILE = N_("Sending the {format} file…")
QUEUED = N_("Queued: #{place} in line")


@dataclass(frozen=True)
class Press:
    """One press of a button: what it asks (`action`), of which job (a sweep's lead for
    SWEEP_FILES), a file's format, and the press's own name: the same press seen twice (an
    update delivered again) has the same `request_key`, and starts one job."""

    action: str
    job_id: str
    request_key: str
    format: str = ""


async def handle_press(service: RestyleService, member: Member, press: Press, surface: PressSurface) -> None:
    tr = translator(member.lang)
    # A sweep's buttons speak of the sweep: a gone one says how to run one again.
    gone = SWEEP_GONE if press.action in (KEEP, SWEEP_FILES) else core_texts.JOB_GONE
    not_yours = core_texts.SWEEP_NOT_YOURS if press.action == SWEEP_FILES else core_texts.NOT_YOURS
    job = await owned_job(service, member, press.job_id, gone, not_yours)
    if isinstance(job, str):
        await surface.notice(job)
        return
    if press.action == CANCEL:
        await surface.cancelling(job.id)
        if await service.jobs.cancel(member, job.id):
            await surface.acknowledge(tr.gettext(texts.CANCELLED))
            await surface.finish_status(job.id, texts.CANCELLED)
        else:
            await surface.notice(tr.gettext(TOO_LATE))
    elif press.action == FILE and press.format in OUTPUT_FORMATS:
        await _send_file(service, member, job, press.format, surface)
    elif press.action == COMPARE:
        await surface.acknowledge(tr.gettext(texts.SENDING_SIDE_BY_SIDE))
        both = await side_by_side(service, member, job.id, surface.picture_limit)
        if isinstance(both, Refused):
            await surface.notice(both.text)
        else:
            await surface.send_picture(both, tr.gettext(texts.SIDE_BY_SIDE_CAPTION))
    elif press.action == KEEP:
        # Its Again / Subtler / Stronger then go on from the kept result.
        delivery = await service.results.keep(member, job.id)
        if isinstance(delivery, Refused):
            await _refuse(surface, delivery, sweep_refusal(delivery, member.lang))
            return
        await surface.acknowledge()
        await surface.send_result(delivery)
    elif press.action == SWEEP_FILES:
        await surface.acknowledge(tr.gettext(SENDING_SWEEP_FILES))
        sweep_id = job.sweep_id or job.id
        files = await service.results.sweep_files(member, sweep_id, "png", surface.files_limit)
        if isinstance(files, Refused):
            await surface.notice(sweep_refusal(files, member.lang))
        else:
            await surface.send_files([(sweep_file_name(strength, "png"), data) for strength, data in files])
    elif press.action in NEW_JOB:
        await _new_job(service, member, job, press, surface)
    else:
        await surface.acknowledge()  # a button of an older version: nothing to do


async def _send_file(service: RestyleService, member: Member, job: JobView, fmt: str, surface: PressSurface) -> None:
    tr = translator(member.lang)
    output = OUTPUT_FORMATS[fmt]
    await surface.acknowledge(tr.gettext(SENDING_FILE).format(format=output.label))
    try:
        data = await service.results.result_file(member, job.id, fmt, surface.file_limit)
    except PictureError as exc:  # it could not be made within the platform's file limit
        log.info("job %s: no %s file within %d bytes (%s)", job.id, output.label, surface.file_limit, exc)
        await surface.notice(Text(exc.template, exc.params).render(tr))
        return
    if isinstance(data, Refused):
        await surface.notice(data.text)
        return
    await surface.send_file(f"{surface.result_name}-{job.id}.{output.extension}", data)


async def _new_job(service: RestyleService, member: Member, job: JobView, press: Press, surface: PressSurface) -> None:
    """Again / Subtler / Stronger (the strength moved by its step), or "Try 3 strengths" (the
    same picture, prompt and seed at each sweep strength, one status for the three)."""
    refused = surface.place_refusal(member.lang)
    if refused is not None:
        await _refuse(surface, refused)
        return
    reply = await surface.reply_data(job)
    try:
        if press.action == SWEEP:
            result = await service.jobs.sweep(member, job.id, reply, request_key=press.request_key)
        else:
            result = await service.jobs.again(member, job.id, reply, strength_delta=STRENGTH_CHANGES[press.action],
                                              request_key=press.request_key)  # fmt: skip
    except BaseException:
        await surface.not_started()
        raise
    if isinstance(result, Refused):
        await surface.not_started()
        await _refuse(surface, result)
        return
    if result.duplicate:
        # This press was answered when it first came (Telegram takes one answer per press).
        log.info("job %s: press %s came again; answered already", result.job_id, press.request_key)
        await surface.not_started()
        return
    await surface.acknowledge(translator(member.lang).gettext(QUEUED).format(place=result.position + 1))
    await surface.queued(result, reply)


async def _refuse(surface: PressSurface, refused: Refused, text: str | None = None) -> None:
    """Why the press did nothing, unless the member was told already (a quiet refusal)."""
    if refused.quiet:
        await surface.acknowledge()
    else:
        await surface.notice(text if text is not None else refused.text)
