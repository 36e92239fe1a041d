"""How a job's outcome is sent on Telegram: a result as its steps (an album of the original and
the result, a message of buttons, the file asked for), a failure as one message, a sweep through
bot/adapters/telegram/sweep.py; the order and the never-twice rule are bot/chat/delivery.py's.

Telegram's errors are turned here into what the service's retry schedule needs: DeliveryFailed
to try again later, refused_for_good where Telegram would refuse every time. A group that became
a supergroup or a forum topic that went away gets another go at once, in the new place.

What a delivery learns (a chat's new id, a topic gone) is added to the job's reply data
(ReplyRecords), which the service keeps in the database, so a retry or a restart delivers to the
new place; the steps sent are recorded by the shared flow itself."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from telegram import Bot, InputFile, InputMediaPhoto, ReplyParameters
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut

from bot.adapters.telegram.buttons import result_buttons
from bot.adapters.telegram.connection import short_error
from bot.adapters.telegram.moved_chats import MovedChats
from bot.adapters.telegram.parsing import _stale_file_id
from bot.adapters.telegram.pictures import photo_payload
from bot.adapters.telegram.sweep import _reply_to, send_sweep_step
from bot.adapters.telegram.texts import NO_RIGHTS_TEXT, result_caption
from bot.chat.delivery import (
    ALBUM,
    BUTTONS,
    FILE,
    deliver_failure,
    deliver_result,
    deliver_sweep,
    failure_reason,
    refused_for_good,
    sweep_lead,
)
from bot.commands import OUTPUT_FORMATS
from bot.core.types import Delivery, DeliveryFailed, JobView, Member, Refused, SweepDelivery
from bot.i18n import N_, translator
from bot.service import RestyleService

log = logging.getLogger("bot.telegram")

DOCUMENT_LIMIT_BYTES = 50_000_000  # other uploads (cloud Bot API)


class ReplyRecords:
    """What this run added to each job's reply data (the status message's id, a chat's new id,
    a topic gone), kept here too: a delivery reads the job as it was claimed, and a write the
    database missed must still be known to the next try in this run."""

    def __init__(self, add_to_reply: Callable[[str, dict[str, Any]], Awaitable[None]]) -> None:
        self._add_to_reply = add_to_reply
        self._changes: dict[str, dict[str, Any]] = {}  # job id -> its reply's changes

    def current(self, job: JobView) -> dict[str, Any]:
        return {**job.reply, **self._changes.get(job.id, {})}

    async def save(self, job_id: str, **changes: Any) -> None:
        """Add `changes` to a job's reply data in the database (only those keys change there)."""
        self._changes.setdefault(job_id, {}).update(changes)
        try:
            await self._add_to_reply(job_id, changes)
        except Exception:
            log.warning("job %s: could not save its reply data", job_id, exc_info=True)

    def forget(self, job_id: str) -> None:
        self._changes.pop(job_id, None)


