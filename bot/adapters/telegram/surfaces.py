"""Where a member asked something on Telegram, as the platform-neutral flows in bot/chat/ see it
(bot/chat/surface.py): a command's chat, a restyle request's message, a pressed button. Each is
made per update from the message or press and the front end's parts it answers with (ChatParts),
never the adapter itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot, CallbackQuery, Message, ReplyParameters
from telegram.error import TelegramError

from bot.adapters.telegram.connection import short_error
from bot.adapters.telegram.delivery import DOCUMENT_LIMIT_BYTES, Delivering, TelegramDelivery
from bot.adapters.telegram.parsing import _Picture, _picture_of, _replied
from bot.adapters.telegram.pictures import fetch_picture, too_big
from bot.adapters.telegram.replies import answer, quietly
from bot.adapters.telegram.statuses import TelegramStatuses
from bot.adapters.telegram.sweep import send_files
from bot.adapters.telegram.texts import NO_PICTURE, NOT_A_PICTURE, TELEGRAM_STYLE, _with_example, with_example
from bot.chat.delivery import deliver_result
from bot.chat.surface import Found, Style
from bot.commands import EXAMPLE, CommandError
from bot.core.types import Accepted, Delivery, JobView, Member, Refused
from bot.i18n import Translator, translator

log = logging.getLogger("bot.telegram")

CALLBACK_ANSWER_LIMIT = 200  # Bot API, answerCallbackQuery: text of 0-200 characters


@dataclass(frozen=True)
class ChatParts:
    """What the surfaces answer with: the bot, the status messages, delivery, and the [access]
    check of a message's chat."""

    bot: Bot
    statuses: TelegramStatuses
    delivery: TelegramDelivery
    place_refusal: Callable[[Message, str | None], Refused | None]
    max_download_bytes: int


@dataclass
class CommandChat:
    """Where a command was given (bot/chat/surface.py): answered in the same chat."""

    parts: ChatParts
    message: Message
    style: Style = field(default_factory=lambda: TELEGRAM_STYLE)

    @property
    def private(self) -> bool:
        return self.message.chat.type == "private"

    async def reply(self, text: str) -> None:
        await answer(self.parts.bot, self.message, text)

    async def finish_status(self, job_id: str, text: str) -> None:
        await self.parts.statuses.finish(job_id, text)


@dataclass
class RestyleChat:
    """Where a restyle request came (bot/chat/surface.py RestyleSurface): a /restyle message
    replying to a picture, or a picture with /restyle as its caption. Everything is answered in
    the chat: Telegram has no message only one member of a group sees."""

    parts: ChatParts
    message: Message
    caption_form: bool
    lang: str | None
    picture: _Picture | None = None

    @property
    def max_download_bytes(self) -> int:
        return self.parts.max_download_bytes

    def place_refusal(self, lang: str | None) -> Refused | None:
        return self.parts.place_refusal(self.message, lang)

    async def find_picture(self) -> Found | str:
        tr = translator(self.lang)
        source = self.message if self.caption_form else _replied(self.message)
        if source is None:
            return with_example(NO_PICTURE, tr)
        self.picture = _picture_of(source)
        if self.picture is None:
            if not self.caption_form:
                return with_example(NOT_A_PICTURE, tr)
            return tr.gettext(
                "That file is not a picture. Send a photo, or a picture file (PNG, JPEG, WebP), with "
                "/restyle as its caption. For example:\n{example}"
            ).format(example=EXAMPLE)
        return Found(self.picture.size)

    def too_big(self, size: int | None, tr: Translator) -> str:
        return too_big(size, self.max_download_bytes, tr)

    def bad_command(self, error: CommandError, tr: Translator) -> str:
        return _with_example(error.render(tr), tr)

    async def download(self) -> bytes | str:
        assert self.picture is not None  # find_picture found it
        return await fetch_picture(self.parts.bot, self.picture, self.max_download_bytes, translator(self.lang))

    async def refuse(self, text: str) -> None:
        await answer(self.parts.bot, self.message, text)

    def refusal_text(self, refused: Refused) -> str:
        return refused.text

    async def reply_data(self) -> dict[str, Any] | None:
        assert self.picture is not None  # find_picture found it
        message = self.message
        return {
            "chat_id": message.chat.id,
            "message_id": message.message_id,
            "thread_id": message.message_thread_id if message.is_topic_message else None,
            "group": message.chat.type != "private",
            "picture_file_id": self.picture.file_id,
            "picture_kind": self.picture.kind,
        }

    async def not_started(self) -> None:
        pass  # nothing was put in the chat before the job was refused

    async def answered_already(self) -> None:
        pass  # nothing was put in the chat before the service saw the request again

    async def queued(self, accepted: Accepted, reply: dict[str, Any]) -> None:
        await self.parts.statuses.open(accepted, reply, self.lang)


