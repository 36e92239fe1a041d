"""Each job's status message on Telegram: "Queued" with a Cancel button, sent as the request is
accepted, edited as the job moves (bot/chat/statuses.py decides when and what), and deleted once
the result is out (or edited into how the job ended). A sweep has one, keyed by its lead.

Telegram limits edits (about one a second per chat, 20 messages a minute per group): the budget
here is what bot/chat/status.py's throttle spaces them by. The status message's id is saved in
the job's reply, so after a restart the message is found and edited again."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from telegram import Bot, ReplyParameters
from telegram.error import BadRequest, ChatMigrated, Forbidden, RetryAfter, TelegramError

from bot.adapters.telegram.buttons import _cancel_markup
from bot.adapters.telegram.connection import short_error
from bot.adapters.telegram.delivery import ReplyRecords
from bot.adapters.telegram.moved_chats import MovedChats
from bot.adapters.telegram.texts import (
    DONE,
    TELEGRAM_STYLE,
    addressed_commands,
    position_step_matters,
    queued_text,
    status_text,
)
from bot.chat import texts
from bot.chat.status import FAILED, GONE, NOT_MODIFIED, SHOWN, Budget, EditOutcome, hold
from bot.chat.statuses import StatusFollower
from bot.chat.sweep import sweep_status
from bot.clock import Clock
from bot.core.types import Accepted, JobView
from bot.i18n import translator
from bot.service import RestyleService

log = logging.getLogger("bot.telegram")

PRIVATE_CHAT_SPACING_S = 1.0  # Telegram: about one message a second per chat


@dataclass(frozen=True)
class StatusMessage:
    """Where a job's status message is (its edits go through the StatusThrottle)."""

    chat_id: int
    message_id: int
    lang: str | None = None  # its member's language: how it ends is said in it


class TelegramStatuses:
    """The status messages of this run, and the follower (bot/chat/statuses.py) editing them."""

    def __init__(
        self,
        bot: Bot,
        service: RestyleService,
        clock: Clock,
        moves: MovedChats,
        replies: ReplyRecords,
        *,
        edit_interval_s: float,
        group_edit_interval_s: float,
    ) -> None:
        self.bot = bot
        self.service = service
        self.moves = moves
        self.replies = replies
        self.edit_interval_s = edit_interval_s
        self.group_edit_interval_s = group_edit_interval_s
        self.messages: dict[str, StatusMessage] = {}  # status key -> its status message
        self._clock = clock  # spaces status edits out (real time in tests too)
        self.follower = StatusFollower(_StatusChats(self), service, clock, name="tg-status")
        self.edits = self.follower.throttle

    def budget(self, group: bool) -> Budget:
        """In a group all jobs share one edit every group_edit_interval_s (Telegram allows about
        20 messages a minute per group, and results come first), and a queued place moves only by
        a step worth one of them; in a private chat about one a second (Telegram's per-chat limit)."""
        if group:
            return Budget(self.group_edit_interval_s, self.group_edit_interval_s, position_step_matters)
        return Budget(self.edit_interval_s, min(PRIVATE_CHAT_SPACING_S, self.edit_interval_s))

    async def open(self, result: Accepted, reply: dict[str, Any], lang: str | None) -> None:
        """Say "Queued" (with a Cancel button) and remember the status message. A sweep gets
        one, keyed by its lead (the Cancel button cancels the whole sweep)."""
        job_id = result.job_id
        self.follower.open(job_id)
        tr = translator(lang)
        text = queued_text(result.position, result.eta_s, tr)
        if result.sweep:
            lead = await self.service.jobs.job(job_id)
            if lead is not None:
                text = sweep_status(lead, tr)
        try:
            async with self.edits.sending(reply["chat_id"]):
                sent = await self.bot.send_message(
                    reply["chat_id"],
                    text,
                    reply_parameters=ReplyParameters(reply["message_id"], allow_sending_without_reply=True),
                    reply_markup=_cancel_markup(job_id, tr),
                    message_thread_id=reply.get("thread_id"),
                )
        except TelegramError as exc:
            # The result still arrives; only the progress messages are lost.
            log.warning("job %s: could not send the status message (%s)", job_id, short_error(exc))
            await self.follower.opened(job_id, False)
            return
        self.messages[job_id] = StatusMessage(sent.chat.id, sent.message_id, lang)
        self.edits.track(job_id, sent.chat.id, self.budget(bool(reply.get("group"))), shown=text,
                         position=result.position + 1, edited_at=self._clock.now())  # fmt: skip
        await self.replies.save(job_id, status_id=sent.message_id)
        for sibling in result.sweep[1:]:  # each job of a sweep finds the one status after a restart
            try:
                await self.service.jobs.add_to_reply(sibling, {"status_id": sent.message_id})
            except Exception:
                log.warning("job %s: could not save its reply data", sibling, exc_info=True)
        await self.follower.opened(job_id, True)  # an end or an update heard meanwhile is said now

    async def finish(self, job_id: str, text: str) -> None:
        """The job is over: end its status message with `text` (DONE deletes it)."""
        await self.follower.end(job_id, text)
        self.forget(job_id)

    def forget(self, job_id: str) -> None:
        """Drop the job's reply bookkeeping, unless its status message is still being sent."""
        if not self.follower.opening(job_id):
            self.replies.forget(job_id)


