"""One sharp test per rule the README promises, written so that breaking the rule fails it.

Each test here was checked by breaking its rule on purpose in a copy of the code (a one-line
change to the product) and seeing the test fail; what was broken is named in the test's
docstring. The tests run the real service on SQLite with the fake clock and the stand-in engine
(tests/fakes.py), so they take milliseconds and never sleep for a fixed time: where nothing may
have happened yet they wait for the condition that makes the check meaningful (a delivery parked
on the clock, the engine holding a batch).
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import threading
from dataclasses import dataclass, field

import pytest
from PIL import Image

from bot.core.types import Accepted, Delivery, Member, PaymentResult, Refused
from bot.service import RestyleService
from bot.store import JobRecord, Store
from tests.fakes import RecordingFrontEnd, picture_bytes, wait_parked, wait_until
from tests.harness.service import FREE, FREE2, MAX, PRO, Harness, make

PRO2 = Member("test", "pro-2", "Pia")
MAX2 = Member("test", "max-2", "Mo")
ADMIN = Member("web", "admin-1", "Ada")


async def rules(tmp_path, extra: str = "", **kwargs) -> Harness:
    """The service with members of every tier: FREE, FREE2 (free), PRO, PRO2 (pro), MAX, MAX2 (max)."""
    h = await make(tmp_path, extra_config=extra, **kwargs)
    for member, tier in ((PRO2, "pro"), (MAX2, "max")):
        await h.service.jobs.set_tier(member, tier, None, reason="admin", changed_by="test")
    return h


def _ids(names: dict[str, Accepted | Refused]) -> dict[str, str]:
    by_id = {}
    for name, answer in names.items():
        assert isinstance(answer, Accepted), f"{name} was refused: {answer}"
        by_id[answer.job_id] = name
    return by_id


async def waiting_order(h: Harness, names: dict[str, Accepted | Refused]) -> list[str]:
    """The names of the waiting jobs in the order they will run, as the queue lists them; the
    positions members are shown must say the same."""
    by_id = _ids(names)
    listed = [by_id[job_id] for job_id, _tier in await h.store.waiting(100) if job_id in by_id]
    positions = {by_id[job_id]: await h.store.position(job_id) for job_id in by_id}
    assert [positions[name] for name in listed] == list(range(len(listed))), positions
    return listed


async def run_order(h: Harness, names: dict[str, Accepted | Refused]) -> list[str]:
    """The names of the jobs in the order the engine ran them (runs the worker to the end)."""
    by_id = _ids(names)
    h.start_worker()
    await h.drain(advance=60)
    return [by_id[job_id] for batch in h.engine.batches for job_id in batch if job_id in by_id]


# Queue order and aging ------------------------------------------------------------------------


async def test_a_free_job_that_waited_aging_s_ties_a_pro_job_arriving_now_and_wins_on_arrival(tmp_path):
    """Breaks: the head start (tier level x aging_s) made bigger or smaller; ties broken by
    anything but arrival."""
    h = await rules(tmp_path)  # aging_s = 30
    # Three sizes, so each job is its own batch and the order is the queue's alone.
    jobs = {"free": await h.submit(FREE, "/restyle patient", picture_bytes((64, 64)))}
    await h.clock.advance(29)
    jobs["pro a second too early"] = await h.submit(PRO, "/restyle early", picture_bytes((128, 64)))
    await h.clock.advance(1)
    jobs["pro exactly aging_s later"] = await h.submit(PRO2, "/restyle tie", picture_bytes((64, 128)))
    expected = ["pro a second too early", "free", "pro exactly aging_s later"]
    assert await waiting_order(h, jobs) == expected
    assert await run_order(h, jobs) == expected
    await h.close()


@pytest.mark.parametrize(
    "ranks", ["", "[tiers.free]\nrank = -3\n[tiers.pro]\nrank = 5\n[tiers.max]\nrank = 40\n"], ids=["default", "spaced"]
)
async def test_max_jobs_start_two_aging_periods_ahead_of_free_ones_whatever_the_rank_numbers(tmp_path, ranks):
    """Breaks: the head start counted in configured rank numbers instead of tier levels, or max
    given one period (or three) instead of two."""
    h = await rules(tmp_path, ranks)
    jobs = {"free": await h.submit(FREE)}
    await h.clock.advance(59)
    jobs["max 59 s later"] = await h.submit(MAX)
    await h.clock.advance(2)
    jobs["max 61 s later"] = await h.submit(MAX2)
    assert await waiting_order(h, jobs) == ["max 59 s later", "free", "max 61 s later"]
    assert await run_order(h, jobs) == ["max 59 s later", "free", "max 61 s later"]
    await h.close()


# Turns between members ------------------------------------------------------------------------


async def test_each_of_a_members_jobs_waits_one_gap_behind_their_previous_one(tmp_path):
    """Breaks: the gap counted from the member's first (not last) waiting job, or not at all."""
    h = await rules(tmp_path, "[tiers.free]\nmax_queued = 5")  # member_gap_s = 30
    jobs = {f"fay {i}": await h.submit(FREE, f"/restyle fay {i}") for i in range(3)}  # ranks t, t+30, t+60
    await h.clock.advance(31)
    jobs["fred"] = await h.submit(FREE2, "/restyle fred")  # rank t+31
    assert await waiting_order(h, jobs) == ["fay 0", "fay 1", "fred", "fay 2"]
    assert await run_order(h, jobs) == ["fay 0", "fay 1", "fred", "fay 2"]
    await h.close()


