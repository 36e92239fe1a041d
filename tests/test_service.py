"""The core with a real SQLite file in a temp dir, a fake clock and a stand-in engine."""

from __future__ import annotations

import asyncio

import pytest

from bot.clock import FakeClock
from bot.core.types import Accepted, Refused
from tests.fakes import picture_bytes, wait_parked, wait_until
from tests.harness.service import FREE, FREE2, MAX, PRO, Harness, make


@pytest.fixture(params=["sqlite", "postgresql"], autouse=True)
def backend(request, monkeypatch) -> str:
    """Every test in this module runs on both databases: the same behaviour on each."""
    if request.param == "postgresql":
        monkeypatch.setattr(Harness, "store_url", request.getfixturevalue("pg_url"))
    return request.param


def run_order(h: Harness, *before: Harness) -> list[str]:
    """Prompts of h's deliveries in the order the engines ran them (the harnesses `before` h
    first); deliveries that fall due at the same moment may race each other."""
    prompts = {d.job.id: d.job.prompt for d in h.frontend.results}
    batches = [batch for earlier in (*before, h) for batch in earlier.engine.batches]
    order = [prompts.pop(job_id) for batch in batches for job_id in batch if job_id in prompts]
    return order


async def test_max_before_pro_before_free(tmp_path):
    h = await make(tmp_path)
    await h.submit(FREE, "/restyle free one")
    await h.submit(PRO, "/restyle pro one")
    await h.submit(MAX, "/restyle max one")
    h.start_worker()
    await h.drain(advance=60)
    assert run_order(h) == ["max one", "pro one", "free one"]
    await h.close()


async def test_free_job_waits_behind_pro_job_that_came_later(tmp_path):
    h = await make(tmp_path)
    free = await h.submit(FREE, "/restyle free")
    await h.clock.advance(10)
    pro = await h.submit(PRO, "/restyle pro")
    assert isinstance(free, Accepted) and isinstance(pro, Accepted)
    assert pro.position == 0
    assert (await h.service.jobs.job(free.job_id)).position == 1
    h.start_worker()
    await h.drain(advance=60)
    assert [batch for batch in h.engine.batches] == [[pro.job_id], [free.job_id]]
    await h.close()


async def test_free_job_aged_past_a_tier_runs_before_newer_pro_job(tmp_path):
    h = await make(tmp_path, extra_config="[queue]\naging_s = 30")
    free = await h.submit(FREE, "/restyle patient")
    await h.clock.advance(31)
    pro = await h.submit(PRO, "/restyle hurried")
    assert (await h.service.jobs.job(free.job_id)).position == 0
    assert (await h.service.jobs.job(pro.job_id)).position == 1
    await h.close()


async def test_one_member_with_many_jobs_takes_turns_with_others(tmp_path):
    h = await make(tmp_path, extra_config="[tiers.free]\nmax_queued = 5")
    for i in range(3):
        await h.submit(FREE, f"/restyle fay {i}")
    await h.clock.advance(1)
    await h.submit(FREE2, "/restyle fred 0")
    h.start_worker()
    await h.drain(advance=120)
    assert run_order(h) == ["fay 0", "fred 0", "fay 1", "fay 2"]
    await h.close()


async def test_free_result_is_delivered_no_sooner_than_min_turnaround_but_gpu_is_not_held(tmp_path):
    h = await make(tmp_path)
    accepted = await h.submit(FREE)
    h.start_worker()
    await h.drain()
    assert h.engine.batches == [[accepted.job_id]]  # the engine ran at once
    due = (await h.service.jobs.job(accepted.job_id)).created_at + 40
    await wait_parked(h.clock, due)  # the delivery waits on the clock for the rest of the 40 s...
    assert h.frontend.results == []
    await h.clock.advance(39)
    await wait_parked(h.clock, due)  # ...and still does a second before
    assert h.frontend.results == []
    await h.clock.advance(1.5)
    await wait_until(lambda: h.frontend.results, what="the held-back result to be delivered")
    assert [d.job.id for d in h.frontend.results] == [accepted.job_id]
    assert h.frontend.delivered_at[0] - (await h.service.jobs.job(accepted.job_id)).created_at >= 40
    await h.close()


