"""A job's status message ("Queued: #3 in line", "Restyling… 60%"), edited as the job moves,
within one edit budget per chat: written once for every platform.

The platform says how to edit (an `Edit` function, which maps its errors to an `EditOutcome`)
and how much it allows (a `Budget` per chat). This class decides when to edit and what: always
the latest wanted text (an older one is stale by the time the budget allows it), never more
often than the budget, never while a result is going out in that chat (it comes first), and
nothing in a chat under a flood hold until it lifts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from enum import Enum

from bot.clock import Clock
from bot.core.types import JobView

log = logging.getLogger("bot.chat.status")


class Outcome(Enum):
    SHOWN = "shown"
    NOT_MODIFIED = "not modified"  # the message says this already (counts as shown)
    GONE = "gone"  # the message can no longer be edited (deleted, blocked, expired): stop, for this job
    HOLD = "hold"  # flood control: no edit in this chat for `hold_s`, then the latest text
    FAILED = "failed"  # not shown this time; the next wanted text tries again


@dataclass(frozen=True)
class EditOutcome:
    outcome: Outcome
    hold_s: float = 0.0


SHOWN = EditOutcome(Outcome.SHOWN)
NOT_MODIFIED = EditOutcome(Outcome.NOT_MODIFIED)
GONE = EditOutcome(Outcome.GONE)
FAILED = EditOutcome(Outcome.FAILED)


def hold(seconds: float) -> EditOutcome:
    return EditOutcome(Outcome.HOLD, float(seconds))


def held_s(job: JobView, now: float) -> float | None:
    """How long a finished job's result is still held back (a free member's minimum wait),
    or None where it is not held."""
    if job.status != "done" or job.delivered or job.deliver_after is None or job.deliver_after <= now:
        return None
    return job.deliver_after - now


# (job id, text, with a Cancel button) -> what became of the edit
Edit = Callable[[str, str, bool], Awaitable[EditOutcome]]


@dataclass(frozen=True)
class Budget:
    """How often a chat's status messages may be edited."""

    message_interval_s: float  # between two edits of one status message
    chat_interval_s: float = 0.0  # between two edits in the chat, all its status messages together
    # Whether a queued job's place moving from the shown one to a new one is worth an edit
    # (a group sees every edit); None: every change is.
    position_step: Callable[[int | None, int], bool] | None = None


@dataclass
class _Job:
    chat: Hashable
    budget: Budget
    shown: str
    shown_position: int | None
    last_edit: float
    wanted: tuple[str, bool, int | None] | None = None  # (text, with Cancel, queued place) to show next
    task: asyncio.Task[None] | None = None
    final: bool = False  # nothing more to edit (the message is gone, or the job ended)
    editing: bool = False  # an edit is on its way
    settled: bool = False  # the job's last word before delivery is wanted (a held result): said once