async def test_member_gap_comes_from_the_config(tmp_path):
    """Breaks: member_gap_s ignored (a fixed gap)."""
    h = await rules(tmp_path, "[tiers.free]\nmax_queued = 5\n[queue]\nmember_gap_s = 100")
    jobs = {f"fay {i}": await h.submit(FREE, f"/restyle fay {i}") for i in range(2)}  # t, t+100
    await h.clock.advance(99)
    jobs["fred"] = await h.submit(FREE2, "/restyle fred")  # t+99
    assert await waiting_order(h, jobs) == ["fay 0", "fred", "fay 1"]
    await h.close()


# Upgrades re-rank waiting jobs, keeping their spacing --------------------------------------------


async def test_an_upgrade_re_ranks_a_members_waiting_jobs_and_keeps_them_spaced(tmp_path):
    """Breaks: the re-rank forgets the member term (the jobs jump ahead as a block), or spaces
    them in the wrong order."""
    h = await rules(tmp_path, "[tiers.free]\nmax_queued = 5")
    jobs = {f"fay {i}": await h.submit(FREE, f"/restyle fay {i}") for i in range(3)}
    await h.clock.advance(1)
    jobs["pia"] = await h.submit(PRO2, "/restyle pia")  # pro: rank t+1-30
    assert await waiting_order(h, jobs) == ["pia", "fay 0", "fay 1", "fay 2"]
    await h.service.jobs.set_tier(FREE, "pro", None, reason="admin", changed_by="test")
    # As pro, Fay's jobs rank t-30, t, t+30: only the first passes Pia, the others keep their turns.
    assert await waiting_order(h, jobs) == ["fay 0", "pia", "fay 1", "fay 2"]
    await h.close()


async def test_an_upgrade_keeps_a_waiting_job_spaced_behind_the_members_running_job(tmp_path):
    """Breaks: the re-rank ignores the member's running job."""
    h = await rules(tmp_path)
    h.engine.hold()  # hold the first batch
    running = await h.submit(FREE, "/restyle runs first")
    waiting = await h.submit(FREE, "/restyle waits")  # rank t+30, behind the running one
    h.start_worker()
    await asyncio.to_thread(h.engine.started.wait, 5)
    assert h.engine.batches == [[running.job_id]]
    await h.clock.advance(1)
    pia = await h.submit(PRO2, "/restyle pia")  # rank t+1-30
    await h.service.jobs.set_tier(FREE, "pro", None, reason="admin", changed_by="test")
    # As pro the waiting job could rank t-30, but it stays one gap behind the running job (t).
    assert await waiting_order(h, {"waits": waiting, "pia": pia}) == ["pia", "waits"]
    h.engine.gate.set()
    await h.drain(advance=60)
    await h.close()