async def test_pro_result_is_delivered_at_once(tmp_path):
    h = await make(tmp_path)
    await h.submit(PRO)
    h.start_worker()
    await h.drain()
    assert len(h.frontend.results) == 1
    await h.close()


async def test_member_cannot_queue_more_than_max_queued(tmp_path):
    h = await make(tmp_path)  # free: max_queued 2
    assert isinstance(await h.submit(FREE), Accepted)
    assert isinstance(await h.submit(FREE), Accepted)
    refused = await h.submit(FREE)
    assert isinstance(refused, Refused) and refused.reason == "queue_limit"
    assert "2" in refused.message and refused.upgrade_hint and "/upgrade" in refused.text
    await h.close()


async def test_daily_quota_refuses_and_failed_or_cancelled_jobs_give_their_unit_back(tmp_path):
    h = await make(tmp_path, extra_config="[tiers.free]\ndaily_quota = 2\nmax_queued = 5")
    h.engine.fail_prompts.add("doomed")
    first = await h.submit(FREE, "/restyle doomed")
    second = await h.submit(FREE, "/restyle cancel me")
    refused = await h.submit(FREE, "/restyle one too many")
    assert isinstance(refused, Refused) and refused.reason == "quota"
    assert await h.service.jobs.cancel(FREE, second.job_id) == [second.job_id]
    h.start_worker()
    await h.drain(advance=60)
    assert [j.id for j in h.frontend.failures] == [first.job_id]
    assert "failed" in h.frontend.failures[0].error
    assert (await h.service.jobs.me(FREE)).used_today == 0
    assert isinstance(await h.submit(FREE, "/restyle now it fits"), Accepted)
    await h.close()


async def test_quota_starts_again_the_next_utc_day(tmp_path):
    h = await make(tmp_path, extra_config="[tiers.free]\ndaily_quota = 1")
    h.start_worker()
    assert isinstance(await h.submit(FREE), Accepted)
    await h.drain(advance=60)
    assert (await h.submit(FREE)).reason == "quota"
    await h.clock.advance(86400)
    assert isinstance(await h.submit(FREE), Accepted)
    await h.close()


async def test_a_failing_job_does_not_stop_the_next(tmp_path):
    h = await make(tmp_path)
    h.engine.crash_next = True
    bad = await h.submit(PRO, "/restyle first")
    good = await h.submit(MAX, "/restyle second")
    h.start_worker()
    await h.drain()
    assert [j.id for j in h.frontend.failures] == [good.job_id] or [j.id for j in h.frontend.failures] == [bad.job_id]
    assert len(h.frontend.results) == 1
    await h.close()


async def test_batch_fills_with_compatible_jobs_in_rank_order(tmp_path):
    h = await make(tmp_path, max_batch=2, extra_config="[tiers.free]\nmax_queued = 5")
    small = picture_bytes((64, 64))
    wide = picture_bytes((128, 64))
    a = await h.submit(MAX, "/restyle a", small)
    b = await h.submit(PRO, "/restyle b", wide)
    c = await h.submit(FREE, "/restyle c", small)
    d = await h.submit(FREE2, "/restyle d", small)
    h.start_worker()
    await h.drain(advance=60)
    assert h.engine.batches == [[a.job_id, c.job_id], [b.job_id], [d.job_id]]
    await h.close()


async def test_bad_command_and_bad_picture_are_refused_before_the_queue(tmp_path):
    h = await make(tmp_path)
    refused = await h.submit(FREE, "/restyle strength=7")
    assert isinstance(refused, Refused) and refused.reason == "command" and "1.0" in refused.message
    refused = await h.submit(FREE, "/restyle fine prompt", picture=b"this is not a picture")
    assert isinstance(refused, Refused) and refused.reason == "picture"
    assert (await h.store.count_by_status()).get("queued", 0) == 0 and (await h.service.jobs.me(FREE)).used_today == 0
    await h.close()


async def test_steps_over_the_tier_cap_are_refused_with_upgrade_hint(tmp_path):
    h = await make(tmp_path)
    refused = await h.submit(FREE, "/restyle x steps=40")
    assert refused.reason == "steps" and refused.upgrade_hint
    assert isinstance(await h.submit(MAX, "/restyle x steps=40"), Accepted)
    await h.close()


