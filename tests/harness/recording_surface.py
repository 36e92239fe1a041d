"""A PressSurface (bot/chat/surface.py) that records what the press flow asked of it, in order,
for the press behaviours tested once on the real service (tests/test_chat_presses.py); the
platforms' own surfaces are tested against the strict fakes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.core.types import Accepted, Delivery, JobView, Refused


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