# Turnaround ----------------------------------------------------------------------------------


async def test_the_free_tier_wait_counts_from_the_request_not_from_when_the_job_ran(tmp_path):
    """Breaks: deliver_after counted from the end of the run (min_turnaround_s after `now`)."""
    h = await rules(tmp_path)  # free: min_turnaround_s = 40
    accepted = await h.submit(FREE)
    requested = h.clock.now()
    await h.clock.advance(30)  # it waited in line for 30 s before the GPU took it
    h.start_worker()
    await h.drain()
    assert (await h.service.jobs.job(accepted.job_id)).deliver_after == requested + 40
    await wait_parked(h.clock, requested + 40)
    assert h.frontend.results == []
    await h.clock.advance(10)
    await wait_until(lambda: h.frontend.results, what="the result, 40 s after the request")
    assert h.frontend.delivered_at == [requested + 40]
    await h.close()


async def test_a_free_job_that_waited_longer_than_the_turnaround_is_delivered_when_done(tmp_path):
    """Breaks: the 40 s added to the time the job finished."""
    h = await rules(tmp_path)
    await h.submit(FREE)
    await h.clock.advance(45)
    h.start_worker()
    await h.drain()
    await wait_until(lambda: h.frontend.results, what="the result at once: 45 s have passed since the request")
    assert h.frontend.delivered_at == [h.clock.now()]
    await h.close()


# Limits ----------------------------------------------------------------------------------------


async def test_steps_up_to_the_tier_cap_are_taken_and_one_more_is_refused(tmp_path):
    """Breaks: the cap off by one (>= instead of >), or another tier's cap used."""
    h = await rules(tmp_path)  # free: max_steps 8; pro: 20
    assert isinstance(await h.submit(FREE, "/restyle x steps=8"), Accepted)
    refused = await h.submit(FREE2, "/restyle x steps=9")
    assert isinstance(refused, Refused) and refused.reason == "steps" and "8" in refused.message
    assert isinstance(await h.submit(PRO, "/restyle x steps=20"), Accepted)
    assert (await h.submit(PRO2, "/restyle x steps=21")).reason == "steps"
    await h.close()


@pytest.mark.parametrize("member, largest, smaller", [(FREE, 512, 0), (PRO, 768, 512), (MAX, 1024, 768)])
async def test_pictures_are_scaled_to_the_members_tier_max_side(tmp_path, member, largest, smaller):
    """Breaks: one max_side for every tier."""
    h = await rules(tmp_path)
    answer = await h.submit(member, picture=picture_bytes((1200, 900)))
    assert isinstance(answer, Accepted)
    job = await h.service.jobs.job(answer.job_id)
    assert smaller < max(job.width, job.height) <= largest
    with Image.open(io.BytesIO(await h.service.results.input_picture(answer.job_id))) as stored:
        assert stored.size == (job.width, job.height)
    await h.close()


async def test_requests_racing_each_other_never_pass_the_queue_limit_or_the_daily_quota(tmp_path):
    """Breaks: the limits checked only before the picture is prepared, not where the job is
    stored (a double click, or two apps at once, let a third job in)."""
    h = await rules(tmp_path, "[tiers.free]\nmax_queued = 2\n[tiers.pro]\ndaily_quota = 2")
    queued = await asyncio.gather(*(h.submit(FREE, f"/restyle f{i}") for i in range(3)))
    assert sorted(type(a).__name__ for a in queued) == ["Accepted", "Accepted", "Refused"]
    assert [a.reason for a in queued if isinstance(a, Refused)] == ["queue_limit"]
    paid = await asyncio.gather(*(h.submit(PRO, f"/restyle p{i}") for i in range(3)))
    assert [a.reason for a in paid if isinstance(a, Refused)] == ["quota"]
    assert (await h.service.jobs.me(PRO)).used_today == 2 and (await h.service.jobs.me(FREE)).used_today == 2
    assert (await h.store.count_by_status()) == {"queued": 4}
    await h.close()