async def test_upgrade_re_ranks_waiting_jobs_and_is_audited(tmp_path):
    h = await make(tmp_path)
    other = await h.submit(FREE2)
    await h.clock.advance(5)
    mine = await h.submit(FREE)
    assert (await h.service.jobs.job(mine.job_id)).position == 1
    view = await h.service.jobs.set_tier(FREE, "pro", h.clock.now() + 30 * 86400, reason="payment", changed_by="stars:abc")
    assert view.tier == "pro"
    assert (await h.service.jobs.job(mine.job_id)).position == 0
    assert (await h.service.jobs.job(other.job_id)).position == 1
    account = await h.store.account_for("test", FREE.user_id, h.clock.now())
    changes = await h.store.tier_changes(account.id)
    assert changes[-1]["from_tier"] == "free" and changes[-1]["to_tier"] == "pro" and changes[-1]["reason"] == "payment"
    await h.close()


async def test_expired_tier_reads_as_free(tmp_path):
    h = await make(tmp_path)
    await h.service.jobs.set_tier(FREE, "max", h.clock.now() + 100, reason="admin", changed_by="test")
    assert (await h.service.jobs.me(FREE)).tier == "max"
    await h.clock.advance(101)
    assert (await h.service.jobs.me(FREE)).tier == "free"
    await h.close()


async def test_cancel_removes_only_the_members_waiting_jobs(tmp_path):
    h = await make(tmp_path)
    mine = await h.submit(FREE)
    theirs = await h.submit(FREE2)
    assert await h.service.jobs.cancel(FREE2, mine.job_id) == []
    assert await h.service.jobs.cancel(FREE) == [mine.job_id]
    assert (await h.service.jobs.job(mine.job_id)).status == "cancelled"
    assert (await h.service.jobs.job(theirs.job_id)).position == 0
    await h.close()


async def test_service_dropped_mid_run_and_reopened_loses_nothing_and_sends_nothing_twice(tmp_path):
    clock = FakeClock()
    h = Harness(tmp_path, clock=clock, extra_config="[tiers.free]\nmax_queued = 5")
    await h.open()
    delivered_first = await h.submit(FREE, "/restyle delivered before the stop")
    h.start_worker()
    await h.drain(advance=60)
    assert len(h.frontend.results) == 1
    done_not_delivered = await h.submit(FREE, "/restyle done but waiting for the 40 s")
    await h.drain()
    waiting = [await h.submit(FREE2, f"/restyle waiting {i}") for i in range(3)]
    # The process dies: no close(), the worker is simply gone.
    h.worker_task.cancel()
    await asyncio.gather(h.worker_task, return_exceptions=True)
    deliveries = list(h.service.dispatch._deliveries.values())
    for task in deliveries:
        task.cancel()
    await asyncio.gather(*deliveries, return_exceptions=True)
    await h.store.close()

    h2 = Harness(tmp_path, clock=clock, extra_config="[tiers.free]\nmax_queued = 5")
    await h2.open()
    if h2.store.shared:
        # A job the dead worker held stays 'running' until its lease runs out (other processes
        # may share the database): let it run out, or drain would wait for it in vain.
        await clock.advance(h2.config.store.lease_s + 1)
    h2.start_worker()
    await h2.drain(advance=60)
    await h2.drain(advance=60)
    got = [d.job.id for d in h2.frontend.results]
    assert sorted(got) == sorted([done_not_delivered.job_id] + [w.job_id for w in waiting])
    assert delivered_first.job_id not in got
    ran = [p for p in run_order(h2, h) if p.startswith("waiting")]
    if h2.store.shared:  # a job the dead worker held waits out its lease, so later ones may pass it
        ran.sort()
    assert ran == ["waiting 0", "waiting 1", "waiting 2"]
    await h2.close()


