"""The buttons under results, statuses and sweeps, pressed: the shared flow (bot/chat/presses.py)
on the real service with a recording surface. What each platform does with the surface's calls
(Telegram's one answer per press, Discord's deferral and ephemeral follow-ups) is tested
against the strict fakes in the platforms' own test modules."""

from __future__ import annotations

import io

from PIL import Image

from bot.chat import texts
from bot.chat.presses import Press, handle_press
from bot.chat.sweep import SENDING_SWEEP_FILES, SWEEP_GONE
from bot.commands import SWEEP_STRENGTHS
from bot.core.texts import UPGRADE_HINT
from bot.core.types import Accepted, Delivery, Reason, Refused
from tests.fakes import wait_until
from tests.harness.recording_surface import RecordingSurface
from tests.harness.service import FREE, FREE2, PRO, Harness
from tests.harness.sweep import SweepRecordingFrontEnd, make_sweeping

SWEEP = "/restyle ink drawing strength=sweep seed=5"
NOT_YOURS = "Only the member who asked for this picture can use its buttons."
presses = 0


def press(action: str, job_id: str, fmt: str = "", key: str | None = None) -> Press:
    """A press of its own (a fresh request key) unless `key` names one seen before."""
    global presses
    presses += 1
    return Press(action, job_id, key or f"press:{presses}", fmt)


async def pressed(h: Harness, member, the_press: Press) -> RecordingSurface:
    surface = RecordingSurface()
    await handle_press(h.service, member, the_press, surface)
    return surface


async def done_job(h: Harness, member=PRO, text: str = "/restyle oil painting strength=0.5 seed=11") -> str:
    accepted = await h.submit(member, text)
    assert isinstance(accepted, Accepted), accepted
    if h.worker_task is None:
        h.start_worker()
    await h.drain()
    return accepted.job_id


async def delivered_sweep(h: Harness) -> Accepted:
    accepted = await h.submit(PRO, SWEEP)
    assert isinstance(accepted, Accepted), accepted
    h.start_worker()
    await h.drain()
    frontend = h.frontend
    assert isinstance(frontend, SweepRecordingFrontEnd)
    await wait_until(lambda: frontend.sweeps, what="the sweep to be delivered")
    return accepted


def new_job(surface: RecordingSurface) -> Accepted:
    ((accepted, reply),) = surface.said("queued")
    assert reply == {"chat": "recorded", "answers": surface.said("reply_data")[0], "place": 1}
    return accepted


async def test_someone_elses_press_is_refused_and_starts_nothing(tmp_path):
    h = await make_sweeping(tmp_path)
    job_id = await done_job(h)
    jobs = await h.store.count_by_status()
    for action, fmt in (("again", ""), ("sweep", ""), ("file", "png"), ("compare", ""), ("cancel", ""), ("keep", "")):
        surface = await pressed(h, FREE2, press(action, job_id, fmt))
        assert surface.calls == [("notice", NOT_YOURS)], action
    sweepfiles = await pressed(h, FREE2, press("sweepfiles", job_id))
    assert sweepfiles.calls == [("notice", "Only the member who asked for these pictures can use their buttons.")]
    assert await h.store.count_by_status() == jobs
    await h.close()


async def test_a_gone_job_says_so_and_a_gone_sweep_says_how_to_run_one(tmp_path):
    h = await make_sweeping(tmp_path)
    for action in ("again", "file", "cancel"):
        surface = await pressed(h, PRO, press(action, "0000000000", "png" if action == "file" else ""))
        assert surface.calls == [("notice", "That job is gone; send the picture again with /restyle.")]
    for action in ("keep", "sweepfiles"):
        assert (await pressed(h, PRO, press(action, "0000000000"))).calls == [("notice", SWEEP_GONE)]
    await h.close()


async def test_cancel_cancels_a_waiting_job_and_ends_its_status(tmp_path):
    h = await make_sweeping(tmp_path)
    accepted = await h.submit(PRO, "/restyle oil painting")  # no worker: it waits
    surface = await pressed(h, PRO, press("cancel", accepted.job_id))
    assert surface.calls == [
        ("cancelling", accepted.job_id),
        ("acknowledge", "Cancelled."),
        ("finish_status", (accepted.job_id, texts.CANCELLED)),
    ]
    assert (await h.service.jobs.job(accepted.job_id)).status == "cancelled"
    await h.close()


async def test_cancel_after_the_job_finished_is_too_late(tmp_path):
    h = await make_sweeping(tmp_path)
    job_id = await done_job(h)
    surface = await pressed(h, PRO, press("cancel", job_id))
    assert surface.calls == [("cancelling", job_id), ("notice", "Too late to cancel: that job has already finished.")]
    assert (await h.service.jobs.job(job_id)).status == "done"
    await h.close()


async def test_a_result_file_in_each_format_is_named_by_its_job(tmp_path):
    h = await make_sweeping(tmp_path)
    job_id = await done_job(h)
    magic = {"png": b"\x89PNG", "webp": b"RIFF", "jpeg": b"\xff\xd8\xff"}
    for fmt, label, extension in (("png", "PNG", "png"), ("webp", "WebP", "webp"), ("jpeg", "JPEG", "jpg")):
        surface = await pressed(h, PRO, press("file", job_id, fmt))
        assert surface.names == ["acknowledge", "send_file"]
        assert surface.said("acknowledge") == [f"Sending the {label} file…"]
        ((name, data),) = surface.said("send_file")
        assert name == f"restyle-{job_id}.{extension}" and data.startswith(magic[fmt])
    await h.close()