@dataclass
class PressChat:
    """Where a button was pressed (bot/chat/surface.py PressSurface). Telegram takes one answer
    per press (answerCallbackQuery: a passing toast or an alert of at most 200 characters, and
    the button spins until it comes); what is said after that, or is longer, is a message in the
    chat answering the buttons' message. Files and pictures are sent there too: Telegram has no
    message only one member of a group sees."""

    parts: ChatParts
    query: CallbackQuery
    message: Message
    member: Member
    job_id: str  # the pressed button's
    answered: bool = False
    file_limit: int = DOCUMENT_LIMIT_BYTES
    files_limit: int = DOCUMENT_LIMIT_BYTES  # each document of an album has the whole limit
    result_name: str = "restyle"

    @property
    def picture_limit(self) -> int:
        return self.parts.delivery.photo_limit_bytes

    @property
    def _thread(self) -> int | None:
        return self.message.message_thread_id if self.message.is_topic_message else None

    def _reply_to(self) -> ReplyParameters:
        return ReplyParameters(self.message.message_id, allow_sending_without_reply=True)

    async def _answer_query(self, text: str | None = None, *, alert: bool = False) -> None:
        if not self.answered:
            self.answered = True
            await quietly(self.query.answer(text, show_alert=alert))

    async def notice(self, text: str) -> None:
        if not self.answered and len(text) <= CALLBACK_ANSWER_LIMIT:
            await self._answer_query(text, alert=True)
            return
        await self._answer_query()
        await answer(self.parts.bot, self.message, text)

    async def acknowledge(self, text: str | None = None) -> None:
        await self._answer_query(text)

    def place_refusal(self, lang: str | None) -> Refused | None:
        return self.parts.place_refusal(self.message, lang)

    async def reply_data(self, job: JobView) -> dict[str, Any]:
        return {
            "chat_id": self.message.chat.id,
            "message_id": self.message.message_id,  # the buttons message: the new result answers it
            "thread_id": job.reply.get("thread_id"),
            "group": job.reply.get("group", False),
            "picture_file_id": job.reply.get("picture_file_id"),
            "picture_kind": job.reply.get("picture_kind"),
            "parent": job.id,
        }

    async def queued(self, accepted: Accepted, reply: dict[str, Any]) -> None:
        await self.parts.statuses.open(accepted, reply, self.member.lang)

    async def not_started(self) -> None:
        """reply_data sent nothing: the status message comes only with `queued`."""

    async def cancelling(self, job_id: str) -> None:
        # Before the service cancels: a progress edit starting meanwhile could land after "Cancelled".
        self.parts.statuses.follower.stop(job_id)

    async def finish_status(self, job_id: str, text: str) -> None:
        await self.parts.statuses.finish(job_id, text)

    async def send_file(self, name: str, data: bytes) -> None:
        try:
            await self.parts.delivery.send_file(self.job_id, self.message.chat.id, data, name, self._reply_to(),
                                          self._thread)  # fmt: skip
        except TelegramError as exc:
            log.warning("job %s: could not send %s (%s)", self.job_id, name, short_error(exc))

    async def send_files(self, files: list[tuple[str, bytes]]) -> None:
        try:
            await send_files(self.parts.bot, self.message.chat.id, files, self._reply_to(), self._thread,
                             self.parts.delivery.media_read_timeout_s)  # fmt: skip
        except TelegramError as exc:
            log.warning("job %s: could not send the files (%s)", self.job_id, short_error(exc))

    async def send_picture(self, data: bytes, caption: str) -> None:
        try:
            photo = await asyncio.to_thread(self.parts.delivery.photo_payload, data)  # inside Telegram's photo sides
            await self.parts.bot.send_photo(
                self.message.chat.id, photo, caption=caption, reply_parameters=self._reply_to(),
                message_thread_id=self._thread, read_timeout=self.parts.delivery.media_read_timeout_s,
            )  # fmt: skip
        except TelegramError as exc:
            log.warning("job %s: could not send the side-by-side picture (%s)", self.job_id, short_error(exc))

    async def send_result(self, delivery: Delivery) -> None:
        """As a delivered result (album and buttons), answering the buttons' message."""
        job = delivery.job
        reply = {
            "chat_id": self.message.chat.id,
            "message_id": self.message.message_id,
            "thread_id": job.reply.get("thread_id"),
            "picture_file_id": job.reply.get("picture_file_id"),
            "picture_kind": job.reply.get("picture_kind"),
        }
        try:
            async with self.parts.delivery.sending(self.message.chat.id):
                # Not a delivery of the service's: nothing to record (a second press sends it again).
                await deliver_result(self.parts.delivery.service, Delivering(self.parts.delivery, job, reply, delivery),
                                     job, recorded=False)  # fmt: skip
        except TelegramError as exc:
            log.warning("job %s: could not send the kept result (%s)", job.id, short_error(exc))