# Strength and seeds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, strength",
    [
        ("/restyle ink", 0.3),  # the configured default (0.3 here, not the built-in 0.5)
        ("/restyle ink, low strength", 0.25),
        ("/restyle ink, medium strength", 0.5),
        ("/restyle ink high strength", 0.8),
        ("/restyle ink strength=0.65", 0.65),
    ],
)
async def test_the_strength_asked_for_is_the_strength_the_engine_gets(tmp_path, text, strength):
    """Breaks: the default strength hard-coded, a phrase mapped to another value, or the
    strength lost on the way to the engine."""
    h = await rules(tmp_path, "default_strength = 0.3")  # lands in [bot]
    answer = await h.submit(PRO, text)
    assert isinstance(answer, Accepted) and answer.strength == strength
    h.start_worker()
    await h.drain()
    assert h.engine.jobs[answer.job_id].strength == strength
    assert [d.job.strength for d in h.frontend.results] == [strength]
    await h.close()


async def test_a_given_seed_is_used_and_reported_and_jobs_without_one_get_different_seeds(tmp_path):
    """Breaks: seed= ignored, or the random seed fixed."""
    h = await rules(tmp_path)
    given = await h.submit(PRO, "/restyle ink seed=1234")
    first = await h.submit(MAX, "/restyle ink")
    second = await h.submit(MAX2, "/restyle ink")
    h.start_worker()
    await h.drain()
    assert given.seed == 1234 and h.engine.jobs[given.job_id].seed == 1234
    assert first.seed != second.seed and all(0 <= a.seed < 2**32 for a in (first, second))
    seeds = {d.job.id: d.job.seed for d in h.frontend.results}
    assert seeds == {a.job_id: h.engine.jobs[a.job_id].seed for a in (given, first, second)}
    assert seeds[first.job_id] == first.seed  # the seed the member was told is the one that ran
    await h.close()


# Batching --------------------------------------------------------------------------------------


async def test_jobs_with_different_effective_steps_never_share_a_batch(tmp_path):
    """Breaks: the batch key without the effective steps (int(steps * strength)), or with the
    strength itself (jobs that could share would not)."""
    h = await rules(tmp_path, max_batch=4)
    a = await h.submit(MAX, "/restyle a steps=4 strength=0.5")  # 2 denoising steps
    b = await h.submit(PRO, "/restyle b steps=4 strength=0.8")  # 3
    c = await h.submit(MAX2, "/restyle c steps=4 strength=0.6")  # 2 again: may share with a
    h.start_worker()
    await h.drain()
    assert h.engine.batches == [[a.job_id, c.job_id], [b.job_id]]
    await h.close()


async def test_jobs_with_equal_effective_but_different_scheduled_steps_never_share_a_batch(tmp_path):
    """Breaks: the batch key without the scheduled steps."""
    h = await rules(tmp_path, max_batch=4)
    a = await h.submit(MAX, "/restyle a steps=4 strength=1.0")  # 4 of 4 steps
    b = await h.submit(PRO, "/restyle b steps=8 strength=0.5")  # 4 of 8
    h.start_worker()
    await h.drain()
    assert h.engine.batches == [[a.job_id], [b.job_id]]
    await h.close()


# Ownership -------------------------------------------------------------------------------------


async def test_only_the_member_who_asked_can_use_a_jobs_buttons_files_or_cancel_it(tmp_path):
    """Breaks: any one of the ownership checks (again, result file, input file, cancel)."""
    h = await rules(tmp_path)
    done = await h.submit(PRO, "/restyle mine")
    h.start_worker()
    await h.drain()
    h.engine.hold()  # the next job is held by the engine while we look
    waiting = await h.submit(PRO, "/restyle also mine")

    assert (await h.service.jobs.again(FREE, done.job_id, {})).reason == "not_yours"
    assert (await h.service.results.result_file(FREE, done.job_id, "png")).reason == "not_yours"
    assert (await h.service.results.input_file(FREE, done.job_id, "png")).reason == "not_yours"
    assert await h.service.jobs.cancel(FREE, waiting.job_id) == []
    assert (await h.service.jobs.job(waiting.job_id)).status in ("queued", "running")
    # ...while the owner can do all of it.
    assert isinstance(await h.service.results.result_file(PRO, done.job_id, "png"), bytes)
    assert isinstance(await h.service.results.input_file(PRO, done.job_id, "png"), bytes)
    assert await h.service.jobs.cancel(PRO, waiting.job_id) == [waiting.job_id]
    h.engine.gate.set()
    await h.close()


