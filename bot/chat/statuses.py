"""A job's status message from the job's updates: what it says and when it ends, written once
for every chat platform (the StatusThrottle, bot/chat/status.py, decides when an edit goes out).

A sweep's jobs share one status, keyed by the sweep's lead (`status_key`). A waiting job's
status shows its place or progress with a Cancel button; a free result held back shows the held
line, once; a cancelled job ends its status ("Cancelled."); a status ended with a command's own
words ("Cancelled with /cancel.") keeps them, whatever update comes after; a job no longer
waiting is no longer edited. The platform gives only its own parts (`StatusPlace`): how its
status line reads, how a message is edited and ended, where a status message is found."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.chat import texts
from bot.chat.status import GONE, Budget, EditOutcome, StatusThrottle, held_s
from bot.clock import Clock
from bot.core.types import JobView
from bot.service import RestyleService

log = logging.getLogger("bot.chat.statuses")

ACTIVE = ("queued", "running")
DELIVERED = ""  # what ended a status its result (or failure) took over
ENDED_KEPT = 1000  # ended statuses remembered (a sweep's three jobs end it once; late updates find it ended)


def status_key(job: JobView) -> str:
    """Where a job's status is kept: its own id, or its sweep's (the lead's) for a sweep's job."""
    return job.sweep_id or job.id


@dataclass
class SweepShown:
    """The latest view of each job of one sweep, to pick the one its single status speaks for:
    a running job before the queued ones (whose places would otherwise flicker through the
    message), the nearest queued one while none runs."""

    views: dict[str, JobView] = field(default_factory=dict)

    def speaker(self, job: JobView) -> JobView | None:
        """Take in `job`'s update; the view the status should say now, or None to leave it."""
        self.views[job.id] = job
        if job.status == "running":
            return job
        if job.status != "queued":
            return None
        # A job seen running counts as running until a later update shows more of the sweep ended.
        if any(v.status == "running" and v.sweep_ended >= job.sweep_ended for v in self.views.values()):
            return None
        queued = sorted((v for v in self.views.values() if v.status == "queued"), key=lambda v: v.strength)
        return job if queued[0].id == job.id else None


class StatusPlace(Protocol):
    """What the status lifecycle asks of a platform: its own parts only."""

    def find(self, key: str, job: JobView) -> Budget | None:
        """The edit budget of `key`'s status message where one can be edited from here now (a
        platform may find one it sent before a restart, from the job's reply), else None."""
        ...

    def line(self, job: JobView) -> tuple[str, bool]:
        """What a waiting job's status says here, and whether it has a Cancel button."""
        ...

    def held_line(self, job: JobView, held: float) -> str:
        """What a done job's status says while its result is held back `held` seconds more."""
        ...

    async def edit(self, key: str, job: JobView, text: str, cancel: bool) -> EditOutcome:
        """Edit `key`'s status message (`job`: the job, a sweep's lead, whose it is)."""
        ...

    async def end(self, key: str, text: str) -> None:
        """End `key`'s status message with `text` (an English msgid, said in the member's language)."""
        ...


# A platform's own way to end one status (Discord: the press's token, on the message pressed).
Say = Callable[[str, str], Awaitable[None]]


@dataclass
class _Followed:
    sweep: SweepShown = field(default_factory=SweepShown)
    stopped: bool = False  # a Cancel was pressed: no more progress edits, whatever the cancel's outcome
    opening: bool = False  # its status message is being sent
    early: JobView | None = None  # an update heard while it was being sent
    end_text: str | None = None  # it ended while it was being sent


class StatusFollower:
    """The status of each job (or sweep) followed in this run, and the statuses ended in it."""

    def __init__(
        self,
        place: StatusPlace,
        service: RestyleService,
        clock: Clock,
        *,
        name: str = "status",
        sweep_result_takes_status: bool = False,
    ) -> None:
        self._place = place
        self._service = service
        self.throttle = StatusThrottle(self._edit, clock, name=name)
        # Where a sweep's delivery is written into its status message (Discord), a sweep cancelled
        # with part of it done keeps that message for the delivery instead of ending it.
        self._sweep_result_takes_status = sweep_result_takes_status
        self._followed: dict[str, _Followed] = {}
        self._ended: dict[str, str] = {}  # key -> what ended it, oldest first (the latest ENDED_KEPT)

    def follows(self, key: str) -> bool:
        return key in self._followed

    def opening(self, key: str) -> bool:
        followed = self._followed.get(key)
        return followed is not None and followed.opening

    # The job's side -----------------------------------------------------------------------------

    async def updated(self, job: JobView) -> None:
        """Show the job's state in its status, within its chat's edit budget (or end it)."""
        key = status_key(job)
        if key in self._ended:
            return  # ended in this run: a late update (sent before) has nothing to add
        followed = self._followed.get(key)
        if job.status == "cancelled":
            # Cancelled elsewhere (a ban, /cancel on another app): the status must not say "Queued".
            if followed is not None and not followed.stopped:
                await self.end(key, texts.CANCELLED, by_update=True)
            return
        held = held_s(job, self._service.clock.now())
        if job.sweep_id is not None and job.sweep_ended < job.sweep_size:
            held = None  # one result of a sweep is in; its status goes on with its other jobs
        if job.status not in ACTIVE and held is None:
            return
        if followed is not None and followed.opening:
            followed.early = job
            return
        if (followed is not None and followed.stopped) or not self._track(key, job):
            return
        followed = self._followed[key]
        if held is not None:  # done early: a free result waits for its minimum turnaround
            self.throttle.want(key, self._place.held_line(job, held), False, settled=True)
            return
        if job.sweep_id is not None:
            speaker = followed.sweep.speaker(job)
            if speaker is None:
                return  # another job of the sweep is what its status says now
            job = speaker
        text, cancel = self._place.line(job)
        self.throttle.want(key, text, cancel, position=(job.position or 0) + 1 if job.status == "queued" else None)

    async def show_now(self, job_id: str) -> None:
        """The first status, in the place of the platform's first answer: at once."""
        job = await self._service.jobs.job(job_id)
        if job is None or job.status not in ACTIVE:
            return
        key = status_key(job)
        if key in self._ended or not self._track(key, job):
            return
        text, cancel = self._place.line(job)
        await self.throttle.edit_now(key, text, cancel)

    # A status message sent by the platform ----------------------------------------------------

    def open(self, key: str) -> None:
        """Its status message is being sent: updates and ends wait for `opened`."""
        self._followed.setdefault(key, _Followed()).opening = True

    async def opened(self, key: str, sent: bool) -> None:
        """Its status message is out (tracked by the throttle), or could not be sent (`sent`
        False: the result still comes; only the progress is lost)."""
        followed = self._followed.get(key)
        if followed is None:
            return
        followed.opening = False
        if not sent:
            self._followed.pop(key, None)  # nothing to edit or end: its result still comes
            return
        if followed.end_text is not None:  # it ended while the status message was on its way
            text, followed.end_text = followed.end_text, None
            self._ended.pop(key, None)
            await self.end(key, text)
        elif followed.early is not None:
            view, followed.early = followed.early, None
            await self.updated(view)

    # The job is over ---------------------------------------------------------------------------

    def stop(self, key: str) -> None:
        """A Cancel was pressed on it: no progress edit may land after what the cancel says."""
        self._followed.setdefault(key, _Followed()).stopped = True
        self.throttle.finish(key)

    def delivered(self, key: str) -> None:
        """Its result (or failure) took over or replaced the status: nothing more to edit there."""
        self._remember(key, DELIVERED)
        self._forget(key)

    def undelivered(self, key: str) -> None:
        """Its delivery failed, to be tried again: its status may be edited again meanwhile."""
        if self._ended.get(key) == DELIVERED:
            del self._ended[key]

    async def end(self, job_id: str, text: str, *, by_update: bool = False, say: Say | None = None) -> None:
        """End the status of `job_id` (a sweep's job: the sweep's) with `text`, an English msgid
        said in the member's language. A command's words (`by_update` False) are said unless said
        already; the job's own "cancelled" update (`by_update`) never replaces any end. `say`:
        how to say it where not the platform's usual way."""
        if job_id in self._followed or job_id in self._ended:
            key = job_id
        else:
            job = await self._service.jobs.job(job_id)
            key = status_key(job) if job is not None else job_id
        if key in self._ended and (by_update or self._ended[key] in (text, DELIVERED)):
            # Said already (a sweep's jobs end together; its /cancel names each), in a command's
            # words, or the message is its result now.
            return
        followed = self._followed.get(key)
        self._remember(key, text)
        if followed is not None and followed.opening:
            followed.end_text = text  # said once the status message is known
            self.throttle.finish(key)
            return
        self._forget(key)
        if self._sweep_result_takes_status:
            lead = await self._service.jobs.job(key)
            if lead is not None and lead.sweep_id is not None and await self._sweep_has_results(key):
                return  # the sweep's delivery takes this message over with what is done
        await (say or self._place.end)(key, text)

    def live(self, key: str) -> bool:
        """Whether `key`'s status may still be edited (a platform checks again under its own lock)."""
        followed = self._followed.get(key)
        return followed is not None and not followed.stopped and key not in self._ended

    # Inside ------------------------------------------------------------------------------------

    def _track(self, key: str, job: JobView) -> bool:
        if not self.throttle.tracks(key):
            budget = self._place.find(key, job)
            if budget is None:
                return False
            self.throttle.track(key, key, budget)
        self._followed.setdefault(key, _Followed())
        return True

    def _remember(self, key: str, text: str) -> None:
        self._ended.pop(key, None)
        self._ended[key] = text
        while len(self._ended) > ENDED_KEPT:
            del self._ended[next(iter(self._ended))]

    def _forget(self, key: str) -> None:
        self._followed.pop(key, None)
        self.throttle.finish(key)

    async def _edit(self, key: str, text: str, cancel: bool) -> EditOutcome:
        """The throttle's edit: only while the job (or any job of the sweep) still waits."""
        if not self.live(key):
            return GONE
        job = await self._still_waiting(key)
        if job is None:
            self._forget(key)  # over: its delivery (here or elsewhere) ends the status
            return GONE
        return await self._place.edit(key, job, text, cancel)

    async def _still_waiting(self, key: str) -> JobView | None:
        """The job (a sweep's lead, for a sweep) whose status `key` is, while it is worth editing:
        the job or any job of the sweep waiting, running or held back; else None."""
        job = await self._service.jobs.job(key)
        if job is None:
            return None
        jobs = await self._service.jobs.sweep_jobs(key) if job.sweep_id == key else [job]
        now = self._service.clock.now()
        return job if any(j.status in ACTIVE or held_s(j, now) is not None for j in jobs) else None

    async def _sweep_has_results(self, key: str) -> bool:
        return any(job.status == "done" for job in await self._service.jobs.sweep_jobs(key))
