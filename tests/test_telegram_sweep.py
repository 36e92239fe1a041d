"""The strength sweep on Telegram, driven for real: the whole App and python-telegram-bot against
the strict fake Bot API (tests/fake_telegram.py). One status message for the three jobs, one
captioned 3-up photo with a Keep button per strength and a Files button, Try 3 strengths under
every result, Keep going on with Again / Subtler / Stronger, the files as one album."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from PIL import Image

from bot.commands import STRENGTH_STEP, SWEEP_STRENGTHS
from bot.core.types import Member
from tests.fake_telegram import FakeTelegram, buttons
from tests.fakes import FakeEngine, picture_bytes, wait_until
from tests.harness.telegram_bot import (  # noqa: F401  (fixtures)
    ANA,
    BEN,
    JPEG_MAGIC,
    PNG_MAGIC,
    Turnstile,
    Bot,
    album_pictures,
    fake,
    photo_message,
    replies_to,
    settle,
    start_bot,
    wait_reply,
)

pytestmark = pytest.mark.timeout(30)


async def pro(bot: Bot, user: dict = ANA) -> None:
    """The pro tier runs sweeps (the free tier, by default, does not)."""
    member = Member("telegram", str(user["id"]))
    await bot.app.service.jobs.set_tier(member, "pro", None, reason="admin", changed_by="test")


def data_of(message_or_call: dict) -> list[str]:
    return [b["callback_data"] for b in buttons(message_or_call) if "callback_data" in b]


def markup_data(call: Any) -> list[tuple[str, str]]:
    return [(b["text"], b["callback_data"]) for row in call.params["reply_markup"]["inline_keyboard"] for b in row]


async def swept(bot: Bot, fake: FakeTelegram, request: dict) -> tuple[Any, dict]:
    """Wait for the sweep's answer to `request`: the sheet's sendPhoto call and the message it made."""
    [sheet] = await wait_reply(fake, request, method="sendPhoto")
    await bot.app.service.dispatch.wait_delivered()
    message = next(m for m in fake.sent(request["chat"]["id"]) if "photo" in m and m.get("caption") == sheet.params["caption"])
    return sheet, message


async def delivered_sweep(bot: Bot, fake: FakeTelegram, text: str = "/restyle ink drawing strength=sweep seed=7"):
    request = fake.message(ANA, text=text, reply_to=photo_message(fake))
    [status] = await wait_reply(fake, request)
    lead = status.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
    sheet, message = await swept(bot, fake, request)
    return request, lead, sheet, message


@pytest.mark.parametrize("form", ["reply", "caption"])
async def test_sweep_answers_with_one_status_and_one_sheet_with_keep_buttons(start_bot, fake, form):
    bot = await start_bot()
    await pro(bot)
    command = "/restyle ink drawing strength=sweep seed=7"
    if form == "reply":
        request = fake.message(ANA, text=command, reply_to=photo_message(fake))
    else:
        request = fake.message(ANA, caption=command, photo=picture_bytes((96, 64)))
    [status_call] = await wait_reply(fake, request)
    assert status_call.params["text"].startswith("Trying 3 strengths")
    [[cancel]] = status_call.params["reply_markup"]["inline_keyboard"]
    lead = cancel["callback_data"].split(":")[1]
    sheet, message = await swept(bot, fake, request)

    jobs = await bot.app.store.sweep_jobs(lead)
    assert [job.strength for job in jobs] == list(SWEEP_STRENGTHS) and {job.seed for job in jobs} == {7}
    assert all(job.delivered_at is not None for job in jobs)
    # One status message for the three jobs (edited, then cleaned up), and one photo: no album.
    assert replies_to(fake, request) == [status_call]
    status = next(m for m in fake.sent(ANA["id"]) if (m.get("reply_to_message") or {}).get("message_id") == request["message_id"] and "photo" not in m)
    assert all(c.params["message_id"] == status["message_id"] for c in fake.calls_to("editMessageText"))
    assert all(c.params["text"].startswith("Trying 3 strengths") for c in fake.calls_to("editMessageText"))
    assert fake.live(status) is None
    assert fake.calls_to("sendMediaGroup") == [] and len(fake.calls_to("sendPhoto")) == 1

    assert sheet.params["reply_parameters"]["message_id"] == request["message_id"]
    caption = sheet.params["caption"]
    assert caption.startswith("“ink drawing”") and "seed 7" in caption and "Keep the one you like" in caption
    assert all(f"{s:g} " in caption for s in SWEEP_STRENGTHS)
    assert markup_data(sheet) == [
        *[(f"Keep {job.strength:g}", f"keep:{job.id}") for job in jobs],
        ("📁 Files", f"sweepfiles:{lead}"),
    ]
    assert data_of(message)[-1] == f"sweepfiles:{lead}"  # the buttons sit on the photo itself
    picture = sheet.files["photo"]
    assert picture.startswith(JPEG_MAGIC)
    with Image.open(io.BytesIO(picture)) as img:
        result = await bot.app.store.picture(lead, "result") or b""
        with Image.open(io.BytesIO(result)) as one:  # three results side by side, labels below
            assert img.width >= 3 * one.width and img.height > one.height


async def test_free_member_is_refused_a_sweep_with_the_upgrade_hint(start_bot, fake):
    bot = await start_bot()
    photo = photo_message(fake)
    request = fake.message(ANA, text="/restyle ink strength=sweep", reply_to=photo)
    [answer] = await wait_reply(fake, request)
    text = answer.params["text"]
    assert "free tier cannot run strength sweeps" in text and "The pro tier runs them" in text and "/upgrade" in text
    assert await bot.app.store.count_by_status() == {}

    # The button is under every result; pressed by a free member it says the same, in the alert.
    result = fake.message(ANA, text="/restyle ink", reply_to=photo)
    await wait_reply(fake, result, 2)
    await bot.app.service.dispatch.wait_delivered()
    message = next(m for m in fake.sent(ANA["id"]) if m.get("text") == "More from this picture:")
    job_id = data_of(message)[0].split(":")[1]
    assert f"sweep:{job_id}" in data_of(message)
    fake.press(ANA, message, f"sweep:{job_id}")
    [alert] = await fake.wait_for("answerCallbackQuery")
    assert alert.params["show_alert"] is True
    assert "cannot run strength sweeps" in alert.params["text"] and "/upgrade" in alert.params["text"]
    await settle(bot, fake)
    assert (await bot.app.store.count_by_status()) == {"done": 1}


async def test_try_three_strengths_button_sweeps_a_result_with_its_seed(start_bot, fake):
    bot = await start_bot()
    await pro(bot)
    request = fake.message(ANA, text="/restyle oil painting strength=0.8 seed=42", reply_to=photo_message(fake))
    await wait_reply(fake, request, 2)
    await bot.app.service.dispatch.wait_delivered()
    message = next(m for m in fake.sent(ANA["id"]) if m.get("text") == "More from this picture:")
    job_id = data_of(message)[0].split(":")[1]
    [try_it] = [b for b in buttons(message) if b["callback_data"] == f"sweep:{job_id}"]
    assert try_it["text"] == "🎚 Try 3 strengths"
    downloads = len(fake.calls_to("getFile"))

    fake.press(ANA, message, f"sweep:{job_id}")
    [answer] = await fake.wait_for("answerCallbackQuery")
    assert answer.params["text"] == "Queued: #1 in line"
    [status] = await wait_reply(fake, message)
    assert status.params["text"].startswith("Trying 3 strengths")
    sheet, _ = await swept(bot, fake, message)  # it answers the buttons message it came from
    lead = status.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
    jobs = await bot.app.store.sweep_jobs(lead)
    assert [(job.strength, job.seed, job.prompt) for job in jobs] == [(s, 42, "oil painting") for s in SWEEP_STRENGTHS]
    assert len(fake.calls_to("getFile")) == downloads  # the stored picture, no new download
    assert "seed 42" in sheet.params["caption"]


async def test_keep_sends_that_result_with_again_buttons(start_bot, fake):
    bot = await start_bot()
    await pro(bot)
    _, lead, sheet, message = await delivered_sweep(bot, fake)
    middle = (await bot.app.store.sweep_jobs(lead))[1]
    assert middle.strength == 0.5

    fake.press(ANA, message, f"keep:{middle.id}")
    [album] = await wait_reply(fake, message, method="sendMediaGroup")
    assert "strength 0.5 " in album.params["media"][1]["caption"] and "seed 7" in album.params["media"][1]["caption"]
    [kept] = await wait_reply(fake, message)
    assert kept.params["text"] == "More from this picture:"
    kept_message = next(m for m in fake.sent(ANA["id"]) if m.get("text") == "More from this picture:")
    assert data_of(kept_message)[:4] == [f"again:{middle.id}", f"subtler:{middle.id}", f"stronger:{middle.id}",
                                         f"sweep:{middle.id}"]  # fmt: skip

    fake.press(ANA, kept_message, f"stronger:{middle.id}")
    [stronger] = await wait_reply(fake, kept_message, method="sendMediaGroup")
    assert f"strength {0.5 + STRENGTH_STEP:g}" in stronger.params["media"][1]["caption"]
    fake.press(ANA, kept_message, f"again:{middle.id}")
    [_, again] = await wait_reply(fake, kept_message, 2, method="sendMediaGroup")
    assert "strength 0.5 " in again.params["media"][1]["caption"]
    children = [job for job in bot.engine.jobs.values() if job.job_id not in {j.id for j in await bot.app.store.sweep_jobs(lead)}]
    assert sorted(job.strength for job in children) == [0.5, 0.5 + STRENGTH_STEP]
    assert len(fake.calls_to("sendPhoto")) == 1  # the sweep's photo, once


async def test_files_button_sends_three_documents_named_by_strength(start_bot, fake):
    bot = await start_bot()
    await pro(bot)
    _, lead, _, message = await delivered_sweep(bot, fake)
    fake.press(ANA, message, f"sweepfiles:{lead}")
    [answer] = await fake.wait_for("answerCallbackQuery")
    assert answer.params["text"] == "Sending the results as files…"
    [album] = await wait_reply(fake, message, method="sendMediaGroup")
    assert not album.failed and [item["type"] for item in album.params["media"]] == ["document"] * 3
    names = [album.files[item["media"][len("attach://"):] + "#filename"].decode() for item in album.params["media"]]
    assert names == [f"restyle-{s:g}.png" for s in SWEEP_STRENGTHS]
    assert all(data.startswith(PNG_MAGIC) for data in album_pictures(album))
    sent = [m for m in fake.sent(ANA["id"]) if "document" in m]
    assert [m["document"]["file_name"] for m in sent] == names
    assert len(fake.calls_to("sendPhoto")) == 1  # no new GPU work, no second sheet


async def test_someone_else_cannot_press_keep(start_bot, fake):
    bot = await start_bot()
    await pro(bot)
    _, lead, _, message = await delivered_sweep(bot, fake)
    for data in (f"keep:{lead}", f"sweepfiles:{lead}", f"sweep:{lead}"):
        fake.press(BEN, message, data)
    answers = await fake.wait_for("answerCallbackQuery", 3)
    assert all(a.params["show_alert"] is True and "Only the member who asked" in a.params["text"] for a in answers)
    await settle(bot, fake)
    assert fake.calls_to("sendMediaGroup") == [] and fake.calls_to("sendDocument") == []
    assert len(await bot.app.store.sweep_jobs(lead)) == 3 and not {"queued", "running"} & set(await bot.app.store.count_by_status())


async def test_a_gone_sweep_says_so(start_bot, fake):
    bot = await start_bot()
    await pro(bot)
    _, _, _, message = await delivered_sweep(bot, fake)
    fake.press(ANA, message, "keep:0123456789")
    fake.press(ANA, message, "sweepfiles:0123456789")
    answers = await fake.wait_for("answerCallbackQuery", 2)
    assert [a.params["text"] for a in answers] == [
        "That sweep is gone; send the picture again with /restyle strength=sweep."
    ] * 2
    await settle(bot, fake)
    assert fake.calls_to("sendMediaGroup") == []


async def test_cancel_cancels_the_whole_sweep(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    gate = engine.hold()
    bot = await start_bot(engine=engine)
    await pro(bot)
    request = fake.message(ANA, text="/restyle ink strength=sweep", reply_to=photo_message(fake))
    [status_call] = await wait_reply(fake, request)
    await asyncio.to_thread(engine.started.wait, 5)  # the first strength is running
    status = next(m for m in fake.sent(ANA["id"]) if (m.get("reply_to_message") or {}).get("message_id") == request["message_id"])
    [cancel] = data_of(status)
    lead = cancel.split(":")[1]
    fake.press(ANA, status, cancel)
    [answer] = await fake.wait_for("answerCallbackQuery")
    assert answer.params["text"] == "Cancelled."
    await fake.wait_until(lambda: (fake.live(status) or {}).get("text") == "Cancelled.")
    assert "reply_markup" not in fake.live(status)

    async def all_cancelled() -> bool:
        return {job.status for job in await bot.app.store.sweep_jobs(lead)} == {"cancelled"}

    await wait_until(all_cancelled, what="every job of the sweep to be cancelled")
    gate.set()
    await settle(bot, fake)
    assert fake.calls_to("sendPhoto") == [] and fake.calls_to("sendMediaGroup") == []
    assert replies_to(fake, request) == [status_call]  # no failure notice either
    assert fake.live(status)["text"] == "Cancelled."


async def test_sweep_delivery_is_not_resent_after_restart(start_bot, fake):
    bot = await start_bot()
    await pro(bot)
    sent = asyncio.Event()

    async def dies_before_recording(sweep_id: str, now: float) -> None:
        sent.set()
        await asyncio.Event().wait()  # the process is killed between the send and recording it

    bot.app.store.mark_sweep_delivered = dies_before_recording  # type: ignore[method-assign]
    request = fake.message(ANA, text="/restyle ink strength=sweep", reply_to=photo_message(fake))
    [status_call] = await wait_reply(fake, request)
    lead = status_call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
    await asyncio.wait_for(sent.wait(), 10)
    assert len(fake.calls_to("sendPhoto", ok_only=True)) == 1
    await bot.stop()

    bot2 = await start_bot()  # the restart offers the undelivered sweep again

    async def delivered() -> bool:
        return all(job.delivered_at is not None for job in await bot2.app.store.sweep_jobs(lead))

    await wait_until(delivered, what="the sweep recorded as delivered after the restart")
    await settle(bot2, fake)
    assert len(fake.calls_to("sendPhoto")) == 1  # the lead's reply says the photo went out


async def test_sweep_without_sheet_sends_results_one_album(start_bot, fake, monkeypatch):
    def cannot_draw(results: list) -> bytes:
        raise ValueError("no sheet (test)")

    monkeypatch.setattr("bot.core.dispatch.sweep_sheet", cannot_draw)
    bot = await start_bot()
    await pro(bot)
    request = fake.message(ANA, text="/restyle ink strength=sweep seed=3", reply_to=photo_message(fake))
    [status_call] = await wait_reply(fake, request)
    lead = status_call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
    [album] = await wait_reply(fake, request, method="sendMediaGroup")
    await bot.app.service.dispatch.wait_delivered()
    assert [item["caption"] for item in album.params["media"]] == [f"{s:g}" for s in SWEEP_STRENGTHS]
    assert all(p.startswith(JPEG_MAGIC) for p in album_pictures(album))
    [_, words] = await wait_reply(fake, request, 2)  # the status, then the caption with the buttons
    assert words.params["text"].startswith("“ink”") and "seed 3" in words.params["text"]
    jobs = await bot.app.store.sweep_jobs(lead)
    assert [d for _, d in markup_data(words)] == [*[f"keep:{job.id}" for job in jobs], f"sweepfiles:{lead}"]
    assert fake.calls_to("sendPhoto") == []


async def test_a_sheet_wider_than_telegram_takes_gets_a_margin(start_bot, fake):
    """Bot API, sendPhoto: width and height ratio at most 20; three 8:1 results side by side
    are 24:1 (the fake refuses what Telegram refuses)."""
    bot = await start_bot()
    wide = io.BytesIO()
    Image.new("RGB", (2400, 100), (90, 30, 200)).save(wide, format="PNG")
    photo = await asyncio.to_thread(bot.adapter._delivery.photo_payload, wide.getvalue())
    with Image.open(io.BytesIO(photo)) as img:
        assert img.width <= 20 * img.height and img.width + img.height <= 10_000
    chat = fake.message(ANA, text="/start", push=False)["chat"]["id"]
    sent = await bot.adapter.bot.send_photo(chat, photo)
    assert sent.photo


async def test_cancel_after_the_first_strength_sends_it_and_cancels_the_rest(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.gate = Turnstile()  # type: ignore[assignment]  # one strength at a time
    bot = await start_bot(engine=engine)
    await pro(bot)
    request = fake.message(ANA, text="/restyle ink strength=sweep", reply_to=photo_message(fake))
    [status_call] = await wait_reply(fake, request)
    lead = status_call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
    await asyncio.to_thread(engine.started.wait, 5)
    engine.gate.set()  # 0.3 is done; 0.5 runs and waits
    status = next(m for m in fake.sent(ANA["id"]) if (m.get("reply_to_message") or {}).get("message_id") == request["message_id"])
    await fake.wait_until(lambda: "1 of 3 done" in (fake.live(status) or {}).get("text", ""), timeout=10)
    assert data_of(fake.live(status)) == [f"cancel:{lead}"]  # one status, one Cancel, whichever job runs
    fake.press(ANA, status, f"cancel:{lead}")
    sheet, _ = await swept(bot, fake, request)
    jobs = await bot.app.store.sweep_jobs(lead)
    assert [job.status for job in jobs] == ["done", "cancelled", "cancelled"]
    assert "0.5 cancelled" in sheet.params["caption"] and "0.7 cancelled" in sheet.params["caption"]
    assert markup_data(sheet) == [("Keep 0.3", f"keep:{lead}"), ("📁 Files", f"sweepfiles:{lead}")]
    await settle(bot, fake)
    assert len(fake.calls_to("sendPhoto")) == 1 and fake.calls_to("sendMediaGroup") == []


async def test_a_sweep_whose_strengths_all_failed_is_one_failure_notice(start_bot, fake):
    engine = FakeEngine()
    engine.fail_prompts.add("doomed")
    bot = await start_bot(engine=engine)
    await pro(bot)
    request = fake.message(ANA, text="/restyle doomed strength=sweep", reply_to=photo_message(fake))
    [status_call, failure] = await wait_reply(fake, request, 2)
    await settle(bot, fake)
    assert failure.params["text"].startswith("Sorry, that restyle did not work: The picture engine failed")
    assert len(replies_to(fake, request)) == 2 and fake.calls_to("sendPhoto") == []  # said once, not three times
    status = next(m for m in fake.sent(ANA["id"]) if m.get("text") == "Failed.")
    assert "reply_markup" not in status and status["reply_to_message"]["message_id"] == request["message_id"]


async def test_a_spanish_member_gets_the_sweep_in_spanish(start_bot, fake):
    lucia = FakeTelegram.user(1003, "Lucía", language_code="es")
    bot = await start_bot()
    await pro(bot, lucia)
    request = fake.message(lucia, text="/restyle tinta strength=sweep", reply_to=photo_message(fake, lucia))
    [status_call] = await wait_reply(fake, request)
    assert status_call.params["text"].startswith("Probando 3 intensidades")
    sheet, _ = await swept(bot, fake, request)
    labels = [text for text, _ in markup_data(sheet)]
    assert labels == ["Quedarme con 0.3", "Quedarme con 0.5", "Quedarme con 0.7", "📁 Archivos"]
    assert sheet.params["caption"].endswith("Quédate con la que te guste para seguir a partir de ella.")


async def test_a_refusal_too_long_for_the_press_alert_is_said_in_the_chat(start_bot, fake):
    """answerCallbackQuery takes 0-200 characters (Bot API); a sweep's queue-limit refusal with
    its upgrade hint is longer, so the alert stays empty and the chat says it."""
    engine = FakeEngine(max_batch=1)
    bot = await start_bot(engine=engine)
    await pro(bot)
    photo = photo_message(fake)
    first = fake.message(ANA, text="/restyle ink", reply_to=photo)
    await wait_reply(fake, first, 2)
    await bot.app.service.dispatch.wait_delivered()
    message = next(m for m in fake.sent(ANA["id"]) if m.get("text") == "More from this picture:")
    job_id = data_of(message)[0].split(":")[1]
    gate = engine.hold()
    for i in range(3):  # three waiting or running of the pro tier's five
        await wait_reply(fake, fake.message(ANA, text=f"/restyle ink {i}", reply_to=photo))
    fake.press(ANA, message, f"sweep:{job_id}")
    [said] = await wait_reply(fake, message)
    assert said.params["text"].startswith("A sweep runs 3 jobs at once, and the pro tier allows 5 waiting")
    assert "/upgrade" in said.params["text"] and len(said.params["text"]) > 200
    [answer] = await fake.wait_for("answerCallbackQuery")
    assert not answer.params.get("text")
    gate.set()
    await settle(bot, fake)
    assert await bot.app.store.sweep_jobs(job_id) == []


async def test_a_sweep_waiting_at_a_restart_keeps_its_one_status_and_is_answered_once(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.hold()
    bot = await start_bot(engine=engine)
    await pro(bot)
    request = fake.message(ANA, text="/restyle ink strength=sweep", reply_to=photo_message(fake))
    [status_call] = await wait_reply(fake, request)
    lead = status_call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
    await asyncio.to_thread(engine.started.wait, 5)
    await bot.stop()  # 0.3 was running, 0.5 and 0.7 waiting

    bot2 = await start_bot()
    await swept(bot2, fake, request)
    await settle(bot2, fake)
    status = next(m for m in fake.sent(ANA["id"]) if (m.get("reply_to_message") or {}).get("message_id") == request["message_id"] and "photo" not in m)
    assert fake.live(status) is None  # every job found the one status message, and it was cleaned up
    edits = fake.calls_to("editMessageText")
    assert all(c.params["message_id"] == status["message_id"] for c in edits)
    assert all(data_of(c.params) in ([], [f"cancel:{lead}"]) for c in edits)
    assert len(fake.calls_to("sendPhoto")) == 1 and replies_to(fake, request) == [status_call]