async def test_job_running_at_a_crash_runs_again_after_restart(tmp_path, backend):

    h = Harness(tmp_path)
    await h.open()
    h.engine.hold()  # hold the batch
    accepted = await h.submit(PRO, "/restyle interrupted")
    h.start_worker()
    await asyncio.to_thread(h.engine.started.wait, 5)
    assert (await h.service.jobs.job(accepted.job_id)).status == "running"
    h.worker_task.cancel()
    await asyncio.gather(h.worker_task, return_exceptions=True)
    await h.store.close()
    h.engine.gate.set()

    h2 = Harness(tmp_path, clock=h.clock)
    await h2.open()
    if backend == "sqlite":  # the one process: what ran is back in line at once
        assert await h2.store.position(accepted.job_id) == 0
    else:  # other workers may share the database: the job comes back when its lease runs out
        assert (await h2.service.jobs.job(accepted.job_id)).status == "running"
        assert await h2.store.requeue_expired(h.clock.now()) == []
        await h2.clock.advance(h2.config.store.lease_s + 1)
        assert await h2.store.requeue_expired(h.clock.now()) == [accepted.job_id]
        assert await h2.store.position(accepted.job_id) == 0
    h2.start_worker()
    await h2.drain(advance=60)
    assert [d.job.id for d in h2.frontend.results] == [accepted.job_id]
    await h2.close()


async def test_delivery_is_retried_until_the_front_end_takes_it(tmp_path):
    h = await make(tmp_path)
    h.frontend.fail_next_deliveries = 2
    await h.submit(PRO)
    h.start_worker()
    await h.drain()
    start = h.clock.now()
    await wait_parked(h.clock, start + 2)  # the first try failed; the next waits 2 s
    assert h.frontend.results == []
    await h.clock.advance(2)
    await wait_parked(h.clock, start + 7)  # the second failed too; then 5 s
    assert h.frontend.results == []
    await h.clock.advance(5)
    await wait_until(lambda: h.frontend.results, what="the third try to deliver")
    assert len(h.frontend.results) == 1
    await h.close()


async def test_again_reuses_the_picture_with_a_new_seed_and_stronger(tmp_path):
    h = await make(tmp_path)
    first = await h.submit(PRO, "/restyle ink drawing strength=0.5 seed=1")
    h.start_worker()
    await h.drain()
    again = await h.service.jobs.again(PRO, first.job_id, {"chat": "x"}, strength_delta=0.15)
    assert isinstance(again, Accepted)
    assert again.strength == pytest.approx(0.65) and again.seed != 1
    refused = await h.service.jobs.again(FREE, first.job_id, {})
    assert refused.reason == "not_yours"
    await h.drain()
    assert [d.job.prompt for d in h.frontend.results] == ["ink drawing", "ink drawing"]
    png = await h.service.results.result_file(PRO, first.job_id, "webp")
    assert png[:4] == b"RIFF"
    await h.close()


async def test_flood_is_limited_with_one_message(tmp_path):
    # Every front end admits each command before it parses it or asks the service anything.
    h = await make(tmp_path)
    answers = [h.service.jobs.admit(FREE) for _ in range(50)]
    floods = [a for a in answers if a is not None]
    assert len(floods) == 40 and all(a.reason == "flood" for a in floods)
    assert sum(1 for a in floods if not a.quiet) == 1
    assert h.service.jobs.admit(FREE2) is None  # per member
    assert isinstance(await h.submit(FREE2), Accepted)
    await h.clock.advance(10.0)
    assert h.service.jobs.admit(FREE) is None  # the window has passed
    await h.close()


async def test_delivered_pictures_are_recompressed_to_png_after_an_hour_and_still_serve(tmp_path):
    h = await make(tmp_path)
    accepted = await h.submit(PRO, "/restyle keep me small")
    h.start_worker()
    await h.drain()
    assert (await h.store.picture(accepted.job_id, "result"))[:4] in (b"II*\x00", b"MM\x00*")  # fast to write on the hot path
    assert await h.service.admin.compact_pictures() == 0  # not yet: delivered just now
    await h.clock.advance(3601)
    assert await h.service.admin.compact_pictures() == 2  # input and result
    assert (await h.store.picture(accepted.job_id, "result"))[:8] == b"\x89PNG\r\n\x1a\n"
    assert (await h.service.results.result_file(PRO, accepted.job_id, "jpeg"))[:3] == b"\xff\xd8\xff"
    again = await h.service.jobs.again(PRO, accepted.job_id, {})
    assert isinstance(again, Accepted)  # the compacted input still feeds a new run
    await h.drain()
    assert len(h.frontend.results) == 2
    await h.close()


