"""A PressSurface and a RestyleSurface (bot/chat/surface.py), and a DeliverySurface
(bot/chat/delivery.py), that record what the press flow, the restyle request flow and the
delivery flow asked of them, in order, for the behaviours tested once on the real
service (tests/test_chat_presses.py, tests/test_chat_restyle.py); the platforms' own surfaces
are tested against the strict fakes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.chat.surface import Found
from bot.commands import CommandError
from bot.core.types import Accepted, Delivery, DeliveryFailed, JobView, Refused
from bot.i18n import Translator


@dataclass
class RecordingSurface:
    file_limit: int = 8_000_000
    files_limit: int = 8_000_000
    picture_limit: int = 8_000_000
    result_name: str = "restyle"
    refused_place: Refused | None = None  # what place_refusal answers
    calls: list[tuple[str, Any]] = field(default_factory=list)
    replies: int = 0  # reply_data calls, each its own place

    def said(self, method: str) -> list[Any]:
        """What each call of `method` was given, in order."""
        return [argument for name, argument in self.calls if name == method]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    async def notice(self, text: str) -> None:
        self.calls.append(("notice", text))

    async def acknowledge(self, text: str | None = None) -> None:
        self.calls.append(("acknowledge", text))

    def place_refusal(self, lang: str | None) -> Refused | None:
        self.calls.append(("place_refusal", lang))
        return self.refused_place

    async def reply_data(self, job: JobView) -> dict[str, Any]:
        self.replies += 1
        self.calls.append(("reply_data", job.id))
        return {"chat": "recorded", "answers": job.id, "place": self.replies}

    async def queued(self, accepted: Accepted, reply: dict[str, Any]) -> None:
        self.calls.append(("queued", (accepted, reply)))

    async def not_started(self) -> None:
        self.calls.append(("not_started", None))

    async def cancelling(self, job_id: str) -> None:
        self.calls.append(("cancelling", job_id))

    async def finish_status(self, job_id: str, text: str) -> None:
        self.calls.append(("finish_status", (job_id, text)))

    async def send_file(self, name: str, data: bytes) -> None:
        self.calls.append(("send_file", (name, data)))

    async def send_files(self, files: list[tuple[str, bytes]]) -> None:
        self.calls.append(("send_files", files))

    async def send_picture(self, data: bytes, caption: str) -> None:
        self.calls.append(("send_picture", (data, caption)))

    async def send_result(self, delivery: Delivery) -> None:
        self.calls.append(("send_result", delivery))


@dataclass
class RecordingRestyleSurface:
    """A RestyleSurface (bot/chat/surface.py) that records what the restyle request flow asked
    of it, in order (tests/test_chat_restyle.py). `picture`: what find_picture finds (its size
    as the platform declared it), or the problem it says; `downloaded`: what download gives."""

    picture: Found | str = field(default_factory=lambda: Found(None))
    downloaded: bytes | str = b""
    max_download_bytes: int = 10_000_000
    refused_place: Refused | None = None  # what place_refusal answers
    reachable: bool = True  # False: reply_data finds nowhere to answer
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def said(self, method: str) -> list[Any]:
        """What each call of `method` was given, in order."""
        return [argument for name, argument in self.calls if name == method]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def place_refusal(self, lang: str | None) -> Refused | None:
        self.calls.append(("place_refusal", lang))
        return self.refused_place

    async def find_picture(self) -> Found | str:
        self.calls.append(("find_picture", None))
        return self.picture

    def too_big(self, size: int | None, tr: Translator) -> str:
        self.calls.append(("too_big", size))
        return f"too big: {size}"

    def bad_command(self, error: CommandError, tr: Translator) -> str:
        self.calls.append(("bad_command", error.render(tr)))
        return f"bad command: {error.render(tr)}"

    async def download(self) -> bytes | str:
        self.calls.append(("download", None))
        return self.downloaded

    async def refuse(self, text: str) -> None:
        self.calls.append(("refuse", text))

    def refusal_text(self, refused: Refused) -> str:
        self.calls.append(("refusal_text", refused))
        return refused.text

    async def reply_data(self) -> dict[str, Any] | None:
        self.calls.append(("reply_data", None))
        return {"chat": "recorded"} if self.reachable else None

    async def not_started(self) -> None:
        self.calls.append(("not_started", None))

    async def answered_already(self) -> None:
        self.calls.append(("answered_already", None))

    async def queued(self, accepted: Accepted, reply: dict[str, Any]) -> None:
        self.calls.append(("queued", (accepted, reply)))


@dataclass
class RecordingDeliverySurface:
    """A DeliverySurface (bot/chat/delivery.py) that records each step it was asked to send, in
    order (the flow itself records them as sent in the real store: tests/test_chat_delivery.py).
    `fail_at`: the step whose sending raises DeliveryFailed, as a platform's network error would."""

    fail_at: str | None = None
    sends: list[str] = field(default_factory=list)

    async def send(self, step: str) -> None:
        if step == self.fail_at:
            raise DeliveryFailed(f"network down (recorded) at {step}")
        self.sends.append(step)