@dataclass
class _StatusChats:
    """Telegram's parts of the status lifecycle (bot/chat/statuses.py StatusPlace): plain-text
    lines, a status message found again from the job's reply after a restart, DONE deleting it."""

    statuses: TelegramStatuses

    def find(self, key: str, job: JobView) -> Budget | None:
        messages = self.statuses.messages
        if key not in messages:
            if not job.reply.get("status_id"):
                return None
            # After a restart: the status message we sent in the last run.
            messages[key] = StatusMessage(int(job.reply["chat_id"]), int(job.reply["status_id"]), job.reply.get("lang"))
        return self.statuses.budget(bool(job.reply.get("group")))

    def line(self, job: JobView) -> tuple[str, bool]:
        return (sweep_status(job), True) if job.sweep_id is not None else status_text(job)

    def held_line(self, job: JobView, held: float) -> str:
        text = texts.held_result(held, job.tier, TELEGRAM_STYLE, translator(job.reply.get("lang")))
        return addressed_commands(text, self.statuses.bot.username or "") if job.reply.get("group") else text

    async def edit(self, key: str, job: JobView, text: str, cancel: bool) -> EditOutcome:
        statuses = self.statuses
        status = statuses.messages.get(key)
        if status is None:
            return GONE
        try:
            await statuses.bot.edit_message_text(
                text, chat_id=status.chat_id, message_id=status.message_id,
                reply_markup=_cancel_markup(key, translator(status.lang)) if cancel else None,
            )  # fmt: skip
            return SHOWN
        except RetryAfter as exc:
            seconds = exc.retry_after if isinstance(exc.retry_after, int) else exc.retry_after.total_seconds()
            return hold(float(seconds))
        except ChatMigrated as exc:
            # The status message stayed in the old group: nothing left to edit.
            statuses.moves.moved(status.chat_id, int(exc.new_chat_id))
            return GONE
        except Forbidden as exc:
            log.info("job %s: status edits stop (%s)", key, short_error(exc))
            return GONE  # blocked, or removed from the group: every further edit fails too
        except BadRequest as exc:
            if "not modified" in str(exc).lower():
                return NOT_MODIFIED
            if "not found" in str(exc).lower():
                return GONE  # the member deleted it; stop editing
            log.info("job %s: status edit refused (%s)", key, short_error(exc))
            return FAILED
        except TelegramError as exc:
            log.info("job %s: status edit failed (%s)", key, short_error(exc))  # best effort
            return FAILED

    async def end(self, key: str, text: str) -> None:
        """Delete the status message (or, if Telegram will not, say `text`; DONE deletes)."""
        statuses = self.statuses
        bot = statuses.bot
        status = statuses.messages.pop(key, None)
        if status is None:
            job = await statuses.service.jobs.job(key)
            if job is None or not job.reply.get("status_id"):
                return
            status = StatusMessage(int(job.reply["chat_id"]), int(job.reply["status_id"]), job.reply.get("lang"))
        statuses.forget(key)
        said = translator(status.lang).gettext(text)
        try:
            if text == DONE:
                await bot.delete_message(status.chat_id, status.message_id)
            else:
                await bot.edit_message_text(said, chat_id=status.chat_id, message_id=status.message_id)
        except TelegramError as exc:
            if text == DONE:
                try:
                    await bot.edit_message_text(said, chat_id=status.chat_id, message_id=status.message_id)
                except TelegramError:
                    pass
            log.info("job %s: could not finish its status message (%s)", key, short_error(exc))