async def test_a_file_that_cannot_fit_the_platforms_limit_is_explained(tmp_path):
    h = await make_sweeping(tmp_path)
    job_id = await done_job(h)
    surface = RecordingSurface(file_limit=10)
    await handle_press(h.service, PRO, press("file", job_id, "png"), surface)
    assert surface.names == ["acknowledge", "notice"] and not surface.said("send_file")
    await h.close()


async def test_side_by_side_sends_the_before_and_after_in_one_picture(tmp_path):
    h = await make_sweeping(tmp_path)
    job_id = await done_job(h)
    surface = await pressed(h, PRO, press("compare", job_id))
    assert surface.said("acknowledge") == ["Sending the before and after…"]
    ((data, caption),) = surface.said("send_picture")
    assert caption == "Before | after" and data[:3] == b"\xff\xd8\xff"
    with Image.open(io.BytesIO(data)) as picture:
        width, height = picture.size
    assert width > height  # the two side by side
    await h.close()


async def test_again_subtler_and_stronger_start_a_job_at_their_strengths(tmp_path):
    h = await make_sweeping(tmp_path)
    job_id = await done_job(h)
    for action, strength in (("again", 0.5), ("subtler", 0.35), ("stronger", 0.65)):
        surface = await pressed(h, PRO, press(action, job_id))
        assert surface.names == ["place_refusal", "reply_data", "acknowledge", "queued"], action
        accepted = new_job(surface)
        assert abs(accepted.strength - strength) < 1e-9, action
        assert surface.said("acknowledge") == [f"Queued: #{accepted.position + 1} in line"]
        job = await h.service.jobs.job(accepted.job_id)
        assert job.reply["answers"] == job_id  # where the surface said its answer goes
    await h.close()


async def test_try_three_strengths_keeps_the_picture_prompt_and_seed(tmp_path):
    h = await make_sweeping(tmp_path)
    job_id = await done_job(h)
    surface = await pressed(h, PRO, press("sweep", job_id))
    accepted = new_job(surface)
    assert len(accepted.sweep) == len(SWEEP_STRENGTHS) and accepted.seed == 11
    jobs = [await h.service.jobs.job(sweep_job) for sweep_job in accepted.sweep]
    assert [(job.strength, job.seed, job.prompt) for job in jobs] == [(s, 11, "oil painting") for s in SWEEP_STRENGTHS]
    await h.close()


async def test_a_free_member_is_refused_a_sweep_with_the_upgrade_hint(tmp_path):
    h = await make_sweeping(tmp_path)
    job_id = await done_job(h, FREE)
    counts = await h.store.count_by_status()
    surface = await pressed(h, FREE, press("sweep", job_id))
    assert surface.names == ["place_refusal", "reply_data", "not_started", "notice"]
    (said,) = surface.said("notice")
    assert said.startswith("The free tier cannot run strength sweeps") and said.endswith(UPGRADE_HINT)
    assert await h.store.count_by_status() == counts
    await h.close()


async def test_a_place_the_bot_does_not_work_in_starts_nothing(tmp_path):
    h = await make_sweeping(tmp_path)
    job_id = await done_job(h)
    counts = await h.store.count_by_status()
    told = RecordingSurface(refused_place=Refused(Reason.PLACE, "Not here."))
    await handle_press(h.service, PRO, press("again", job_id), told)
    assert told.calls == [("place_refusal", None), ("notice", "Not here.")]
    quiet = RecordingSurface(refused_place=Refused(Reason.PLACE, "Not here.", quiet=True))
    await handle_press(h.service, PRO, press("again", job_id), quiet)
    assert quiet.calls == [("place_refusal", None), ("acknowledge", None)]  # told once already
    assert await h.store.count_by_status() == counts
    await h.close()


async def test_keep_sends_that_result_and_stronger_goes_on_from_it(tmp_path):
    h = await make_sweeping(tmp_path)
    sweep = await delivered_sweep(h)
    surface = await pressed(h, PRO, press("keep", sweep.sweep[1]))
    assert surface.names == ["acknowledge", "send_result"] and surface.said("acknowledge") == [None]
    (kept,) = surface.said("send_result")
    assert isinstance(kept, Delivery) and kept.job.id == sweep.sweep[1] and kept.job.strength == 0.5
    assert kept.result_picture and kept.input_picture
    stronger = new_job(await pressed(h, PRO, press("stronger", kept.job.id)))
    assert abs(stronger.strength - 0.65) < 1e-9 and not stronger.sweep
    await h.close()


async def test_the_sweeps_files_are_named_by_strength(tmp_path):
    h = await make_sweeping(tmp_path)
    sweep = await delivered_sweep(h)
    surface = await pressed(h, PRO, press("sweepfiles", sweep.job_id))
    assert surface.said("acknowledge") == [SENDING_SWEEP_FILES]
    (files,) = surface.said("send_files")
    assert [name for name, _ in files] == ["restyle-0.3.png", "restyle-0.5.png", "restyle-0.7.png"]
    assert all(data.startswith(b"\x89PNG") for _, data in files)
    await h.close()


async def test_a_press_seen_again_starts_one_job_and_is_answered_once(tmp_path):
    h = await make_sweeping(tmp_path)
    job_id = await done_job(h)
    first = await pressed(h, PRO, press("stronger", job_id, key="press:repeated"))
    accepted = new_job(first)
    again = await pressed(h, PRO, press("stronger", job_id, key="press:repeated"))
    # Its answer was given the first time: the place made for it is taken back, nothing said.
    assert again.names == ["place_refusal", "reply_data", "not_started"]
    counts = await h.store.count_by_status()
    assert counts.get("queued", 0) + counts.get("running", 0) + counts.get("done", 0) == 2  # the first, and one more
    assert (await h.service.jobs.job(accepted.job_id)).reply["place"] == 1
    await h.close()