# Admin gates -----------------------------------------------------------------------------------

ADMIN_ACTIONS = {
    "ban": lambda s, who: s.admin.ban(who, FREE, "spam"),
    "unban": lambda s, who: s.admin.ban(who, FREE, "", banned=False),
    "job log": lambda s, who: s.admin.job_log(who),
    "grant": lambda s, who: s.billing.grant(who, FREE, "max", 30),
    "revoke": lambda s, who: s.billing.revoke(who, PRO),
    "refund": lambda s, who: s.billing.refund(who, "ch-1"),
    "payment to refund": lambda s, who: s.billing.payment_to_refund(who, "ch-1"),
}


@pytest.mark.parametrize("action", ADMIN_ACTIONS)
@pytest.mark.parametrize(
    "who", [Member("web", "admin-2"), Member("telegram", "admin-1")], ids=["another member", "same id on another app"]
)
async def test_admin_commands_are_refused_to_everyone_not_listed_and_change_nothing(tmp_path, action, who):
    """Breaks: any one admin check removed, or admins matched by user id without the app."""
    h = await rules(tmp_path, 'admins = ["web:admin-1"]')  # lands in [bot]
    before = {m: (await h.service.jobs.me(m)).tier for m in (FREE, PRO)}
    answer = await ADMIN_ACTIONS[action](h.service, who)
    assert isinstance(answer, Refused) and answer.reason == "not_admin"
    assert {m: (await h.service.jobs.me(m)).tier for m in (FREE, PRO)} == before
    assert isinstance(await h.submit(FREE), Accepted)  # not banned
    account = await h.store.account_for("test", FREE.user_id, h.clock.now())
    assert await h.store.admin_actions(account.id) == []
    # The listed admin is not refused.
    assert not isinstance(await ADMIN_ACTIONS["job log"](h.service, ADMIN), Refused)
    await h.close()


# Payments once per charge id --------------------------------------------------------------------

PLANS = """
[payments]
secret = "test-secret"
[plans.pro_month]
tier = "pro"
days = 30
stars = 250
"""


async def test_one_charge_delivered_twice_at_once_extends_the_tier_once(tmp_path):
    """Breaks: the store's once-per-charge-id guard (two updates racing past the service's
    "seen before?" check both extend)."""
    h = await rules(tmp_path, PLANS)
    _plan, payload = await h.service.billing.invoice_payload(FREE, "pro_month")
    now = h.clock.now()
    results = await asyncio.gather(*(h.service.billing.record_payment(FREE, payload, "ch-7", 250) for _ in range(2)))
    assert all(isinstance(r, PaymentResult) for r in results)
    assert sorted(r.duplicate for r in results) == [False, True]
    assert (await h.service.jobs.me(FREE)).tier_expires_at == now + 30 * 86400
    account = await h.store.account_for("test", FREE.user_id, now)
    assert [c["reason"] for c in await h.store.tier_changes(account.id)] == ["payment"]
    await h.close()


# Delivery once -----------------------------------------------------------------------------------