async def test_a_batch_that_cannot_start_goes_back_in_line_and_the_worker_carries_on(tmp_path, monkeypatch):
    from bot.store import StoreError

    h = await make(tmp_path)
    accepted = await h.submit(PRO)
    real_pictures = h.store.pictures  # the batch's input pictures, read as it starts
    failures = []

    async def locked_once(job_ids, kind):
        if kind == "input" and not failures:
            failures.append(list(job_ids))
            raise StoreError("The database refused a query: database is locked.")
        return await real_pictures(job_ids, kind)

    monkeypatch.setattr(h.store, "pictures", locked_once)
    h.worker_task = asyncio.create_task(h.worker.run(retry_after_s=0.01))
    await h.drain()
    await h.drain()
    assert failures == [[accepted.job_id]]
    assert [d.job.id for d in h.frontend.results] == [accepted.job_id]
    await h.close()


# The same request twice (issue 18, item 9) ------------------------------------------------------


async def test_the_same_request_key_queues_one_job_and_spends_one_unit(tmp_path):
    h = await make(tmp_path)
    picture = picture_bytes()
    first = await h.service.jobs.submit(FREE, picture, "/restyle oil painting", {"chat": 1}, request_key="chat1:msg7")
    second = await h.service.jobs.submit(FREE, picture, "/restyle oil painting", {"chat": 1}, request_key="chat1:msg7")
    assert isinstance(first, Accepted) and isinstance(second, Accepted)
    assert not first.duplicate and second.duplicate
    assert (second.job_id, second.seed, second.strength) == (first.job_id, first.seed, first.strength)
    view = await h.service.jobs.me(FREE)
    assert view.used_today == 1 and [j.id for j in view.active_jobs] == [first.job_id]
    # Another request, or the same key from another member, is a request of its own.
    other = await h.service.jobs.submit(FREE, picture, "/restyle oil painting", {"chat": 1}, request_key="chat1:msg8")
    theirs = await h.service.jobs.submit(FREE2, picture, "/restyle oil painting", {"chat": 1}, request_key="chat1:msg7")
    assert not other.duplicate and not theirs.duplicate
    assert len({first.job_id, other.job_id, theirs.job_id}) == 3
    # A button pressed twice (again) queues once as well.
    h.start_worker()
    await h.drain()
    repeat = [await h.service.jobs.again(FREE, first.job_id, {}, request_key="press-1") for _ in range(2)]
    assert repeat[0].job_id == repeat[1].job_id and [r.duplicate for r in repeat] == [False, True]
    assert (await h.service.jobs.me(FREE)).used_today == 3
    await h.close()


async def test_a_submit_whose_commit_outcome_was_unknown_is_answered_from_its_key(tmp_path, monkeypatch):
    from bot.store import StoreError

    h = await make(tmp_path)
    h.service.jobs.store_retry_s = (0.0, 0.0, 0.0)
    real_add = h.store.add_job
    lost = []

    async def committed_but_the_answer_was_lost(record, **kwargs):
        stored = await real_add(record, **kwargs)
        if not lost:
            lost.append(record.id)
            raise StoreError("PostgreSQL refused a query: ConnectionDoesNotExistError: connection was closed.")
        return stored

    monkeypatch.setattr(h.store, "add_job", committed_but_the_answer_was_lost)
    picture = picture_bytes()
    accepted = await h.service.jobs.submit(FREE, picture, "/restyle oil painting", {"chat": 1}, request_key="update-41")
    assert isinstance(accepted, Accepted) and accepted.job_id == lost[0]
    # The front end (or the platform) sends the same request again: answered from its key.
    again = await h.service.jobs.submit(FREE, picture, "/restyle oil painting", {"chat": 1}, request_key="update-41")
    assert isinstance(again, Accepted) and again.job_id == accepted.job_id and again.duplicate
    view = await h.service.jobs.me(FREE)
    assert view.used_today == 1 and [j.id for j in view.active_jobs] == [accepted.job_id]
    assert (await h.store.count_by_status()) == {"queued": 1}
    await h.close()


async def test_a_job_event_after_close_starts_no_task_nobody_would_end(tmp_path):
    """The worker's last batch can finish after the service closed (Harness.close stops the
    worker after it); its notifications must not leave tasks that are never awaited."""
    h = await make(tmp_path)
    accepted = await h.submit(FREE)
    await h.service.dispatch.close()
    h.service.dispatch.notify(accepted.job_id)
    h.service.dispatch.spawn(h.service.dispatch.publish(accepted.job_id, "progress", p=0.5))
    assert h.service.dispatch._background == set()
    await h.close()
