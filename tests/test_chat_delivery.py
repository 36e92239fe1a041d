"""A job's outcome delivered: the shared flow (bot/chat/delivery.py) on the real service with a
recording surface that records each step sent in the job's reply, as Telegram does. What each
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
    surface = await RecordingDeliverySurface.over(h.service.jobs, delivery.job.id)
    await deliver_result(surface, delivery.job)
    assert surface.sends == [ALBUM, BUTTONS]
    assert await sent_steps(h, delivery.job.id) == sorted([ALBUM, BUTTONS])
    await h.close()


async def test_a_result_in_a_format_asked_for_ends_with_the_file(tmp_path):
    h = await make(tmp_path)
    delivery = await delivered(h, "/restyle oil painting format=webp seed=3")
    surface = await RecordingDeliverySurface.over(h.service.jobs, delivery.job.id)
    await deliver_result(surface, delivery.job)
    assert surface.sends == [ALBUM, BUTTONS, FILE]
    await h.close()


async def test_a_retry_sends_only_the_steps_not_recorded_before(tmp_path):
    h = await make(tmp_path)
    delivery = await delivered(h, "/restyle oil painting format=png seed=3")
    first = await RecordingDeliverySurface.over(h.service.jobs, delivery.job.id, fail_at=BUTTONS)
    with pytest.raises(DeliveryFailed):
        await deliver_result(first, delivery.job)
    assert first.sends == [ALBUM]
    assert await sent_steps(h, delivery.job.id) == [ALBUM]
    # A retry (or a restart's re-offer) reads what was recorded from the job's reply.
    retry = await RecordingDeliverySurface.over(h.service.jobs, delivery.job.id)
    await deliver_result(retry, delivery.job)
    assert retry.sends == [BUTTONS, FILE]
    again = await RecordingDeliverySurface.over(h.service.jobs, delivery.job.id)
    await deliver_result(again, delivery.job)
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
    surface = await RecordingDeliverySurface.over(h.service.jobs, lead.id)
    await deliver_sweep(surface, sweep)
    assert surface.sends == [SWEEP_SHEET]
    assert await sent_steps(h, lead.id) == [SWEEP_SHEET]
    again = await RecordingDeliverySurface.over(h.service.jobs, lead.id)
    await deliver_sweep(again, sweep)
    assert again.sends == []
    await h.close()


async def test_a_sweep_without_a_sheet_sends_its_results_together_then_its_buttons(tmp_path):
    h, sweep = await delivered_sweep(tmp_path)
    no_sheet = replace(sweep, sheet=None)
    assert len(no_sheet.done) == 3 and sweep_alone(no_sheet) is None
    surface = await RecordingDeliverySurface.over(h.service.jobs, sweep.sweep_id, fail_at=SWEEP_BUTTONS)
    with pytest.raises(DeliveryFailed):
        await deliver_sweep(surface, no_sheet)
    retry = await RecordingDeliverySurface.over(h.service.jobs, sweep.sweep_id)
    await deliver_sweep(retry, no_sheet)
    assert (surface.sends, retry.sends) == ([SWEEP_ALBUM], [SWEEP_BUTTONS])
    await h.close()


async def test_a_sweep_with_one_result_and_no_sheet_shows_that_result_alone(tmp_path):
    h, sweep = await delivered_sweep(tmp_path)
    kept = sweep.done[1]
    one = replace(sweep, sheet=None, results={kept.id: sweep.results[kept.id]})
    assert sweep_alone(one) == sweep.results[kept.id]
    surface = await RecordingDeliverySurface.over(h.service.jobs, sweep.sweep_id)
    await deliver_sweep(surface, one)
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
    surface = await RecordingDeliverySurface.over(h.service.jobs, failed.id)
    await deliver_failure(surface)
    again = await RecordingDeliverySurface.over(h.service.jobs, failed.id)
    await deliver_failure(again)
    assert (surface.sends, again.sends) == ([FAILURE], [])
    await h.close()