class StatusThrottle:
    """Per job: the shown and the wanted text; per chat: the next allowed edit, any flood hold
    and the results going out there now."""

    def __init__(self, edit: Edit, clock: Clock, *, name: str = "status") -> None:
        self._edit = edit
        self._clock = clock
        self._name = name
        self._jobs: dict[str, _Job] = {}
        self._chat_next_edit: dict[Hashable, float] = {}
        self._chat_hold: dict[Hashable, float] = {}
        self._chat_sending: dict[Hashable, int] = {}
        self._sends_done = asyncio.Condition()

    def track(
        self, job_id: str, chat: Hashable, budget: Budget, *, shown: str = "", position: int | None = None,
        edited_at: float | None = None,
    ) -> None:  # fmt: skip
        """A status message to edit from now on: `shown` is what it says (`position`: the queued
        place in it), `edited_at` when it was last written (None: long ago)."""
        self._jobs[job_id] = _Job(chat, budget, shown, position, float("-inf") if edited_at is None else edited_at)

    def tracks(self, job_id: str) -> bool:
        return job_id in self._jobs

    def is_final(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        return job is not None and job.final

    def want(
        self, job_id: str, text: str, with_cancel: bool, *, position: int | None = None, settled: bool = False
    ) -> asyncio.Task[None] | None:
        """Show `text` as soon as the budget allows (a later want replaces it). `position`: the
        queued place it shows; `settled`: the job's last word before delivery (a held result),
        said once: neither an update read before it nor a second one replaces it. Returns the
        task doing the edits, if one runs."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if job.final or job.settled:
            return job.task
        step = job.budget.position_step
        if step is not None and position is not None and job.shown_position is not None:
            if not step(job.shown_position, position):
                return job.task  # not worth one of the chat's edits
        job.wanted = (text, with_cancel, position)
        job.settled = settled
        if job.task is None or job.task.done():
            job.task = asyncio.create_task(self._edit_soon(job_id, job), name=f"{self._name}-{job_id}")
        return job.task

    async def edit_now(self, job_id: str, text: str, with_cancel: bool) -> None:
        """Show `text` at once, outside the budget (the first status, in the answer's place)."""
        job = self._jobs.get(job_id)
        if job is None or job.final or text == job.shown:
            return
        job.last_edit = self._clock.now()
        self._settle(job_id, job, text, with_cancel, None, await self._edit(job_id, text, with_cancel))

    def finish(self, job_id: str) -> None:
        """The job is over (delivered, failed, cancelled): no more edits, and it is forgotten."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return
        job.final = True
        # An edit on its way is let finish (cancelled, its request could be half sent); the
        # loop ends after it.
        if job.task is not None and job.task is not asyncio.current_task() and not job.editing:
            job.task.cancel()

    def tasks(self) -> list[asyncio.Task[None]]:
        return [job.task for job in self._jobs.values() if job.task is not None]

    async def settled(self, job_id: str) -> None:
        """Until the job's wanted text is shown, or given up (tests wait on this)."""
        job = self._jobs.get(job_id)
        if job is not None and job.task is not None:
            await asyncio.gather(job.task, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def sending(self, chat: Hashable) -> AsyncIterator[None]:
        """A result or an answer going out in `chat`: its status edits wait until it is out."""
        self._chat_sending[chat] = self._chat_sending.get(chat, 0) + 1
        try:
            yield
        finally:
            left = self._chat_sending[chat] - 1
            if left:
                self._chat_sending[chat] = left
            else:
                del self._chat_sending[chat]
            async with self._sends_done:
                self._sends_done.notify_all()

    async def _edit_soon(self, job_id: str, job: _Job) -> None:
        chat, budget = job.chat, job.budget
        while not job.final and job.wanted is not None:
            wait = max(job.last_edit + budget.message_interval_s, self._chat_hold.get(chat, 0.0),
                       self._chat_next_edit.get(chat, 0.0)) - self._clock.now()  # fmt: skip
            if wait > 0:
                await self._clock.sleep(wait)
                continue  # a newer text may have come meanwhile: show the latest
            if self._chat_sending.get(chat):
                async with self._sends_done:
                    await self._sends_done.wait_for(lambda: not self._chat_sending.get(chat))
                continue
            text, with_cancel, position = job.wanted
            job.wanted = None
            if text == job.shown or job.final:
                continue
            job.last_edit = self._clock.now()
            self._chat_next_edit[chat] = job.last_edit + budget.chat_interval_s
            job.editing = True
            try:
                done = await self._edit(job_id, text, with_cancel)
            finally:
                job.editing = False
            self._settle(job_id, job, text, with_cancel, position, done)

    def _settle(
        self, job_id: str, job: _Job, text: str, with_cancel: bool, position: int | None, done: EditOutcome
    ) -> None:
        if done.outcome in (Outcome.SHOWN, Outcome.NOT_MODIFIED):
            job.shown, job.shown_position = text, position
        elif done.outcome is Outcome.GONE:
            job.final = True
        elif done.outcome is Outcome.HOLD:
            # Flood control for this chat: no status edit there until it lifts; then only the
            # latest text is shown (older ones are stale by then).
            self._chat_hold[job.chat] = self._clock.now() + done.hold_s
            if job.wanted is None:
                job.wanted = (text, with_cancel, position)
            log.info("job %s: status edits in chat %s paused %g s by flood control", job_id, job.chat, done.hold_s)
