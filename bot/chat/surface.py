"""What the chat flow needs from a platform: a place to answer and the platform's way of writing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.commands import CommandError
from bot.core.types import Accepted, Delivery, JobView, Refused
from bot.i18n import Text, Translator


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


class PressSurface(Protocol):
    """Where a button of a result, a status or a sweep was pressed: what the shared press flow
    (bot/chat/presses.py) asks of a platform. Each platform keeps its own rules inside: how many
    answers a press takes, when it must be acknowledged, what a member alone can read."""

    # Read-only (properties here): a dataclass field or a property gives each.
    @property
    def file_limit(self) -> int:
        """Bytes of one file sent for a press (a result as PNG / WebP / JPEG)."""
        ...

    @property
    def files_limit(self) -> int:
        """Bytes of each of a sweep's files, sent together."""
        ...

    @property
    def picture_limit(self) -> int:
        """Bytes of the side-by-side picture."""
        ...

    @property
    def result_name(self) -> str:
        """How a result's file is named here: `<result_name>-<job id>.png`."""
        ...

    async def notice(self, text: str) -> None:
        """A word for the presser alone, to read before going on (a refusal, "too late")."""
        ...

    async def acknowledge(self, text: str | None = None) -> None:
        """The press is taken; `text`: a passing word where the platform shows one ("Sending
        the PNG file…"). Every press ends acknowledged or noticed, once at least."""
        ...

    def place_refusal(self, lang: str | None) -> Refused | None:
        """None where a new job may start from this press; else why not ([access] lists)."""
        ...

    async def reply_data(self, job: JobView) -> dict[str, Any]:
        """Where the answer to a new job from `job`'s buttons goes (the job's reply dict)."""
        ...

    async def queued(self, accepted: Accepted, reply: dict[str, Any]) -> None:
        """The new job is queued: its status message, where `reply` says."""
        ...

    async def not_started(self) -> None:
        """No job came of reply_data's answer (refused, or a press seen before): take back
        whatever reply_data put in the chat."""
        ...

    async def cancelling(self, job_id: str) -> None:
        """The job's owner asks to cancel it: its status takes no more progress edits from now."""
        ...

    async def finish_status(self, job_id: str, text: str) -> None:
        """The job was cancelled from its status message: end that message with `text` (an
        English msgid, said in the member's language)."""
        ...

    async def send_file(self, name: str, data: bytes) -> None: ...

    async def send_files(self, files: list[tuple[str, bytes]]) -> None:
        """Several files together (a sweep's results), named."""
        ...

    async def send_picture(self, data: bytes, caption: str) -> None:
        """A picture to look at (the side-by-side JPEG), with its caption."""
        ...

    async def send_result(self, delivery: Delivery) -> None:
        """A result (a sweep's kept one) sent as an ordinary result, with its buttons."""
        ...


@dataclass(frozen=True)
class Found:
    """The picture a restyle request names, found: `size` in bytes where the platform declared
    it (a Telegram photo, a Discord attachment), None where only a download will tell."""

    size: int | None


class RestyleSurface(Protocol):
    """Where one restyle request came (a Telegram message, a Discord slash command, form or
    @mention): what the shared request flow (bot/chat/restyle.py) asks of a platform. Each keeps
    its own rules inside: where the picture is, how it is fetched, what the member alone reads,
    what must be answered when (Discord's 3 seconds)."""

    # Read-only (a property here): a dataclass field or a property gives it.
    @property
    def max_download_bytes(self) -> int:
        """The biggest picture fetched for a request here."""
        ...

    def place_refusal(self, lang: str | None) -> Refused | None:
        """None where a job may start here; else why not ([access] lists)."""
        ...

    async def find_picture(self) -> Found | str:
        """The request's picture (kept by the surface for `download`), or what is wrong, in plain
        words: none there, not a picture."""
        ...

    def too_big(self, size: int | None, tr: Translator) -> str:
        """The picture is over max_download_bytes (`size` where known): what to do instead here."""
        ...

    def bad_command(self, error: CommandError, tr: Translator) -> str:
        """The command's own error, with how a good one is written here."""
        ...

    async def download(self) -> bytes | str:
        """The picture's bytes, or what went wrong, in plain words."""
        ...

    async def refuse(self, text: str) -> None:
        """Why no job starts, for the member (privately where the platform can)."""
        ...

    def refusal_text(self, refused: Refused) -> str:
        """How the service's refusal reads here (an example where it helps)."""
        ...

    async def reply_data(self) -> dict[str, Any] | None:
        """Where the job's answers go (its reply dict); None where nothing can be said here, so
        nothing starts."""
        ...

    async def not_started(self) -> None:
        """Quietly refused (the member was told already): take back what was put in the chat for it."""
        ...

    async def answered_already(self) -> None:
        """The same request came before and its first copy answers it: take back what only this
        copy put in the chat."""
        ...

    async def queued(self, accepted: Accepted, reply: dict[str, Any]) -> None:
        """The job is queued: its status message, where `reply` says."""
        ...