@dataclass
class HeldFrontEnd(RecordingFrontEnd):
    """Holds each delivery until `release` is set: a send in progress."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    sending: list[str] = field(default_factory=list)

    async def deliver_result(self, delivery: Delivery) -> None:
        self.sending.append(delivery.job.id)
        await self.release.wait()
        await super().deliver_result(delivery)


async def test_a_result_one_front_end_is_sending_is_not_sent_by_another(tmp_path):
    """Breaks: the delivery lease (a second front end on the same database sends it too)."""
    h = await rules(tmp_path)
    first = HeldFrontEnd()
    h.service.dispatch.register(first)
    accepted = await h.submit(PRO)
    h.start_worker()
    await h.drain(deliveries=False)
    await wait_until(lambda: first.sending, what="the first front end to start sending")

    other_frontend = RecordingFrontEnd()
    other = RestyleService(h.config, h.store, h.clock, rng=random.Random(1))
    other.dispatch.register(other_frontend)
    # Another front end on the same database hears the job finished, and polls: both must see
    # the first one's delivery lease and leave the job alone.
    other.dispatch.on_job_event(json.dumps({"id": accepted.job_id, "event": "finished"}))
    await wait_until(lambda: not other.dispatch._background, what="the other front end to handle the event")
    await other.dispatch.schedule_undelivered()
    await other.dispatch.wait_delivered()
    assert other_frontend.results == []
    first.release.set()
    await wait_until(lambda: first.results, what="the first front end to finish sending")
    await h.service.dispatch.wait_delivered()
    await other.dispatch.schedule_undelivered()  # delivered now: nothing left for anyone
    await other.dispatch.wait_delivered()
    assert [d.job.id for d in first.results] == [accepted.job_id]
    assert other_frontend.results == [] and other_frontend.failures == []
    await other.close()
    await h.close()


async def test_a_delivered_result_is_not_sent_again_when_it_is_scheduled_again(tmp_path):
    """Breaks: delivery does not check that the job was delivered already."""
    h = await rules(tmp_path)
    accepted = await h.submit(PRO)
    h.start_worker()
    await h.drain()
    assert [d.job.id for d in h.frontend.results] == [accepted.job_id]
    h.service.dispatch.schedule_delivery(accepted.job_id)  # a late 'finished' event, a poll, a restart
    await h.service.dispatch.wait_delivered()
    assert [d.job.id for d in h.frontend.results] == [accepted.job_id]
    await h.close()


# Leases --------------------------------------------------------------------------------------


def _job(job_id: str, account_id: int, created_at: float) -> JobRecord:
    return JobRecord(
        id=job_id, account_id=account_id, platform="test", platform_user_id="u", reply={}, prompt="p",
        negative_prompt=None, strength=0.5, seed=1, steps=4, output_format=None, width=64, height=64,
        batch_key="k", tier="free", rank=0.0, seq=0, status="queued", created_at=created_at, quota_day="2027-01-15",
    )  # fmt: skip


async def test_a_live_lease_keeps_its_job_and_an_expired_one_puts_it_back_at_its_rank(tmp_path):
    """Breaks: the lease test reversed or dropped (live jobs taken from their worker), a renewal
    that does not extend, or a requeued job sent to the back of the line."""
    store = await Store.open(tmp_path)
    try:
        first = (await store.account_for("test", "a", 0.0)).id
        second = (await store.account_for("test", "b", 0.0)).id
        await store.add_job(_job("early", first, 100.0), quota_limit=9, max_active=9, rank_for=lambda _: 100.0)
        assert [j.id for j in await store.claim_batch(1, "w1", now=101.0, lease_until=131.0)] == ["early"]
        await store.add_job(_job("late", second, 110.0), quota_limit=9, max_active=9, rank_for=lambda _: 110.0)

        assert await store.requeue_expired(130.0) == []  # a second before the lease ends
        assert await store.renew_lease("w1", ["early"], 160.0) == 1
        assert await store.requeue_expired(150.0) == []  # after the first end, within the renewal
        assert (await store.job("early")).status == "running"

        assert await store.requeue_expired(161.0) == ["early"]  # the worker stopped renewing: it died
        assert [await store.position(j) for j in ("early", "late")] == [0, 1]  # at its original rank
        assert [j.id for j in await store.claim_batch(1, "w2", now=162.0, lease_until=192.0)] == ["early"]
        assert await store.renew_lease("w1", ["early"], 300.0) == 0  # the dead worker's lease is gone
    finally:
        await store.close()


# Moderation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ['/restyle a quiet street no="gore"', "/restyle a quiet street negative=GORE"])
async def test_a_blocked_word_in_the_negative_prompt_is_refused_too(tmp_path, text):
    """Breaks: the blocklist checks only the prompt."""
    h = await rules(tmp_path, '[moderation]\nblocked_words = ["gore"]')
    answer = await h.submit(PRO, text)
    assert isinstance(answer, Refused) and answer.reason == "rules"
    assert (await h.store.count_by_status()) == {} and (await h.service.jobs.me(PRO)).used_today == 0
    await h.close()


async def test_again_on_a_job_refuses_a_banned_member(tmp_path):
    """Breaks: the ban checked only for new uploads, not for the buttons that run a job again."""
    h = await rules(tmp_path, 'admins = ["web:admin-1"]')
    done = await h.submit(PRO)
    h.start_worker()
    await h.drain()
    await h.service.admin.ban(ADMIN, PRO, "spam")
    answer = await h.service.jobs.again(PRO, done.job_id, {})
    assert isinstance(answer, Refused) and answer.reason == "banned"
    assert (await h.store.count_by_status()).get("queued", 0) == 0
    await h.close()


# Safety --------------------------------------------------------------------------------------


async def test_a_result_the_checker_flags_is_withheld_costs_no_quota_and_others_go_through(tmp_path):
    """Breaks: the checker's verdict ignored (the checker sees the results, not the inputs)."""
    h = await rules(tmp_path, max_batch=2)
    seen: list[tuple[int, int, int]] = []

    def flags_white(picture: Image.Image) -> bool:  # the fake engine inverts: black in, white out
        seen.append(picture.getpixel((0, 0)))
        return picture.getpixel((0, 0)) == (255, 255, 255)

    h.service.batches.safety_check = flags_white
    flagged = await h.submit(PRO, "/restyle a", picture_bytes(color=(0, 0, 0)))
    fine = await h.submit(MAX, "/restyle b", picture_bytes(color=(0, 0, 200)))
    h.start_worker()
    await h.drain()
    assert sorted(seen) == [(255, 255, 55), (255, 255, 255)]  # the results, not the inputs
    assert [d.job.id for d in h.frontend.results] == [fine.job_id]
    assert [j.id for j in h.frontend.failures] == [flagged.job_id] and "safety filter" in h.frontend.failures[0].error
    assert (await h.service.jobs.me(PRO)).used_today == 0 and (await h.service.jobs.me(MAX)).used_today == 1
    assert not await h.store.has_picture(flagged.job_id, "result")
    assert isinstance(await h.service.results.result_file(PRO, flagged.job_id, "png"), Refused)
    await h.close()


