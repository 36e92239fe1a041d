"""The plain data every room of the bot passes around: who asks (Member), what the core answers
(Accepted, Refused, JobView, MemberView ...), and what a front end must do (FrontEnd)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from bot.core import texts
from bot.i18n import translator
from bot.upgrades import PlanView


@dataclass(frozen=True)
class Member:
    platform: str  # "telegram" | "discord" | "web"
    user_id: str
    name: str = ""
    # The member's language as their platform says it ("es", "es-ES", an Accept-Language
    # header); None: unknown, English. bot/i18n.py maps it to a catalogue. Not part of `key`.
    lang: str | None = None

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True)
class Accepted:
    job_id: str
    position: int  # waiting jobs ahead of this one; 0 = next
    eta_s: float  # rough seconds until the result is delivered
    tier: str
    strength: float
    seed: int
    steps: int
    # True: this request (same request key) was queued before, as this job; the front end has
    # answered it already and should not announce it again.
    duplicate: bool = False
    # A strength sweep: its job ids, lead first, in strength order (job_id is the lead's);
    # empty for a single job.
    sweep: tuple[str, ...] = ()


class Reason(StrEnum):
    """Why the core said no. A str: front ends and texts compare and key by the plain name."""

    COMMAND = "command"
    PICTURE = "picture"
    QUOTA = "quota"
    QUEUE_LIMIT = "queue_limit"
    STEPS = "steps"
    FLOOD = "flood"
    STORAGE = "storage"
    NOT_FOUND = "not_found"
    NOT_YOURS = "not_yours"
    RULES = "rules"
    BANNED = "banned"
    PLACE = "place"
    NOT_ADMIN = "not_admin"
    DOWNGRADE = "downgrade"
    PAYLOAD = "payload"
    PRICE = "price"
    PAYMENT_HELD = "payment_held"
    REFUNDED = "refunded"
    GUESSING = "guessing"
    BAD_CODE = "bad_code"
    USED_CODE = "used_code"
    EXPIRED_CODE = "expired_code"
    LINKED = "linked"
    BUSY = "busy"
    SWEEP = "sweep"  # the member's tier has no strength sweeps


@dataclass(frozen=True)
class Refused:
    reason: Reason
    message: str  # written for the member, in their language (`lang`)
    upgrade_hint: bool = False
    quiet: bool = False  # the member was already told; the front end should say nothing
    lang: str | None = None  # the member's language (Member.lang): the upgrade hint is said in it

    @property
    def text(self) -> str:
        if not self.upgrade_hint:
            return self.message
        return f"{self.message} {translator(self.lang).gettext(texts.UPGRADE_HINT)}"


@dataclass(frozen=True)
class JobView:
    id: str
    platform: str
    user_id: str
    reply: dict[str, Any]
    prompt: str
    negative_prompt: str | None
    strength: float
    seed: int
    steps: int
    output_format: str | None
    tier: str
    status: str  # queued | running | done | failed | cancelled
    width: int
    height: int
    created_at: float
    position: int | None = None  # while queued
    eta_s: float | None = None  # while queued or running
    progress: float | None = None  # 0..1 while running
    seconds: float | None = None  # engine time, when done
    error: str | None = None  # for the member, when failed
    deliver_after: float | None = None  # when done: the result is held back until then
    delivered: bool = False  # the member has been sent the result (or the failure)
    # One of a strength sweep's jobs: its lead's id. A front end shows ONE status per sweep
    # (keyed by sweep_id) and reads how far it is from sweep_ended of sweep_size.
    sweep_id: str | None = None
    sweep_size: int = 1  # jobs in the sweep (1: not a sweep)
    sweep_ended: int = 0  # of those, how many are done, failed or cancelled


@dataclass(frozen=True)
class SweepDelivery:
    """A strength sweep delivered as a whole, once its last job has ended. Send `sheet` (the
    results side by side, each labelled with its strength) or, where it is None (it could
    not be drawn), the results one by one; say which strengths failed (job.status "failed",
    job.error) or were cancelled. Buttons: "Keep <strength>" per done job (Jobs.keep) and the
    three files (Jobs.sweep_files)."""

    sweep_id: str  # the lead's job id; the lead's reply says where to answer
    jobs: list[JobView]  # every job of the sweep, in strength order
    input_picture: bytes  # the picture as the engine saw it (lossless; open with Pillow)
    results: dict[str, bytes]  # job id -> result (lossless), for the done jobs only
    # engine.pictures.sweep_sheet of the done results, each labelled "0.3" ...: lossless, in the
    # stored form like the results (engine.pictures.convert_stored makes a chat's PNG/JPEG/WebP)
    sheet: bytes | None

    @property
    def done(self) -> list[JobView]:
        return [job for job in self.jobs if job.id in self.results]


@dataclass(frozen=True)
class Delivery:
    job: JobView
    input_picture: bytes  # the picture as the engine saw it (lossless; open with Pillow)
    result_picture: bytes  # the result (lossless; open with Pillow)


@dataclass(frozen=True)
class MemberView:
    tier: str
    tier_expires_at: float | None
    used_today: int
    daily_quota: int
    max_queued: int
    active_jobs: list[JobView]


@dataclass(frozen=True)
class UpgradeInfo:
    tier: str
    tier_expires_at: float | None
    plans: list[PlanView]  # on sale on the member's app; empty: payments not set up there
    tiers: list[tuple[str, tuple[str, ...]]]  # every tier's perks, lowest first


@dataclass(frozen=True)
class PaymentResult:
    view: MemberView  # the member after the payment
    duplicate: bool  # this charge id was recorded before: nothing changed
    plan: str


def when(timestamp: float | None, lang: str | None = None) -> str:
    if timestamp is None:
        return translator(lang).gettext(texts.NO_END_DATE)
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


class DeliveryFailed(Exception):
    """Raised by a front end that could not deliver. `permanent`: retrying cannot help (the
    member blocked the bot); the result stays on disk and is tried again after a restart."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class FrontEnd(Protocol):
    platform: str

    async def job_updated(self, job: JobView) -> None:
        """Position or progress changed. Best effort; may be throttled by the front end."""
        ...

    async def deliver_result(self, delivery: Delivery) -> None:
        """Send the result. Return only once it is sent; raise to have it retried."""
        ...

    async def deliver_failure(self, job: JobView) -> None:
        """Tell the member their job failed (job.error). Raise to have it retried."""
        ...


class SweepFrontEnd(FrontEnd, Protocol):
    """A front end that answers a strength sweep as one message. Dispatch calls deliver_sweep
    where a front end has it; to one without, it sends a sweep's done jobs one by one with
    deliver_result (or one deliver_failure when none is done)."""

    async def deliver_sweep(self, sweep: SweepDelivery) -> None:
        """Send the sweep. Return only once it is sent; raise to have it retried (whole)."""
        ...
