"""A job's outcome delivered: the shared flow (bot/chat/delivery.py) on the real service with a
recording surface; the flow records each step sent in the job's reply data in the real store. What each
platform sends for a step (Telegram's album, buttons message and document; Discord's one message
and its fallbacks) is tested against the strict fakes in the platforms' own test modules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.chat.delivery import (
    ALBUM,
    BUTTONS,
    FAILURE,
    FILE,
    SWEEP_ALBUM,
    SWEEP_BUTTONS,
    SWEEP_SHEET,
    deliver_failure,
    deliver_result,
    deliver_sweep,
    failure_reason,
    refused_for_good,
    sweep_alone,
    sweep_lead,
)
from bot.core.types import Accepted, Delivery, DeliveryFailed, JobView, SweepDelivery
from bot.i18n import translator
from bot.store import StoreError
from tests.fakes import wait_until
from tests.harness.recording_surface import RecordingDeliverySurface
from tests.harness.service import PRO, Harness, make
from tests.harness.sweep import SweepRecordingFrontEnd, make_sweeping

FALLBACK = "the picture engine failed."


async def delivered(h: Harness, text: str) -> Delivery:
    accepted = await h.submit(PRO, text)
    assert isinstance(accepted, Accepted), accepted
    h.start_worker()
    await h.drain()
    await wait_until(lambda: h.frontend.results, what="the result to be delivered")
    return h.frontend.results[-1]


async def delivered_sweep(tmp_path) -> tuple[Harness, SweepDelivery]:
    h = await make_sweeping(tmp_path)
    accepted = await h.submit(PRO, "/restyle ink drawing strength=sweep seed=5")
    assert isinstance(accepted, Accepted), accepted
    h.start_worker()
    await h.drain()
    frontend = h.frontend
    assert isinstance(frontend, SweepRecordingFrontEnd)
    await wait_until(lambda: frontend.sweeps, what="the sweep to be delivered")
    return h, frontend.sweeps[-1]


async def sent_steps(h: Harness, job_id: str) -> list[str]:
    job = await h.service.jobs.job(job_id)
    assert job is not None
    return list(job.reply.get("sent", []))


async def test_a_result_sends_its_pictures_then_its_buttons_and_records_each(tmp_path):
    h = await make(tmp_path)
    delivery = await delivered(h, "/restyle oil painting seed=3")
    surface = RecordingDeliverySurface()
    await deliver_result(h.service, surface, delivery.job)
    assert surface.sends == [ALBUM, BUTTONS]
    assert await sent_steps(h, delivery.job.id) == sorted([ALBUM, BUTTONS])
    await h.close()


async def test_a_result_in_a_format_asked_for_ends_with_the_file(tmp_path):
    h = await make(tmp_path)
    delivery = await delivered(h, "/restyle oil painting format=webp seed=3")
    surface = RecordingDeliverySurface()
    await deliver_result(h.service, surface, delivery.job)
    assert surface.sends == [ALBUM, BUTTONS, FILE]
    await h.close()


async def test_a_retry_sends_only_the_steps_not_recorded_before(tmp_path):
    h = await make(tmp_path)
    delivery = await delivered(h, "/restyle oil painting format=png seed=3")
    first = RecordingDeliverySurface(fail_at=BUTTONS)
    with pytest.raises(DeliveryFailed):
        await deliver_result(h.service, first, delivery.job)
    assert first.sends == [ALBUM]
    assert await sent_steps(h, delivery.job.id) == [ALBUM]
    # A retry (or a restart's re-offer) reads what was recorded from the job's reply.
    retry = RecordingDeliverySurface()
    await deliver_result(h.service, retry, delivery.job)
    assert retry.sends == [BUTTONS, FILE]
    again = RecordingDeliverySurface()
    await deliver_result(h.service, again, delivery.job)
    assert again.sends == []
    await h.close()


async def test_a_refusal_for_good_tells_the_member_and_is_permanent():
    told: list[str] = []

    async def tell() -> None:
        told.append("no rights")

    refused = await refused_for_good("no rights in the chat", tell)
    assert refused.permanent and str(refused) == "no rights in the chat" and told == ["no rights"]
    quiet = await refused_for_good("chat gone")
    assert quiet.permanent and told == ["no rights"]


async def test_a_sweep_with_its_sheet_is_one_picture_recorded_in_its_lead(tmp_path):
    h, sweep = await delivered_sweep(tmp_path)
    assert sweep.sheet is not None and sweep_alone(sweep) == sweep.sheet
    lead = sweep_lead(sweep)
    assert lead.id == sweep.sweep_id
    surface = RecordingDeliverySurface()
    await deliver_sweep(h.service, surface, sweep)
    assert surface.sends == [SWEEP_SHEET]
    assert await sent_steps(h, lead.id) == [SWEEP_SHEET]
    again = RecordingDeliverySurface()
    await deliver_sweep(h.service, again, sweep)
    assert again.sends == []
    await h.close()


async def test_a_sweep_without_a_sheet_sends_its_results_together_then_its_buttons(tmp_path):
    h, sweep = await delivered_sweep(tmp_path)
    no_sheet = replace(sweep, sheet=None)
    assert len(no_sheet.done) == 3 and sweep_alone(no_sheet) is None
    surface = RecordingDeliverySurface(fail_at=SWEEP_BUTTONS)
    with pytest.raises(DeliveryFailed):
        await deliver_sweep(h.service, surface, no_sheet)
    retry = RecordingDeliverySurface()
    await deliver_sweep(h.service, retry, no_sheet)
    assert (surface.sends, retry.sends) == ([SWEEP_ALBUM], [SWEEP_BUTTONS])
    await h.close()


async def test_a_sweep_with_one_result_and_no_sheet_shows_that_result_alone(tmp_path):
    h, sweep = await delivered_sweep(tmp_path)
    kept = sweep.done[1]
    one = replace(sweep, sheet=None, results={kept.id: sweep.results[kept.id]})
    assert sweep_alone(one) == sweep.results[kept.id]
    surface = RecordingDeliverySurface()
    await deliver_sweep(h.service, surface, one)
    assert surface.sends == [SWEEP_SHEET]
    await h.close()


async def test_a_failure_is_told_once_in_the_members_language(tmp_path):
    h = await make(tmp_path)
    h.engine.fail_prompts.add("doomed")
    accepted = await h.submit(PRO, "/restyle doomed")
    assert isinstance(accepted, Accepted), accepted
    h.start_worker()
    await h.drain(advance=60)
    await wait_until(lambda: h.frontend.failures, what="the failure to be delivered")
    failed: JobView = h.frontend.failures[0]
    assert failed.error
    assert failure_reason(failed, translator(None), FALLBACK) == failed.error
    unexplained = replace(failed, error=None)
    assert failure_reason(unexplained, translator("es"), FALLBACK) == "el motor de imágenes falló."
    surface = RecordingDeliverySurface()
    await deliver_failure(h.service, surface, failed)
    again = RecordingDeliverySurface()
    await deliver_failure(h.service, again, failed)
    assert (surface.sends, again.sends) == ([FAILURE], [])
    await h.close()


async def test_a_front_ends_note_in_the_reply_keeps_the_steps_recorded_and_the_language(tmp_path):
    h = await make(tmp_path)
    delivery = await delivered(h, "/restyle oil painting seed=3")
    surface = RecordingDeliverySurface(fail_at=BUTTONS)
    with pytest.raises(DeliveryFailed):
        await deliver_result(h.service, surface, delivery.job)
    # Telegram notes a chat's new id while the flow's record of the album is in the same reply.
    await h.service.jobs.add_to_reply(delivery.job.id, {"chat_id": 42, "lang": "es"})
    job = await h.service.jobs.job(delivery.job.id)
    assert job is not None
    assert job.reply["sent"] == [ALBUM] and job.reply["chat_id"] == 42 and job.reply["lang"] == "es"
    assert {k: v for k, v in job.reply.items() if k not in ("sent", "chat_id", "lang")} == {
        k: v for k, v in delivery.job.reply.items() if k not in ("sent", "chat_id", "lang")
    }
    await h.close()


async def test_a_result_sent_again_on_purpose_is_not_recorded(tmp_path):
    h = await make(tmp_path)
    delivery = await delivered(h, "/restyle oil painting seed=3")
    for _ in range(2):  # a kept result sent for a press: each press sends it
        surface = RecordingDeliverySurface()
        await deliver_result(h.service, surface, delivery.job, recorded=False)
        assert surface.sends == [ALBUM, BUTTONS]
    assert await sent_steps(h, delivery.job.id) == []
    await h.close()


async def test_a_step_sent_but_not_recorded_is_logged_with_the_job_and_the_rest_still_go(tmp_path, monkeypatch, caplog):
    h = await make(tmp_path)
    delivery = await delivered(h, "/restyle oil painting format=png seed=3")

    async def database_down(job_id: str, step: str) -> None:
        raise StoreError("database is locked")

    monkeypatch.setattr(h.service.dispatch, "step_sent", database_down)
    surface = RecordingDeliverySurface()
    await deliver_result(h.service, surface, delivery.job)
    assert surface.sends == [ALBUM, BUTTONS, FILE]  # each went out once, none again for the failed record
    assert [r.getMessage() for r in caplog.records if "could not be recorded" in r.getMessage()] == [
        f"job {delivery.job.id}: {step} was sent but could not be recorded" for step in (ALBUM, BUTTONS, FILE)
    ]
    await h.close()
