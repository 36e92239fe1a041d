"""What the Telegram front end says: its fixed answers, status and result texts, and the style
(bot/chat/surface.py) the shared chat flow writes with. Pure functions of their arguments.
Each text is an English msgid (bot/i18n.py): constants are said with `tr.gettext(CONSTANT)`
(their {example} filled in), functions take the member's translator."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from telegram import BotCommand

from bot.chat.surface import Style, plain
from bot.chat.texts import result_facts
from bot.commands import EXAMPLE
from bot.core.types import JobView
from bot.i18n import N_, Text, Translator, translator

CAPTION_LIMIT = 1024
ENGLISH = translator(None)


NO_PICTURE = N_(
    "Reply to a picture with /restyle and the new style, or send a picture with the command as "
    "its caption. For example:\n{example}"
)


NOT_A_PICTURE = N_(
    "That message has no picture in it. Reply to a photo (or a picture sent as a file) with "
    "/restyle and the new style. For example:\n{example}"
)


BAN_USAGE = N_(
    "Reply to the member's message with /{command} and a reason, or give their Telegram id:\n"
    "/{command} 123456789 {example}"
)


TEXT_LIMIT = 4096  # Telegram's message length


POST_AS_YOURSELF = N_(
    "Post as yourself to use me: when you post as the group or a channel, I can't tell whose "
    "restyles and quota they are."
)


NO_RIGHTS_TEXT = N_(
    "I could not post your restyled picture in the group: its admins have not allowed me to send "
    "photos there. Ask them to, or send me the picture here in our private chat."
)


START_TEXT = N_(
    "Hi! I restyle pictures with a diffusion model.\n\n"
    "Reply to a photo with /restyle and a style, for example:\n{example}\n\n"
    "/help shows every option, /me your tier and what is left today."
)

# How a status message ends (bot/adapters/telegram/statuses.py TelegramStatuses.finish): "done" deletes it.
DONE = N_("Done ✓")
FAILED = N_("Failed.")
CANCELLED = N_("Cancelled.")


def with_example(text: str, tr: Translator = ENGLISH) -> str:
    """A constant above in the member's language, the example command filled in."""
    return tr.gettext(text).format(example=EXAMPLE)


def eta_text(seconds: float | None, tr: Translator = ENGLISH) -> str:
    if seconds is None:
        return tr.gettext("soon")
    if seconds < 60:
        return tr.gettext("about {seconds} s").format(seconds=max(5, int(round(seconds / 5.0)) * 5))
    return tr.gettext("about {minutes} min").format(minutes=max(1, round(seconds / 60)))


def queued_text(position: int, eta_s: float | None, tr: Translator = ENGLISH) -> str:
    """`position`: waiting jobs ahead (0: next)."""
    return tr.gettext("Queued: #{place} in line, {eta}").format(place=position + 1, eta=eta_text(eta_s, tr))


def status_text(job: JobView) -> tuple[str, bool]:
    """(text, with Cancel button) for a job's status message, in its member's language."""
    tr = translator(job.reply.get("lang"))
    if job.status == "queued":
        return queued_text(job.position or 0, job.eta_s, tr), True
    if job.status == "running":
        if job.progress:
            return tr.gettext("Restyling… {percent}%").format(percent=int(job.progress * 100)), True
        return tr.gettext("Restyling…"), True
    ended = {"done": DONE, "failed": FAILED, "cancelled": CANCELLED}.get(job.status)
    return (tr.gettext(ended) if ended else job.status), False


_BARE_COMMAND = re.compile(r"(?<![\w@/])/(restyle|help|me|upgrade|cancel|link|terms|paysupport)\b(?!@)")


def addressed_commands(text: str, bot_username: str) -> str:
    """Commands in a text for a group, written /cmd@ThisBot: with privacy mode on and another
    bot in the group, Telegram gives a bare /cmd to the last bot that spoke there."""
    if not bot_username:
        return text
    return _BARE_COMMAND.sub(lambda m: f"/{m.group(1)}@{bot_username}", text)


def position_step_matters(shown: int | None, new: int) -> bool:
    """Whether a group's status message should move from place `shown` to `new`: always near
    the front, elsewhere only by a quarter of the way (at least two places)."""
    if shown is None:
        return True
    if new == shown:
        return False
    return new <= 3 or abs(shown - new) >= max(2, shown // 4)


def result_caption(job: JobView) -> str:
    """The result's caption, in its member's language (the option names stay: they are the grammar)."""
    tr = translator(job.reply.get("lang"))
    facts = result_facts(job, tr)
    if job.seconds is not None:
        facts += tr.gettext(" · {seconds:.1f} s").format(seconds=job.seconds)
    negative = f"\nno: {job.negative_prompt}" if job.negative_prompt else ""
    room = CAPTION_LIMIT - len(facts) - len(negative) - 4
    prompt = job.prompt if len(job.prompt) <= room else job.prompt[: room - 1] + "…"
    return f"“{prompt}”{negative}\n{facts}"[:CAPTION_LIMIT]


def _utc(strftime: str) -> Callable[[float], str]:
    return lambda at: datetime.fromtimestamp(at, UTC).strftime(strftime)


def _member_named(platform: str, user_id: str, name: str) -> str:
    if platform != "telegram":
        return f"{platform}:{user_id}"
    return f"{name} ({user_id})" if name else user_id


def _place(entry: dict[str, Any]) -> Text | None:
    if entry.get("platform") != "telegram":
        return None
    reply = entry.get("reply") or {}
    return Text("chat {chat}", {"chat": reply.get("chat_id")}) if reply.get("group") else Text("a private chat")


# Plain text (no parse_mode): Telegram shows what members typed, asterisks and all.
TELEGRAM_STYLE: Style = Style(
    bold=plain,
    code=plain,
    date=_utc("%Y-%m-%d %H:%M UTC"),
    moment=_utc("%m-%d %H:%M"),
    times_note=N_(" (times UTC)"),
    member=_member_named,
    place=_place,
    queue_log_hint="/queue log",
    with_style=lambda name: f"/restyle style={name}",
    text_limit=TEXT_LIMIT,
)


def _with_example(error: str, tr: Translator = ENGLISH) -> str:
    if EXAMPLE in error:
        return error
    return error + "\n" + tr.gettext("For example: {example}").format(example=EXAMPLE)


# (command, description): the names stay English in every language (they are what members type,
# and what /help, the README and shared recipes say); the descriptions are translated.
COMMAND_TEXTS = [
    ("restyle", N_("Reply to a picture: /restyle <new style>")),
    ("styles", N_("Ready-made styles: /restyle style=neon")),
    ("me", N_("Your tier and what is left today")),
    ("upgrade", N_("Skip the queue and get more restyles")),
    ("cancel", N_("Cancel your waiting jobs")),
    ("link", N_("Share your tier with the bot on Discord")),
    ("terms", N_("Terms of the paid plans")),
    ("paysupport", N_("Help with a payment")),
    ("help", N_("How to use the bot, with examples")),
]


def commands_in(lang: str | None) -> list[BotCommand]:
    """The command list with its descriptions in `lang` (None: English, the default list)."""
    tr = translator(lang)
    return [BotCommand(name, tr.gettext(description)) for name, description in COMMAND_TEXTS]


COMMANDS = commands_in(None)
