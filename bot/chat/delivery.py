"""Delivering a job's outcome (a result, a failure, a sweep), written once for every chat
platform: which steps an answer takes and in what order, that a step recorded as sent is never
sent again (a retry of the service's, or a restart's re-offer, finds it recorded), what a failure
says, which picture a sweep's one message carries, and that a refusal for good is told to the
member where the platform can and handed to the service as permanent.

The record of the steps sent is this flow's: it reads and writes it through the service
(`service.dispatch.steps_sent` / `step_sent`, kept in the job's reply data, a sweep's in its
lead's), so a platform never keeps its own. The platform gives only how one named step is sent
there (`DeliverySurface`). Telegram sends a result as several messages (an album, which takes no
buttons, then the buttons, then the file asked for). Discord sends any outcome as one message,
edited into the status or posted once with a nonce fixed per job and place (its retries return
the first message instead of a second), so it has no steps and uses only the helpers below
(failure_reason, refused_for_good)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from bot.core.types import DeliveryFailed, JobView, SweepDelivery
from bot.i18n import Translator
from bot.service import RestyleService

log = logging.getLogger("bot.chat")

# The steps of a result, in order; each is recorded in the job's reply data ("sent") once sent.
ALBUM = "album"  # the original and the result (Telegram: an album)
BUTTONS = "buttons"  # what can be done next from it
FILE = "file"  # the result as a file, in the format the member asked for
FAILURE = "failure"  # a failure's one message
# A sweep's steps, recorded in its lead's reply: its one picture with caption and buttons, or,
# where it has none to show alone, its results together then the caption and buttons.
SWEEP_SHEET = "sweep-sheet"
SWEEP_ALBUM = "sweep-album"
SWEEP_BUTTONS = "sweep-buttons"


class DeliverySurface(Protocol):
    """Where one job's outcome goes: what the shared delivery flow asks of a platform."""

    async def send(self, step: str) -> None:
        """Send one step; raise to have the service try the delivery again (or DeliveryFailed)."""
        ...


def result_steps(job: JobView) -> list[str]:
    """A result: the pictures, the buttons, then the file where the member asked for a format."""
    return [ALBUM, BUTTONS, FILE] if job.output_format else [ALBUM, BUTTONS]


def sweep_alone(sweep: SweepDelivery) -> bytes | None:
    """The one picture a sweep's message shows: its 3-up sheet, or where none could be drawn its
    only done result; None where several results must be shown together instead."""
    if sweep.sheet is not None:
        return sweep.sheet
    done = sweep.done
    return sweep.results[done[0].id] if len(done) == 1 else None


def sweep_steps(sweep: SweepDelivery) -> list[str]:
    return [SWEEP_SHEET] if sweep_alone(sweep) is not None else [SWEEP_ALBUM, SWEEP_BUTTONS]


def sweep_lead(sweep: SweepDelivery) -> JobView:
    """The job whose reply a sweep's delivery is recorded in: the sweep's own (its first job's id)."""
    return next((job for job in sweep.jobs if job.id == sweep.sweep_id), sweep.jobs[0])


def failure_reason(job: JobView, tr: Translator, fallback: str) -> str:
    """Why the job failed, in the member's language: job.error is stored in English (the worker
    writes it, maybe before any member's language is at hand), so a known sentence is translated;
    `fallback` (a msgid) where the engine gave no reason."""
    return tr.gettext(job.error) if job.error else tr.gettext(fallback)


async def send_steps(
    service: RestyleService, job_id: str, surface: DeliverySurface, steps: Sequence[str], *, recorded: bool = True
) -> None:
    """Send each step not recorded as sent for `job_id`, in order, recording each as soon as it
    went out: a step that raises leaves the ones after it for the retry, and those before it are
    not sent twice. `recorded=False`: sent again on purpose, and not recorded (a kept result sent
    for a button press: a second press sends it again)."""
    sent = await service.dispatch.steps_sent(job_id) if recorded else set()
    for step in steps:
        if step in sent:
            continue
        await surface.send(step)
        if not recorded:
            continue
        sent.add(step)
        try:
            await service.dispatch.step_sent(job_id, step)
        except Exception:
            # It went out: failing the delivery now would send it again at once; unrecorded,
            # only a restart's re-offer can.
            log.warning("job %s: %s was sent but could not be recorded", job_id, step, exc_info=True)


async def deliver_result(
    service: RestyleService, surface: DeliverySurface, job: JobView, *, recorded: bool = True
) -> None:
    await send_steps(service, job.id, surface, result_steps(job), recorded=recorded)


async def deliver_failure(service: RestyleService, surface: DeliverySurface, job: JobView) -> None:
    await send_steps(service, job.id, surface, [FAILURE])


async def deliver_sweep(service: RestyleService, surface: DeliverySurface, sweep: SweepDelivery) -> None:
    await send_steps(service, sweep_lead(sweep).id, surface, sweep_steps(sweep))


async def refused_for_good(why: str, tell: Callable[[], Awaitable[None]] | None = None) -> DeliveryFailed:
    """The platform refused the delivery and would refuse it again (the bot was blocked, the
    chat is gone, it may not post there): the member is told where `tell` can still reach them,
    and what comes back, raised, has the service keep the result instead of retrying for nothing.
    The platform logs its own words for it (they name its error)."""
    if tell is not None:
        await tell()
    return DeliveryFailed(why, permanent=True)
