"""The status throttle (bot/chat/status.py) on a FakeClock with a recording edit function: when
a status message is edited and with what, for every platform at once."""

from __future__ import annotations

import asyncio

import pytest

from bot.chat import texts
from bot.chat.status import GONE, SHOWN, Budget, EditOutcome, StatusThrottle, held_s, hold
from bot.chat.surface import Style, plain
from bot.clock import FakeClock
from bot.core.types import JobView
from tests.fakes import wait_parked, wait_until

pytestmark = pytest.mark.timeout(10)

PRIVATE = Budget(message_interval_s=3.0, chat_interval_s=1.0)
GROUP = Budget(message_interval_s=10.0, chat_interval_s=10.0)


class Recorder:
    """The platform's edit: records (job, text, with Cancel, time) and answers `answers[job]`
    (SHOWN when none is queued); `gate` set to an Event holds every edit until it is set."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.edits: list[tuple[str, str, bool, float]] = []
        self.answers: dict[str, list[EditOutcome]] = {}
        self.gate: asyncio.Event | None = None

    async def __call__(self, job_id: str, text: str, with_cancel: bool) -> EditOutcome:
        self.edits.append((job_id, text, with_cancel, self.clock.now()))
        if self.gate is not None:
            await self.gate.wait()
        queued = self.answers.get(job_id)
        return queued.pop(0) if queued else SHOWN

    def texts(self, job_id: str) -> list[str]:
        return [text for job, text, _, _ in self.edits if job == job_id]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def edits(clock) -> Recorder:
    return Recorder(clock)


@pytest.fixture
async def throttle(clock, edits):
    made = StatusThrottle(edits, clock)
    yield made
    for task in made.tasks():
        task.cancel()
    await asyncio.gather(*made.tasks(), return_exceptions=True)


async def test_the_latest_wanted_text_wins_once_the_interval_is_over(throttle, clock, edits):
    t0 = clock.now()
    throttle.track("a", chat=1, budget=PRIVATE, shown="Queued: #3", edited_at=t0)
    for text in ("Queued: #2", "Queued: #1", "Restyling…"):
        throttle.want("a", text, True)
    await wait_parked(clock, t0 + 3.0)
    assert edits.edits == []  # within the message's interval
    await clock.advance(3.0)
    await throttle.settled("a")
    assert edits.edits == [("a", "Restyling…", True, t0 + 3.0)]


async def test_the_last_text_is_never_dropped_even_when_it_comes_during_an_edit(throttle, clock, edits):
    t0 = clock.now()
    throttle.track("a", chat=1, budget=PRIVATE)  # never edited: the first edit goes at once
    edits.gate = asyncio.Event()
    throttle.want("a", "Restyling… 10%", True)
    await wait_until(lambda: edits.edits, what="the first edit")
    throttle.want("a", "Restyling… 90%", True)  # while the first edit is on its way
    edits.gate.set()
    await wait_parked(clock, t0 + 3.0)
    await clock.advance(3.0)
    await throttle.settled("a")
    assert edits.texts("a") == ["Restyling… 10%", "Restyling… 90%"]
    assert edits.edits[1][3] == t0 + 3.0


async def test_a_text_already_shown_is_not_edited_again(throttle, clock, edits):
    throttle.track("a", chat=1, budget=PRIVATE, shown="Queued: #1", edited_at=clock.now() - 60)
    throttle.want("a", "Queued: #1", True)
    await throttle.settled("a")
    assert edits.edits == []


async def test_two_jobs_in_one_group_share_its_edit_budget(throttle, clock, edits):
    t0 = clock.now()
    throttle.track("a", chat=-100, budget=GROUP)
    throttle.track("b", chat=-100, budget=GROUP)
    throttle.track("c", chat=7, budget=PRIVATE)  # another chat: its own budget
    throttle.want("a", "Restyling…", True)
    await throttle.settled("a")
    throttle.want("b", "Queued: #1", True)
    throttle.want("c", "Queued: #1", True)
    await throttle.settled("c")
    await wait_parked(clock, t0 + 10.0)  # b waits for the group's next edit
    assert [job for job, *_ in edits.edits] == ["a", "c"]
    await clock.advance(10.0)
    await throttle.settled("b")
    assert edits.edits[-1] == ("b", "Queued: #1", True, t0 + 10.0)


async def test_a_flood_hold_delays_every_job_in_that_chat(throttle, clock, edits):
    t0 = clock.now()
    budget = Budget(message_interval_s=1.0)
    for job_id, chat in (("a", 1), ("b", 1), ("c", 2)):
        throttle.track(job_id, chat=chat, budget=budget)
    edits.answers["a"] = [hold(30)]
    throttle.want("a", "Restyling… 10%", True)
    await wait_parked(clock, t0 + 30.0)
    throttle.want("a", "Restyling… 50%", True)
    throttle.want("b", "Queued: #1", True)
    throttle.want("c", "Queued: #1", True)
    await throttle.settled("c")  # chat 2 is not held
    assert [job for job, *_ in edits.edits] == ["a", "c"]
    await clock.advance(29.0)
    await wait_parked(clock, t0 + 30.0)  # still held, both jobs
    assert [job for job, *_ in edits.edits] == ["a", "c"]
    await clock.advance(1.0)
    await throttle.settled("a")
    await throttle.settled("b")
    assert edits.texts("a") == ["Restyling… 10%", "Restyling… 50%"]  # the latest, after the hold
    assert edits.texts("b") == ["Queued: #1"]
    assert all(at >= t0 + 30.0 for job, _, _, at in edits.edits[2:])


async def test_a_held_text_is_shown_after_the_hold_when_nothing_newer_came(throttle, clock, edits):
    t0 = clock.now()
    throttle.track("a", chat=1, budget=PRIVATE)
    edits.answers["a"] = [hold(5)]
    throttle.want("a", "Restyling… 10%", True)
    await wait_parked(clock, t0 + 5.0)
    await clock.advance(5.0)
    await throttle.settled("a")
    assert edits.texts("a") == ["Restyling… 10%", "Restyling… 10%"]


async def test_gone_stops_the_edits_of_that_job_only(throttle, clock, edits):
    budget = Budget(message_interval_s=1.0)
    throttle.track("a", chat=1, budget=budget)
    throttle.track("b", chat=1, budget=budget)
    edits.answers["a"] = [GONE]
    throttle.want("a", "Queued: #1", True)
    await throttle.settled("a")
    assert throttle.is_final("a")
    await clock.advance(60.0)
    task = throttle.want("a", "Restyling…", True)
    assert task is None or task.done()  # nothing runs for it
    throttle.want("b", "Restyling…", True)
    await throttle.settled("b")
    assert edits.texts("a") == ["Queued: #1"] and edits.texts("b") == ["Restyling…"]


async def test_a_finished_job_is_not_edited_again(throttle, clock, edits):
    t0 = clock.now()
    throttle.track("a", chat=1, budget=PRIVATE, shown="Queued: #1", edited_at=t0)
    task = throttle.want("a", "Restyling…", True)
    await wait_parked(clock, t0 + 3.0)
    throttle.finish("a")  # delivered while the edit waited for its turn
    assert task is not None
    await asyncio.gather(task, return_exceptions=True)
    assert throttle.want("a", "Restyling… 50%", True) is None and not throttle.tracks("a")
    await clock.advance(10.0)
    assert edits.edits == [] and throttle.tasks() == []


async def test_a_queued_place_moves_in_a_group_only_by_a_step_worth_an_edit(throttle, clock, edits):
    def worth(shown: int | None, new: int) -> bool:
        return shown is None or abs(shown - new) >= 2

    budget = Budget(message_interval_s=1.0, chat_interval_s=1.0, position_step=worth)
    t0 = clock.now()
    throttle.track("a", chat=-100, budget=budget, shown="Queued: #9", position=9, edited_at=t0 - 60)
    assert throttle.want("a", "Queued: #8", True, position=8) is None  # one place: not worth it
    throttle.want("a", "Queued: #7", True, position=7)
    await throttle.settled("a")
    throttle.want("a", "Restyling…", True)  # not a place: always worth it
    await wait_parked(clock, t0 + 1.0)
    await clock.advance(1.0)
    await throttle.settled("a")
    assert edits.texts("a") == ["Queued: #7", "Restyling…"]


async def test_a_result_going_out_in_the_chat_goes_first(throttle, clock, edits):
    throttle.track("a", chat=1, budget=PRIVATE)
    out = asyncio.Event()

    async def send_result() -> None:
        async with throttle.sending(1):
            await out.wait()

    sender = asyncio.create_task(send_result())
    await wait_until(lambda: throttle._chat_sending, what="the result going out")
    task = throttle.want("a", "Restyling…", True)
    await wait_until(lambda: throttle._sends_done._waiters, what="the edit waiting for the result")  # type: ignore[attr-defined]
    assert task is not None and not task.done() and edits.edits == []
    out.set()
    await sender
    await throttle.settled("a")
    assert edits.texts("a") == ["Restyling…"]


async def test_edit_now_shows_the_first_status_outside_the_budget_and_counts_as_an_edit(throttle, clock, edits):
    t0 = clock.now()
    throttle.track("a", chat=1, budget=Budget(message_interval_s=1.5))
    await throttle.edit_now("a", "Queued: #1", True)
    throttle.want("a", "Restyling…", True)
    await wait_parked(clock, t0 + 1.5)
    await clock.advance(1.5)
    await throttle.settled("a")
    assert edits.edits == [("a", "Queued: #1", True, t0), ("a", "Restyling…", True, t0 + 1.5)]


async def test_finishing_a_job_lets_an_edit_on_its_way_end_and_starts_no_other(throttle, clock, edits):
    throttle.track("a", chat=1, budget=PRIVATE)
    edits.gate = asyncio.Event()
    task = throttle.want("a", "Restyling… 10%", True)
    await wait_until(lambda: edits.edits, what="the edit on its way")
    throttle.want("a", "Restyling… 90%", True)
    throttle.finish("a")
    edits.gate.set()
    assert task is not None
    await task  # ended by itself, not cancelled mid-request
    assert edits.texts("a") == ["Restyling… 10%"]


MARKED = Style(bold=plain, code=lambda text: f"`{text}`", date=str, moment=str, times_note="",
               member=lambda platform, user_id, name: name, place=lambda entry: None, queue_log_hint="",
               with_style=plain, text_limit=4096)  # fmt: skip


def job_view(status: str, **more) -> JobView:
    return JobView(id="a", platform="test", user_id="1", reply={}, prompt="ink", negative_prompt=None, strength=0.5,
                   seed=1, steps=4, output_format=None, tier="free", status=status, width=64, height=64,
                   created_at=0.0, **more)  # fmt: skip


def test_only_a_done_result_not_yet_due_is_held():
    now = 1000.0
    assert held_s(job_view("done", deliver_after=now + 25), now) == 25
    assert held_s(job_view("done", deliver_after=now), now) is None  # due: it is going out
    assert held_s(job_view("done", deliver_after=now + 25, delivered=True), now) is None
    assert held_s(job_view("running", deliver_after=now + 25), now) is None
    assert held_s(job_view("done"), now) is None


async def test_a_held_result_is_said_once_with_its_seconds(throttle, clock, edits):
    throttle.track("a", chat=1, budget=Budget(message_interval_s=1.0))
    throttle.want("a", "Restyling… 90%", True)
    await throttle.settled("a")
    done = job_view("done", deliver_after=clock.now() + 25)
    await clock.advance(1.0)
    throttle.want("a", texts.held_result(held_s(done, clock.now()), done.tier, MARKED), False, settled=True)
    throttle.want("a", "Restyling… 100%", True)  # an update read before the job was done, late
    await throttle.settled("a")
    await clock.advance(10.0)
    throttle.want("a", texts.held_result(held_s(done, clock.now()), done.tier, MARKED), False, settled=True)
    await throttle.settled("a")
    assert edits.edits[1:] == [
        ("a", "Ready — it arrives in about 24 s on the free plan. `/upgrade` to get results as soon as they're done.",
         False, clock.now() - 10.0),
    ]  # fmt: skip