async def test_a_checker_that_fails_withholds_that_result_and_the_worker_carries_on(tmp_path, caplog):
    """Breaks (found so): a checker that raises (out of memory, say) killed the worker; the
    result was neither sent nor failed and every later job waited until a restart."""
    h = await rules(tmp_path)

    def breaks_on_white(picture: Image.Image) -> bool:
        if picture.getpixel((0, 0)) == (255, 255, 255):
            raise RuntimeError("CUDA out of memory (fake)")
        return False

    h.service.batches.safety_check = breaks_on_white
    unchecked = await h.submit(PRO, "/restyle a", picture_bytes(color=(0, 0, 0)))
    h.start_worker()
    await h.drain()
    later = await h.submit(MAX, "/restyle b", picture_bytes(color=(0, 0, 200)))
    await h.drain()
    assert [d.job.id for d in h.frontend.results] == [later.job_id]
    assert [j.id for j in h.frontend.failures] == [unchecked.job_id]
    assert (await h.service.jobs.me(PRO)).used_today == 0
    assert any(unchecked.job_id in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    await h.close()


# The harness itself ------------------------------------------------------------------------------


async def test_drain_fails_the_test_when_the_queue_never_empties(tmp_path):
    """A drain that gave up silently let the checks after it pass on a half-run queue."""
    h = await rules(tmp_path)
    h.engine.hold()  # the engine never finishes
    await h.submit(PRO)
    h.start_worker()
    with pytest.raises(AssertionError, match="drain"):
        await h.drain(timeout=0.2)
    h.engine.gate.set()
    await h.drain()
    await h.close()