class TelegramDelivery:
    """Sends the service's deliveries (FrontEnd deliver_result / _failure / _sweep) and the
    files and kept results a button asks for."""

    def __init__(
        self,
        bot: Bot,
        service: RestyleService,
        replies: ReplyRecords,
        moves: MovedChats,
        sending: Callable[[int], contextlib.AbstractAsyncContextManager[None]],
        connected_within: Callable[[float], Awaitable[bool]],
        *,
        photo_limit_bytes: int,
        media_read_timeout_s: float,
        ready_wait_s: float,
    ) -> None:
        self.bot = bot
        self.service = service
        self.replies = replies
        self.moves = moves
        self.sending = sending  # a result going out in a chat: its status edits wait meanwhile
        self._connected_within = connected_within
        self.photo_limit_bytes = photo_limit_bytes
        self.media_read_timeout_s = media_read_timeout_s
        self.ready_wait_s = ready_wait_s

    async def result(self, delivery: Delivery) -> None:
        job = delivery.job
        await self._deliver(
            job, lambda reply: deliver_result(self.service, Delivering(self, job, reply, delivery), job)
        )

    async def failure(self, job: JobView) -> None:
        await self._deliver(job, lambda reply: deliver_failure(self.service, Delivering(self, job, reply, None), job))

    async def sweep(self, sweep: SweepDelivery) -> None:
        """The sweep as one answer to its request (bot/adapters/telegram/sweep.py), sent to where
        its lead job's request came."""
        lead = sweep_lead(sweep)
        await self._deliver(
            lead, lambda reply: deliver_sweep(self.service, Delivering(self, lead, reply, sweep), sweep)
        )

    async def _deliver(self, job: JobView, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Run `send`, turning Telegram's errors into what the service's retry schedule needs."""
        # The service resumes deliveries before front ends start, and Telegram may be down
        # for a moment: wait a little before handing the job back to the retry schedule.
        if not await self._connected_within(self.ready_wait_s):
            raise DeliveryFailed("Telegram is not connected")
        reply = self.replies.current(job)
        moved = self.moves.now(int(reply["chat_id"]))
        if moved is not None:
            await self.replies.save(job.id, chat_id=moved)
            reply = {**reply, "chat_id": moved}
        for _ in range(3):  # another go only after a group became a supergroup or a topic went away
            try:
                async with self.sending(int(reply["chat_id"])):
                    await send(reply)
                return
            except ChatMigrated as exc:
                self.moves.moved(int(reply["chat_id"]), int(exc.new_chat_id))
                await self.replies.save(job.id, chat_id=exc.new_chat_id)
                reply = {**reply, "chat_id": exc.new_chat_id}
            except Forbidden as exc:
                log.warning("job %s: the member blocked the bot or left the chat (%s); the result is kept",
                            job.id, short_error(exc))  # fmt: skip
                raise await refused_for_good(f"forbidden: {short_error(exc)}") from None
            except BadRequest as exc:
                text = str(exc).lower()
                if ("topic_closed" in text or "thread not found" in text) and reply.get("thread_id") is not None:
                    # The forum topic was closed or deleted: the chat itself still takes messages.
                    log.info("job %s: its topic is gone (%s); delivering outside the topic", job.id, short_error(exc))
                    await self.replies.save(job.id, thread_id=None)
                    reply = {**reply, "thread_id": None}
                    continue
                if "chat not found" in text:
                    raise await refused_for_good(f"chat gone: {short_error(exc)}") from None
                if "not enough rights" in text:
                    log.warning(
                        "job %s: no right to post in chat %s (%s)", job.id, reply.get("chat_id"), short_error(exc)
                    )
                    tell = functools.partial(
                        self._tell_privately, job, translator(job.reply.get("lang")).gettext(NO_RIGHTS_TEXT)
                    )
                    raise await refused_for_good(f"no rights in the chat: {short_error(exc)}", tell) from None
                # The same request gets the same answer: retrying for 20 minutes cannot help.
                log.error("job %s: Telegram refused the delivery (%s)", job.id, short_error(exc))
                raise await refused_for_good(f"refused by Telegram: {short_error(exc)}") from None
            except (NetworkError, RetryAfter) as exc:  # NetworkError includes TimedOut
                raise DeliveryFailed(f"network: {short_error(exc)}") from None
            except TelegramError as exc:
                raise DeliveryFailed(short_error(exc)) from None
        raise DeliveryFailed("the chat moved twice")

    async def _tell_privately(self, job: JobView, text: str) -> None:
        try:
            await self.bot.send_message(int(job.user_id), text)
        except TelegramError as exc:  # never started the bot, or blocked it: nothing more to do
            log.info("job %s: could not tell the member privately (%s)", job.id, short_error(exc))

    def photo_payload(self, data: bytes) -> bytes:
        """`data` as a photo Telegram takes (its size and sides; bot/adapters/telegram/pictures.py)."""
        return photo_payload(data, self.photo_limit_bytes)

    async def send_result_step(self, delivery: Delivery, reply: dict[str, Any], step: str) -> None:
        """One step of a result (bot/chat/delivery.py chooses them): the album (original +
        result; an album takes no buttons, Bot API sendMediaGroup), its buttons, the file asked for."""
        job = delivery.job
        chat_id, thread = reply["chat_id"], reply.get("thread_id")
        if step == ALBUM:
            result_bytes = await asyncio.to_thread(self.photo_payload, delivery.result_picture)
            result_name = f"{job.id}.jpg"
            caption = result_caption(job)

            async def album(original: Any) -> None:
                media = [
                    InputMediaPhoto(original, filename="original.jpg" if isinstance(original, bytes) else None),
                    InputMediaPhoto(result_bytes, caption=caption, filename=result_name),
                ]
                try:
                    await self.bot.send_media_group(chat_id, media, reply_parameters=_reply_to(reply), message_thread_id=thread,
                                                    read_timeout=self.media_read_timeout_s)  # fmt: skip
                except TimedOut as exc:
                    if not isinstance(exc.__cause__, httpx.ReadTimeout):
                        raise
                    # The whole upload was written and only the answer was late: Telegram has
                    # taken it. Sending it again would post the album twice.
                    log.warning("job %s: Telegram took the album but answered too late; not sending it again", job.id)

            file_id = reply.get("picture_file_id") if reply.get("picture_kind") == "photo" else None
            if file_id:
                try:
                    await album(file_id)  # no re-upload of the original
                except BadRequest as exc:
                    if not _stale_file_id(exc):
                        raise
                    # A file_id from another bot token, or one Telegram has forgotten.
                    log.info("job %s: the original's file_id was refused (%s); uploading it", job.id, short_error(exc))
                    await album(await asyncio.to_thread(self.photo_payload, delivery.input_picture))
            else:
                await album(await asyncio.to_thread(self.photo_payload, delivery.input_picture))
        elif step == BUTTONS:
            tr = translator(job.reply.get("lang"))
            await self.bot.send_message(
                chat_id,
                tr.gettext("More from this picture:"),
                reply_parameters=_reply_to(reply),
                reply_markup=result_buttons(job, self._compare_url(job.id), tr),
                message_thread_id=thread,
            )
        elif step == FILE and job.output_format:
            ext = OUTPUT_FORMATS[job.output_format].extension
            data = await self.service.results.result_file(
                Member("telegram", job.user_id), job.id, job.output_format, DOCUMENT_LIMIT_BYTES
            )
            if not isinstance(data, Refused):
                await self.send_file(job.id, chat_id, data, f"restyle-{job.id}.{ext}", _reply_to(reply), thread)
        else:
            raise ValueError(f"job {job.id}: no result step {step!r}")

    def _compare_url(self, job_id: str) -> str | None:
        links = self.service.compare_links
        return links.url(job_id, self.service.clock.now()) if links is not None else None

    async def send_failure(self, job: JobView, reply: dict[str, Any]) -> None:
        tr = translator(job.reply.get("lang"))
        error = failure_reason(job, tr, N_("the picture engine failed."))
        await self.bot.send_message(
            reply["chat_id"],
            tr.gettext("Sorry, that restyle did not work: {error}").format(error=error),
            reply_parameters=_reply_to(reply),
            message_thread_id=reply.get("thread_id"),
        )

    async def send_file(
        self,
        job_id: str,
        chat_id: int,
        data: bytes,
        filename: str,
        reply_to: ReplyParameters | None,
        thread: int | None,
    ) -> None:
        """A file as a file: without disable_content_type_detection Telegram turns a WebP
        document into a sticker (Bot API, sendDocument)."""
        sent = await self.bot.send_document(
            chat_id, InputFile(data, filename=filename), reply_parameters=reply_to, message_thread_id=thread,
            disable_content_type_detection=True, read_timeout=self.media_read_timeout_s,
        )  # fmt: skip
        if sent.document is None:
            log.error("job %s: Telegram did not keep %s as a file (it came back as %s)", job_id, filename,
                      "a sticker" if sent.sticker is not None else "another kind of message")  # fmt: skip


@dataclass
class Delivering:
    """Telegram's part of one delivery (bot/chat/delivery.py DeliverySurface): each step is its
    own message (or album), sent to `reply`'s chat."""

    delivery: TelegramDelivery
    job: JobView
    reply: dict[str, Any]
    what: Delivery | SweepDelivery | None  # None: the job's failure

    async def send(self, step: str) -> None:
        delivery = self.delivery
        if isinstance(self.what, Delivery):
            await delivery.send_result_step(self.what, self.reply, step)
        elif isinstance(self.what, SweepDelivery):
            await send_sweep_step(delivery.bot, self.what, self.reply, step, photo=delivery.photo_payload,
                                  read_timeout=delivery.media_read_timeout_s)  # fmt: skip
        else:
            await delivery.send_failure(self.job, self.reply)
