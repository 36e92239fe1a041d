"""A job's status lifecycle (bot/chat/statuses.py) on the real service with a recording place (no
platform): what a status says from each update, and when it ends. How each platform edits and
ends its messages is tested against the strict fakes in the platforms' own test modules."""

from __future__ import annotations

import dataclasses

import pytest

from bot.chat import texts
from bot.chat.status import SHOWN, Budget, EditOutcome
from bot.chat.statuses import StatusFollower, status_key
from bot.core.types import Accepted, JobView, Member
from tests.harness.service import MAX, PRO, Harness
from tests.harness.sweep import make_sweeping, run_one_batch

pytestmark = pytest.mark.timeout(20)

SWEEP = "/restyle ink drawing strength=sweep seed=5"


class RecordingPlace:
    """The platform's parts: each status message found, edited and ended, recorded."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.edits: list[tuple[str, str, bool]] = []
        self.ends: list[tuple[str, str]] = []
        self.sending: set[str] = set()  # status messages on their way: not known yet

    def find(self, key: str, job: JobView) -> Budget | None:
        if key in self.sending:
            return None
        self.found.append(key)
        return Budget(0.0)

    def line(self, job: JobView) -> tuple[str, bool]:
        return f"{job.status} {job.strength:g}", True

    def held_line(self, job: JobView, held: float) -> str:
        return f"held {held:g}"

    async def edit(self, key: str, job: JobView, text: str, cancel: bool) -> EditOutcome:
        self.edits.append((key, text, cancel))
        return SHOWN

    async def end(self, key: str, text: str) -> None:
        self.ends.append((key, text))


async def following(tmp_path) -> tuple[Harness, RecordingPlace, StatusFollower]:
    h = await make_sweeping(tmp_path)  # no worker: the jobs wait
    place = RecordingPlace()
    return h, place, StatusFollower(place, h.service, h.clock)


async def waiting(h: Harness, text: str = "/restyle oil painting strength=0.5", member: Member = PRO) -> JobView:
    accepted = await h.submit(member, text)
    assert isinstance(accepted, Accepted), accepted
    job = await h.service.jobs.job(accepted.job_id)
    assert job is not None
    return job


async def shown(follower: StatusFollower, job: JobView) -> None:
    await follower.updated(job)
    await follower.throttle.settled(status_key(job))


async def test_a_sweeps_jobs_share_one_status_keyed_by_its_lead(tmp_path):
    h, place, follower = await following(tmp_path)
    lead = await waiting(h, SWEEP)
    jobs = await h.service.jobs.sweep_jobs(lead.id)
    assert len(jobs) == 3 and {status_key(job) for job in jobs} == {lead.id}
    for job in jobs:
        await shown(follower, job)
    running = dataclasses.replace(jobs[1], status="running", progress=0.5)
    await shown(follower, running)
    await shown(follower, jobs[2])  # still queued: the running one is what the status says
    assert place.found == [lead.id]
    assert place.edits == [(lead.id, f"queued {jobs[0].strength:g}", True),
                           (lead.id, f"running {jobs[1].strength:g}", True)]  # fmt: skip
    await h.close()


async def test_a_cancelled_job_ends_its_status_and_a_late_update_does_not_reopen_it(tmp_path):
    h, place, follower = await following(tmp_path)
    job = await waiting(h)
    await shown(follower, job)
    assert await h.service.jobs.cancel(PRO, job.id)
    await follower.updated(dataclasses.replace(job, status="cancelled"))
    await shown(follower, dataclasses.replace(job, status="running", progress=0.3))  # sent before the cancel
    assert place.ends == [(job.id, texts.CANCELLED)]
    assert place.edits == [(job.id, "queued 0.5", True)]
    assert not follower.follows(job.id)
    await h.close()


async def test_a_commands_words_are_kept_whatever_update_comes_after(tmp_path):
    h, place, follower = await following(tmp_path)
    job = await waiting(h)
    await shown(follower, job)
    await follower.end(job.id, texts.CANCELLED_BY_COMMAND)
    await shown(follower, dataclasses.replace(job, status="running", progress=0.4))  # late: sent before
    await follower.updated(dataclasses.replace(job, status="cancelled"))
    await follower.end(job.id, texts.CANCELLED_BY_COMMAND)  # a sweep's /cancel names each job: said once
    assert place.ends == [(job.id, texts.CANCELLED_BY_COMMAND)]
    assert place.edits == [(job.id, "queued 0.5", True)]
    await h.close()


async def test_a_commands_words_come_after_the_plain_cancelled_its_update_said_first(tmp_path):
    h, place, follower = await following(tmp_path)
    job = await waiting(h)
    await shown(follower, job)
    await follower.updated(dataclasses.replace(job, status="cancelled"))
    await follower.end(job.id, texts.CANCELLED_BY_COMMAND)
    assert place.ends == [(job.id, texts.CANCELLED), (job.id, texts.CANCELLED_BY_COMMAND)]
    await h.close()


async def test_a_held_result_shows_the_held_line_once(tmp_path):
    h, place, follower = await following(tmp_path)
    job = await waiting(h)
    await shown(follower, job)
    now = h.service.clock.now()
    done = dataclasses.replace(job, status="done", deliver_after=now + 25)
    await shown(follower, done)
    await shown(follower, dataclasses.replace(done, deliver_after=now + 20))  # said already
    await shown(follower, dataclasses.replace(job, status="running", progress=0.9))  # read before it
    assert [text for _, text, _ in place.edits] == ["queued 0.5", "held 25"]
    assert place.edits[-1] == (job.id, "held 25", False)  # no Cancel under a finished job
    await h.close()


async def test_a_status_stops_after_delivery(tmp_path):
    h, place, follower = await following(tmp_path)
    job = await waiting(h)
    await shown(follower, job)
    follower.delivered(job.id)
    await shown(follower, dataclasses.replace(job, status="running", progress=0.7))
    await follower.updated(dataclasses.replace(job, status="cancelled"))
    await follower.end(job.id, texts.CANCELLED_BY_COMMAND)  # the message is the result's now
    assert place.edits == [(job.id, "queued 0.5", True)] and place.ends == []
    await h.close()


async def test_a_job_no_longer_waiting_is_not_edited(tmp_path):
    h, place, follower = await following(tmp_path)
    job = await waiting(h)
    assert await h.service.jobs.cancel(PRO, job.id)  # heard by another process; this one hears only progress
    await shown(follower, dataclasses.replace(job, status="running", progress=0.2))
    assert place.edits == [] and not follower.follows(job.id)
    await h.close()


async def test_a_pressed_cancel_stops_progress_edits_before_the_cancel_is_known(tmp_path):
    h, place, follower = await following(tmp_path)
    job = await waiting(h)
    await shown(follower, job)
    follower.stop(job.id)
    await shown(follower, dataclasses.replace(job, status="running", progress=0.5))
    await follower.updated(dataclasses.replace(job, status="cancelled"))  # the press ends it, in its words
    assert place.edits == [(job.id, "queued 0.5", True)] and place.ends == []
    await h.close()


async def test_an_end_and_an_update_heard_while_the_status_is_sent_are_said_once_it_is_out(tmp_path):
    h, place, follower = await following(tmp_path)
    job = await waiting(h)
    follower.open(job.id)
    place.sending.add(job.id)
    await shown(follower, dataclasses.replace(job, status="running", progress=0.1))
    await shown(follower, job)  # the latest heard wins
    assert place.edits == []
    place.sending.discard(job.id)
    await follower.opened(job.id, True)
    await follower.throttle.settled(job.id)
    assert place.edits == [(job.id, "queued 0.5", True)]
    other = await waiting(h)
    follower.open(other.id)
    await follower.end(other.id, texts.CANCELLED_BY_COMMAND)
    assert place.ends == []
    await follower.opened(other.id, True)
    assert place.ends == [(other.id, texts.CANCELLED_BY_COMMAND)]
    await h.close()


async def test_where_a_sweeps_delivery_takes_its_status_a_sweep_with_a_result_in_is_not_ended(tmp_path):
    h = await make_sweeping(tmp_path)
    place = RecordingPlace()
    follower = StatusFollower(place, h.service, h.clock, sweep_result_takes_status=True)
    lead = await waiting(h, SWEEP, MAX)  # the higher tier's: it runs first
    other = await waiting(h, SWEEP)  # PRO's (each member may keep one sweep waiting)
    await shown(follower, lead)
    await shown(follower, other)
    await follower.end(other.id, texts.CANCELLED_BY_COMMAND)  # nothing of it done: ended
    [done] = await run_one_batch(h)  # the first sweep's first strength
    assert status_key(await h.service.jobs.job(done)) == lead.id
    await follower.end(lead.id, texts.CANCELLED_BY_COMMAND)
    assert place.ends == [(other.id, texts.CANCELLED_BY_COMMAND)]
    assert not follower.follows(lead.id)  # its delivery ends it
    await h.close()
