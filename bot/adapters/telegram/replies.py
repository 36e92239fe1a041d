"""Answering a member's message on Telegram, one way for the adapter and the routers beside it
(the Stars router never imports the adapter), and answering what needs no more than a try."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.error import TelegramError

from bot.adapters.telegram.connection import short_error
from bot.adapters.telegram.texts import addressed_commands

log = logging.getLogger("bot.adapters.telegram")


async def answer(bot: Bot, message: Message, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """Reply to `message` in its chat and topic. In a group the commands the text names are
    addressed to this bot (`/upgrade@YourBot`): with privacy mode on, a bare command reaches only
    the last bot that spoke there. The reply survives the member deleting their message
    (allow_sending_without_reply); a failure is logged, the member's update is not retried."""
    if message.chat.type != "private":
        text = addressed_commands(text, bot.username or "")
    try:
        await bot.send_message(
            message.chat.id,
            text,
            reply_parameters=ReplyParameters(message.message_id, allow_sending_without_reply=True),
            message_thread_id=message.message_thread_id if message.is_topic_message else None,
            reply_markup=markup,
        )
    except TelegramError as exc:
        log.warning("could not answer a member (%s)", short_error(exc))


async def quietly(awaitable: Awaitable[Any]) -> None:
    """A call whose failure changes nothing for the member (answering a press): only logged."""
    try:
        await awaitable
    except TelegramError as exc:
        log.info("Telegram call failed (%s)", short_error(exc))
