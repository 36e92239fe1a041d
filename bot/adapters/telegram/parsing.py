"""A Telegram update, read for what the front end needs: whether it is a request for this bot,
who posted it, the message it replies to and the picture in a message."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from telegram import Message, PhotoSize, Update
from telegram.error import BadRequest

# A caption that is a /restyle command (CommandHandler ignores captions). Group 1: the bot it
# is addressed to, if any.
CAPTION_COMMAND = re.compile(r"^/restyle(?:@(\w+))?(?:\s|$)", re.IGNORECASE)


# Senders that are not a person (Bot API, Message.from: "For messages sent to channels and for
# messages sent on behalf of chats, the field contains a fake sender user"): Telegram itself
# (automatic forwards from a linked channel), GroupAnonymousBot, Channel_Bot.
NOT_MEMBER_IDS = frozenset({777000, 1087968824, 136817688})


@dataclass
class _Picture:
    file_id: str
    kind: str  # "photo" | "document"
    size: int | None


def _is_request(update: Update, bot_username: str) -> bool:
    """A command for this bot (text, or a /restyle caption) or a button press: what the bot
    answers. Plain chat, payments and commands addressed to other bots are not."""
    if update.callback_query is not None:
        return True
    message = update.message
    if message is None or message.successful_payment is not None:
        return False
    if message.text is not None:
        word = message.text.split(maxsplit=1)[0] if message.text.strip() else ""
        command, _, addressed = word.partition("@")
        return (
            command.startswith("/")
            and len(command) > 1
            and (not addressed or addressed.lower() == bot_username.lower())
        )
    match = CAPTION_COMMAND.match(message.caption or "")
    return match is not None and (match.group(1) is None or match.group(1).lower() == bot_username.lower())


def _posted_as_chat(message: Message) -> bool:
    """Posted on behalf of a chat (an anonymous admin, a channel, an automatic forward from
    the linked channel) rather than by a person."""
    author = message.from_user
    return message.sender_chat is not None or (author is not None and author.id in NOT_MEMBER_IDS)


def _replied(message: Message) -> Message | None:
    """The message a command replies to; in forum topics every message 'replies' to the topic's
    first service message, which is not a real reply."""
    replied = message.reply_to_message
    if replied is not None and replied.forum_topic_created is not None:
        replied = None
    if replied is None and message.external_reply is not None:
        return message.external_reply  # type: ignore[return-value]  # has .photo / .document too
    return replied


def _picture_of(message: Any) -> _Picture | None:
    photos: tuple[PhotoSize, ...] = tuple(getattr(message, "photo", None) or ())
    if photos:
        largest = max(photos, key=lambda p: (p.width * p.height, p.file_size or 0))
        return _Picture(largest.file_id, "photo", largest.file_size)
    document = getattr(message, "document", None)
    if document is not None and (document.mime_type or "").startswith("image/"):
        return _Picture(document.file_id, "document", document.file_size)
    sticker = getattr(message, "sticker", None)
    if sticker is not None and not sticker.is_animated and not sticker.is_video:
        # A static sticker is a WebP picture (animated ones are TGS / WebM: not pictures).
        return _Picture(sticker.file_id, "sticker", sticker.file_size)
    return None


def _stale_file_id(exc: BadRequest) -> bool:
    text = str(exc).lower()
    return "file identifier" in text or "file_id" in text or "remote file" in text
