"""The strength sweep through the core: one request of three jobs (0.3, 0.5, 0.7), one rank,
three of the quota, delivered once as a whole; on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.commands import SWEEP_STRENGTHS
from bot.core.texts import UPGRADE_HINT
from bot.core.types import Accepted, Delivery, Reason, Refused
from tests.fakes import picture_bytes, wait_parked, wait_until
from tests.harness.service import FREE, MAX, PRO, Harness
from tests.harness.sweep import (
    SweepRecordingFrontEnd,
    fail_one_batch,
    make_sweeping,
    run_one_batch,
    sweep_records,
)

SWEEP = "/restyle ink drawing strength=sweep seed=5"


@pytest.fixture(params=["sqlite", "postgresql"], autouse=True)
def backend(request, monkeypatch) -> str:
    if request.param == "postgresql":
        monkeypatch.setattr(Harness, "store_url", request.getfixturevalue("pg_url"))
    return request.param


async def used_today(h: Harness, member) -> int:
    return (await h.service.jobs.me(member)).used_today


def frontend(h: Harness) -> SweepRecordingFrontEnd:
    assert isinstance(h.frontend, SweepRecordingFrontEnd)
    return h.frontend


async def test_a_sweep_queues_three_jobs_with_one_rank_and_three_of_the_quota(tmp_path):
    h = await make_sweeping(tmp_path)
    accepted = await h.submit(PRO, SWEEP)
    assert isinstance(accepted, Accepted), accepted
    assert len(accepted.sweep) == 3 and accepted.job_id == accepted.sweep[0]
    jobs = await sweep_records(h, accepted.job_id)
    assert [job.id for job in jobs] == list(accepted.sweep)
    assert [job.strength for job in jobs] == list(SWEEP_STRENGTHS) == [0.3, 0.5, 0.7]
    assert {job.seed for job in jobs} == {5} and {job.prompt for job in jobs} == {"ink drawing"}
    assert len({job.rank for job in jobs}) == 1
    assert [job.seq - jobs[0].seq for job in jobs] == [0, 1, 2]
    assert {job.sweep_id for job in jobs} == {accepted.job_id}
    assert [job.request_key for job in jobs] == [None, None, None]
    assert await used_today(h, PRO) == 3
    view = await h.service.jobs.job(accepted.sweep[2])
    assert (view.sweep_id, view.sweep_size, view.sweep_ended) == (accepted.job_id, 3, 0)
    await h.close()


async def test_a_free_member_is_refused_a_sweep_in_plain_words_with_the_upgrade_hint(tmp_path):
    h = await make_sweeping(tmp_path)
    refused = await h.submit(FREE, SWEEP)
    assert isinstance(refused, Refused) and refused.reason == Reason.SWEEP
    assert refused.text == (
        "The free tier cannot run strength sweeps; pick one strength, like strength=0.5. "
        f"The pro tier runs them. {UPGRADE_HINT}"
    )
    assert await used_today(h, FREE) == 0 and await h.store.count_by_status() == {}
    await h.close()

    (tmp_path / "none").mkdir()
    h = await make_sweeping(tmp_path / "none", extra_config="[tiers.pro]\nsweep = false\n[tiers.max]\nsweep = false")
    refused = await h.submit(PRO, SWEEP)
    assert isinstance(refused, Refused) and not refused.upgrade_hint and "pro tier cannot" in refused.text
    await h.close()


async def test_a_sweep_needs_room_for_three_in_the_queue_and_the_quota(tmp_path):
    h = await make_sweeping(tmp_path, extra_config="[tiers.pro]\nmax_queued = 5\ndaily_quota = 6")
    for i in range(3):
        assert isinstance(await h.submit(PRO, f"/restyle single {i}"), Accepted)
    refused = await h.submit(PRO, SWEEP)  # 3 waiting + 3 > 5
    assert isinstance(refused, Refused) and refused.reason == Reason.QUEUE_LIMIT
    assert "A sweep runs 3 jobs at once" in refused.text and "you have 3 waiting" in refused.text
    assert await used_today(h, PRO) == 3
    h.start_worker()
    await h.drain()
    assert isinstance(await h.submit(PRO, "/restyle one more"), Accepted)
    await h.drain()
    refused = await h.submit(PRO, SWEEP)  # 4 of 6 used: room for 2, not 3
    assert isinstance(refused, Refused) and refused.reason == Reason.QUOTA
    assert refused.message == (
        "A sweep runs 3 jobs; you have 2 of your 6 restyles left today. "
        "Ask for one strength instead, or sweep again after midnight UTC."
    )
    assert await used_today(h, PRO) == 4 and await h.store.count_by_status() == {"done": 4}
    await h.close()


async def test_the_members_next_request_is_pushed_back_one_turn_not_three(tmp_path):
    h = await make_sweeping(tmp_path)
    gap = h.config.queue.member_gap_s
    sweep = await h.submit(PRO, SWEEP)
    single = await h.submit(PRO, "/restyle after the sweep")
    jobs = await sweep_records(h, sweep.job_id)
    after = await h.store.job(single.job_id)
    assert after.rank == pytest.approx(jobs[0].rank + gap)
    await h.close()


async def test_an_upgrade_keeps_a_waiting_sweep_at_one_rank_and_one_turn(tmp_path):
    h = await make_sweeping(tmp_path)
    sweep = await h.submit(PRO, SWEEP)
    single = await h.submit(PRO, "/restyle after the sweep")
    await h.service.jobs.set_tier(PRO, "max", None, reason="admin", changed_by="test")
    jobs = await sweep_records(h, sweep.job_id)
    assert len({job.rank for job in jobs}) == 1 and {job.tier for job in jobs} == {"max"}
    after = await h.store.job(single.job_id)
    assert after.rank == pytest.approx(jobs[0].rank + h.config.queue.member_gap_s)
    await h.close()


async def test_a_sweep_is_delivered_once_as_a_whole_after_its_last_job(tmp_path):
    h = await make_sweeping(tmp_path)
    sweep = await h.submit(PRO, SWEEP)
    for ran in range(2):
        assert len(await run_one_batch(h)) == 1
        await h.quiet()
        assert frontend(h).sweeps == [] and frontend(h).results == []
        assert await h.store.undelivered_jobs(["test"], h.clock.now()) == []
        assert (await h.service.jobs.job(sweep.job_id)).sweep_ended == ran + 1
    await run_one_batch(h)
    await wait_until(lambda: frontend(h).sweeps, what="the sweep to be delivered")
    await h.quiet()
    (got,) = frontend(h).sweeps
    assert got.sweep_id == sweep.job_id
    assert [job.id for job in got.jobs] == list(sweep.sweep) and [j.strength for j in got.jobs] == [0.3, 0.5, 0.7]
    assert set(got.results) == set(sweep.sweep) and got.done == got.jobs
    assert got.sheet is not None
    with Image.open(io.BytesIO(got.results[sweep.job_id])) as one, Image.open(io.BytesIO(got.sheet)) as sheet:
        # the three results side by side, 4 px apart, over a strip of labels
        assert sheet.width == 3 * one.width + 2 * 4 and sheet.height > one.height
    assert frontend(h).results == [] and frontend(h).failures == []
    assert all(job.delivered_at is not None for job in await sweep_records(h, sweep.job_id))
    await h.service.dispatch.schedule_undelivered()
    await h.quiet()
    assert len(frontend(h).sweeps) == 1
    await h.close()


async def test_a_sweep_with_one_job_finished_at_a_restart_is_delivered_whole_after_it(tmp_path):
    h = await make_sweeping(tmp_path)
    sweep = await h.submit(PRO, SWEEP)
    await run_one_batch(h)
    await h.quiet()
    assert await h.store.undelivered_jobs(["test"], h.clock.now()) == []  # not offered alone
    await h.store.close()  # the process dies here

    h2 = await make_sweeping(tmp_path, clock=h.clock)
    if h2.store.shared:
        await h2.clock.advance(h2.config.store.lease_s + 1)
    h2.start_worker()
    await h2.drain()
    await wait_until(lambda: frontend(h2).sweeps, what="the sweep to be delivered after the restart")
    (got,) = frontend(h2).sweeps
    assert set(got.results) == set(sweep.sweep)
    assert await h2.store.undelivered_jobs(["test"], h2.clock.now()) == []
    await h2.close()


async def test_the_restart_offers_an_ended_sweep_once_by_its_lead(tmp_path):
    h = await make_sweeping(tmp_path)
    h.service.dispatch.frontends.clear()  # ends with nobody to deliver it, as if the process died
    sweep = await h.submit(PRO, SWEEP)
    for _ in range(3):
        await run_one_batch(h)
    assert await h.store.undelivered_jobs(["test"], h.clock.now()) == [sweep.job_id]
    await h.close()


async def test_a_sweep_with_one_failed_job_is_delivered_with_what_finished(tmp_path):
    h = await make_sweeping(tmp_path)
    sweep = await h.submit(PRO, SWEEP)
    await run_one_batch(h)
    assert await fail_one_batch(h, "The engine ran out of memory.") == [sweep.sweep[1]]
    await run_one_batch(h)
    await wait_until(lambda: frontend(h).sweeps, what="the sweep to be delivered")
    (got,) = frontend(h).sweeps
    assert set(got.results) == {sweep.sweep[0], sweep.sweep[2]}
    assert [(job.status, job.error) for job in got.jobs][1] == ("failed", "The engine ran out of memory.")
    assert [job.strength for job in got.done] == [0.3, 0.7]
    assert frontend(h).failures == []
    assert await used_today(h, PRO) == 2  # the failed job's unit came back
    await h.close()


async def test_a_sweep_whose_jobs_all_failed_is_one_failure(tmp_path):
    h = await make_sweeping(tmp_path)
    sweep = await h.submit(PRO, SWEEP)
    for _ in range(3):
        await fail_one_batch(h, "The engine ran out of memory.")
    await wait_until(lambda: frontend(h).failures, what="the failure notice")
    await h.quiet()
    assert [job.id for job in frontend(h).failures] == [sweep.job_id] and frontend(h).sweeps == []
    assert all(job.delivered_at is not None for job in await sweep_records(h, sweep.job_id))
    await h.close()


async def test_cancelling_one_job_of_a_sweep_cancels_the_whole_sweep(tmp_path):
    h = await make_sweeping(tmp_path)
    sweep = await h.submit(PRO, SWEEP)
    other = await h.submit(PRO, "/restyle not part of it")
    cancelled = await h.service.jobs.cancel(PRO, sweep.sweep[1])
    assert sorted(cancelled) == sorted(sweep.sweep)
    assert {job.status for job in await sweep_records(h, sweep.job_id)} == {"cancelled"}
    assert (await h.store.job(other.job_id)).status == "queued"
    assert await used_today(h, PRO) == 1
    h.start_worker()
    await h.drain()
    assert frontend(h).sweeps == [] and frontend(h).failures == []
    assert [d.job.id for d in frontend(h).results] == [other.job_id]
    await h.close()


async def test_a_sweep_cancelled_after_its_first_job_finished_delivers_that_one(tmp_path):
    h = await make_sweeping(tmp_path)
    sweep = await h.submit(PRO, SWEEP)
    await run_one_batch(h)
    await h.quiet()
    assert sorted(await h.service.jobs.cancel(PRO, sweep.job_id)) == sorted(sweep.sweep[1:])
    await wait_until(lambda: frontend(h).sweeps, what="what finished of the sweep to be delivered")
    (got,) = frontend(h).sweeps
    assert list(got.results) == [sweep.sweep[0]]
    assert [job.status for job in got.jobs] == ["done", "cancelled", "cancelled"]
    await h.close()


async def test_the_same_request_key_answers_the_same_sweep(tmp_path):
    h = await make_sweeping(tmp_path)
    jobs = h.service.jobs
    first = await jobs.submit(PRO, picture_bytes(), SWEEP, {"chat": 1}, request_key="update-7")
    again = await jobs.submit(PRO, picture_bytes(), SWEEP, {"chat": 1}, request_key="update-7")
    assert isinstance(first, Accepted) and isinstance(again, Accepted)
    assert not first.duplicate and again.duplicate
    assert again.sweep == first.sweep and again.job_id == first.job_id
    assert await used_today(h, PRO) == 3 and (await h.store.count_by_status()) == {"queued": 3}
    lead = await h.store.job(first.job_id)
    assert lead.request_key is not None
    await h.close()


async def test_the_try_three_strengths_button_keeps_the_picture_prompt_and_seed(tmp_path):
    h = await make_sweeping(tmp_path)
    first = await h.submit(PRO, '/restyle ink drawing strength=0.6 seed=77 no="text"')
    h.start_worker()
    await h.drain()
    assert isinstance(await h.service.jobs.sweep(FREE, first.job_id, {}), Refused)  # not theirs
    sweep = await h.service.jobs.sweep(PRO, first.job_id, {"chat": "x"}, request_key="press-1")
    assert isinstance(sweep, Accepted) and len(sweep.sweep) == 3 and sweep.seed == 77
    await h.drain()
    await wait_until(lambda: frontend(h).sweeps, what="the button's sweep to be delivered")
    ran = [h.engine.jobs[job_id] for job_id in sweep.sweep]
    assert [(job.seed, job.strength, job.prompt, job.negative_prompt) for job in ran] == [
        (77, s, "ink drawing", "text") for s in (0.3, 0.5, 0.7)
    ]
    assert {job.parent_job_id for job in await sweep_records(h, sweep.job_id)} == {first.job_id}
    (got,) = frontend(h).sweeps
    assert got.input_picture == (await h.store.job_pictures(first.job_id))["input"]
    await h.close()


async def test_keep_gives_a_delivery_and_again_works_from_the_kept_job(tmp_path):
    h = await make_sweeping(tmp_path)
    sweep = await h.submit(PRO, SWEEP)
    h.start_worker()
    await h.drain()
    await wait_until(lambda: frontend(h).sweeps, what="the sweep to be delivered")
    kept = await h.service.results.keep(PRO, sweep.sweep[1])
    assert isinstance(kept, Delivery) and kept.job.strength == 0.5 and kept.job.sweep_id == sweep.job_id
    assert kept.result_picture == frontend(h).sweeps[0].results[sweep.sweep[1]] and kept.input_picture
    assert isinstance(await h.service.results.keep(MAX, sweep.sweep[1]), Refused)
    stronger = await h.service.jobs.again(PRO, kept.job.id, {"chat": "x"}, strength_delta=0.15)
    assert isinstance(stronger, Accepted) and stronger.strength == pytest.approx(0.65) and not stronger.sweep
    await h.drain()
    assert [d.job.id for d in frontend(h).results] == [stronger.job_id]
    files = await h.service.results.sweep_files(PRO, sweep.job_id, "webp")
    assert [strength for strength, _ in files] == [0.3, 0.5, 0.7] and all(f[:4] == b"RIFF" for _, f in files)
    assert isinstance(await h.service.results.sweep_files(MAX, sweep.job_id, "webp"), Refused)
    await h.close()


async def test_a_sweep_job_batches_with_a_matching_job_of_another_member(tmp_path):
    # At 4 steps 0.5 and 0.7 both run 2 denoising steps (int(4 * s)) and 0.3 runs 1: only jobs
    # of equal effective steps share a pipeline call, so 0.3 goes in a batch of its own.
    h = await make_sweeping(tmp_path, max_batch=4)
    single = await h.submit(MAX, "/restyle neon city strength=0.5")
    sweep = await h.submit(PRO, SWEEP)
    h.start_worker()
    await h.drain()
    assert h.engine.batches[0] == [single.job_id, sweep.sweep[1], sweep.sweep[2]]
    assert h.engine.batches[1:] == [[sweep.sweep[0]]]
    await h.close()


async def test_a_front_end_without_deliver_sweep_gets_the_results_one_by_one_once(tmp_path):
    h = await make_sweeping(tmp_path, deliver_sweep=False)
    h.frontend.fail_next_deliveries = 0
    sweep = await h.submit(PRO, SWEEP)
    h.start_worker()
    await h.drain()
    await wait_until(lambda: len(h.frontend.results) == 3, what="the three results")
    await h.service.dispatch.schedule_undelivered()
    await h.quiet()
    assert [d.job.id for d in h.frontend.results] == list(sweep.sweep)
    assert all(job.delivered_at is not None for job in await sweep_records(h, sweep.job_id))
    await h.close()


async def test_a_failed_sweep_delivery_is_retried_whole(tmp_path):
    h = await make_sweeping(tmp_path)
    frontend(h).fail_next_sweeps = 1
    sweep = await h.submit(PRO, SWEEP)
    h.start_worker()
    await h.drain()
    start = h.clock.now()
    await wait_parked(h.clock, start + 2)  # the first try failed; the next waits 2 s
    assert frontend(h).sweeps == []
    await h.clock.advance(2)
    await wait_until(lambda: frontend(h).sweeps, what="the retried sweep")
    assert set(frontend(h).sweeps[0].results) == set(sweep.sweep)
    await h.close()


async def test_a_sweep_another_process_finishes_is_delivered_once_by_the_owning_front_end(tmp_path, backend):
    if backend == "sqlite":
        pytest.skip("one process per SQLite database")
    (tmp_path / "owner").mkdir()
    (tmp_path / "worker").mkdir()
    owner = await make_sweeping(tmp_path / "owner")
    worker = await make_sweeping(tmp_path / "worker", clock=owner.clock)
    worker.service.dispatch.frontends.clear()  # a worker-only process: it delivers nothing itself
    sweep = await owner.submit(PRO, SWEEP)
    for _ in range(3):
        assert len(await run_one_batch(worker)) == 1
    await wait_until(lambda: frontend(owner).sweeps, what="the owner to deliver the sweep the worker finished")
    await owner.quiet()
    assert [got.sweep_id for got in frontend(owner).sweeps] == [sweep.job_id]
    assert frontend(worker).sweeps == [] and frontend(owner).results == []
    await worker.close()
    await owner.close()


async def test_a_free_sweep_is_held_until_the_tiers_minimum_wait_like_one_result(tmp_path):
    h = await make_sweeping(tmp_path, extra_config="[tiers.free]\nsweep = true\nmax_queued = 3")
    sweep = await h.submit(FREE, SWEEP)
    assert isinstance(sweep, Accepted), sweep
    h.start_worker()
    await h.drain()
    due = (await h.store.job(sweep.job_id)).created_at + 40
    await wait_parked(h.clock, due)  # the sweep's delivery waits on the clock for the 40 s
    assert frontend(h).sweeps == []
    await h.clock.advance(39)
    await wait_parked(h.clock, due)
    assert frontend(h).sweeps == []
    await h.clock.advance(1.5)
    await wait_until(lambda: frontend(h).sweeps, what="the held-back sweep")
    assert frontend(h).results == [] and len(frontend(h).sweeps) == 1
    await h.close()
