"""A strength sweep on Telegram: its answer (one photo of the results side by side, captioned,
with a Keep button per result and one for the files) and its results as files in one album.
Plain functions on python-telegram-bot's Bot; the shared delivery flow (bot/chat/delivery.py)
chooses the steps and records each one sent, so a delivery retried after a restart sends nothing twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from telegram import InputFile, InputMediaDocument, InputMediaPhoto, ReplyParameters
from telegram.error import TimedOut

from bot.adapters.telegram.buttons import sweep_buttons
from bot.adapters.telegram.texts import CAPTION_LIMIT
from bot.chat.delivery import SWEEP_ALBUM, SWEEP_BUTTONS, SWEEP_SHEET, sweep_alone
from bot.chat.sweep import sweep_caption, sweep_file_name
from bot.core.types import SweepDelivery
from bot.i18n import translator

log = logging.getLogger("bot.telegram")

ALBUM_MIN, ALBUM_MAX = 2, 10  # Bot API, sendMediaGroup: "must include 2-10 items"


async def send_sweep_step(
    bot: Any,
    sweep: SweepDelivery,
    reply: dict[str, Any],
    step: str,
    *,
    photo: Callable[[bytes], bytes],
    read_timeout: float,
) -> None:
    """One step of the sweep's answer (bot/chat/delivery.py chooses them): the one picture
    (`photo` makes a stored picture one Telegram takes) captioned with its buttons, or the
    results as an album followed by the caption and buttons as a message."""
    lead = sweep.jobs[0]
    tr = translator(lead.reply.get("lang"))
    chat_id, thread = reply["chat_id"], reply.get("thread_id")
    reply_to = _reply_to(reply)
    caption = sweep_caption(sweep, CAPTION_LIMIT, tr)
    if step == SWEEP_SHEET:
        alone = sweep_alone(sweep)
        if alone is None:
            raise ValueError(f"sweep {sweep.sweep_id} has no one picture to send")
        data = await asyncio.to_thread(photo, alone)
        await _upload(
            bot.send_photo(chat_id, InputFile(data, filename=f"sweep-{sweep.sweep_id}.jpg"), caption=caption,
                           reply_markup=sweep_buttons(sweep, tr), reply_parameters=reply_to,
                           message_thread_id=thread, read_timeout=read_timeout),
            sweep.sweep_id,
        )  # fmt: skip
    elif step == SWEEP_ALBUM:
        media = [
            InputMediaPhoto(
                await asyncio.to_thread(photo, sweep.results[job.id]),
                caption=f"{job.strength:g}",
                filename=sweep_file_name(job.strength, "jpg"),
            )
            for job in sweep.done[:ALBUM_MAX]
        ]
        await _upload(
            bot.send_media_group(chat_id, media, reply_parameters=reply_to, message_thread_id=thread,
                                 read_timeout=read_timeout),
            sweep.sweep_id,
        )  # fmt: skip
    elif step == SWEEP_BUTTONS:
        # sendMediaGroup takes no reply_markup (Bot API): the buttons come in a message of their own.
        await bot.send_message(chat_id, caption, reply_markup=sweep_buttons(sweep, tr), reply_parameters=reply_to,
                               message_thread_id=thread)  # fmt: skip
    else:
        raise ValueError(f"sweep {sweep.sweep_id}: no step {step!r}")


async def send_files(
    bot: Any,
    chat_id: int,
    named: list[tuple[str, bytes]],
    reply_to: ReplyParameters | None,
    thread: int | None,
    read_timeout: float,
) -> None:
    """Files as files (a sweep's results, named by strength): one album of documents (Bot API,
    sendMediaGroup: 2-10 documents, none mixed with photos), or one document alone."""
    if len(named) < ALBUM_MIN:
        for name, data in named:
            await bot.send_document(chat_id, InputFile(data, filename=name), reply_parameters=reply_to,
                                    message_thread_id=thread, disable_content_type_detection=True,
                                    read_timeout=read_timeout)  # fmt: skip
        return
    media = [
        InputMediaDocument(data, filename=name, disable_content_type_detection=True)
        for name, data in named[:ALBUM_MAX]  # a sweep has 3
    ]
    await bot.send_media_group(chat_id, media, reply_parameters=reply_to, message_thread_id=thread,
                               read_timeout=read_timeout)  # fmt: skip


async def _upload(call: Awaitable[Any], sweep_id: str) -> None:
    try:
        await call
    except TimedOut as exc:
        if not isinstance(exc.__cause__, httpx.ReadTimeout):
            raise
        # The whole upload was written and only the answer was late: Telegram has taken it.
        # Sending it again would post it twice.
        log.warning("sweep %s: Telegram took the pictures but answered too late; not sending them again", sweep_id)


def _reply_to(reply: dict[str, Any]) -> ReplyParameters | None:
    if not reply.get("message_id"):
        return None
    return ReplyParameters(int(reply["message_id"]), allow_sending_without_reply=True)
