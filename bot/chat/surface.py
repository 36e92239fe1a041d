"""What the chat flow needs from a platform: a place to answer and the platform's way of writing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.i18n import Text


@dataclass(frozen=True)
class Style:
    """How one platform writes what every platform says. Telegram's messages are plain text;
    Discord's are Markdown, and its `<t:…>` timestamps show in each reader's own time zone."""

    bold: Callable[[str], str]
    code: Callable[[str], str]
    date: Callable[[float], str]  # a day, e.g. when a tier runs out
    moment: Callable[[float], str]  # a day and time, in a job log
    times_note: str  # said once above a job log, e.g. " (times UTC)": a msgid, said in the reader's language
    member: Callable[[str, str, str], str]  # (platform, user id, name) -> how to name a member
    # a job log entry's place on this platform (a Text: said in the reader's language); None: another's
    place: Callable[[dict[str, Any]], str | Text | None]
    queue_log_hint: str  # how an admin asks for the job log here
    with_style: Callable[[str], str]  # how a member asks for a recipe here, e.g. "/restyle style=neon"
    text_limit: int  # characters in one message


def plain(text: str) -> str:
    return text


class CommandSurface(Protocol):
    """Where one command was given: its answer goes to the member who gave it."""

    # Read-only (properties here): a dataclass field or a property gives each.
    @property
    def style(self) -> Style: ...

    @property
    def private(self) -> bool:
        """Only the member reads the answer (a private chat, an ephemeral reply)."""
        ...

    async def reply(self, text: str) -> None: ...

    async def finish_status(self, job_id: str, text: str) -> None:
        """The job ended without a result (cancelled): end its status message with `text`, an
        English msgid the surface says in the language of the job's member (saved with the job)."""
        ...
