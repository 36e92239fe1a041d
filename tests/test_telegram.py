"""The Telegram front end, driven for real: the whole App (service, SQLite in tmp_path, worker
with a stand-in engine) and python-telegram-bot, talking over HTTP to a fake Bot API server on
127.0.0.1 (tests/fake_telegram.py)."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import time
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.adapters import AdapterStartError
from bot.adapters.telegram.texts import eta_text, result_caption, status_text
from bot.clock import FakeClock
from bot.commands import USAGE
from bot.core.dispatch import DELIVERY_BACKOFF_S
from tests.fake_telegram import FakeTelegram, buttons
from tests.fakes import FakeEngine, count_admissions, picture_bytes, wait_parked, wait_until

pytestmark = pytest.mark.timeout(30)

from tests.harness.telegram_bot import (  # noqa: F401  (fixtures)
    ANA,
    BEN,
    GROUP,
    JPEG_MAGIC,
    TOKEN,
    Bot,
    Turnstile,
    album_pictures,
    fake,
    finish,
    free_port,
    photo_message,
    replies_to,
    settle,
    start_bot,
    wait_reply,
)

# The whole flow -------------------------------------------------------------------------------


async def test_reply_to_photo_gets_status_then_album_and_buttons(start_bot, fake):
    bot = await start_bot()
    photo = photo_message(fake)
    sent_at = time.monotonic()
    request = fake.message(ANA, text="/restyle oil painting strength=0.6 seed=42", reply_to=photo)

    [status_call] = await wait_reply(fake, request)
    latency = status_call.at - sent_at
    print(f"\nupdate -> status message: {latency * 1000:.0f} ms")
    assert latency < 1.0
    assert status_call.params["text"].startswith("Queued: #1 in line, about")
    [cancel] = status_call.params["reply_markup"]["inline_keyboard"][0]
    assert cancel["callback_data"].startswith("cancel:")
    job_id = cancel["callback_data"].split(":")[1]
    # The largest photo size was downloaded.
    assert [c.params["file_id"] for c in fake.calls_to("getFile")] == [photo["photo"][-1]["file_id"]]

    await finish(bot, fake)
    [album] = fake.calls_to("sendMediaGroup")
    assert album.params["reply_parameters"] == {"message_id": request["message_id"], "allow_sending_without_reply": True}
    original, result = album.params["media"]
    assert original["media"] == photo["photo"][-1]["file_id"]  # reused, not uploaded again
    assert "caption" not in original
    caption = result["caption"]
    assert "“oil painting”" in caption and "strength 0.6" in caption and "seed 42" in caption and " s" in caption
    [_, result_photo] = album_pictures(album)
    assert result_photo.startswith(JPEG_MAGIC)  # Telegram makes every photo a JPEG; PNG is a button away
    with Image.open(io.BytesIO(result_photo)) as img:  # the stand-in engine inverts the picture
        pixel = img.convert("RGB").getpixel((0, 0))
        assert all(abs(a - b) <= 4 for a, b in zip(pixel, (55, 215, 215))), pixel

    [_, buttons_call] = await wait_reply(fake, request, 2)
    data = [b["callback_data"] for row in buttons_call.params["reply_markup"]["inline_keyboard"] for b in row]
    assert data == [f"again:{job_id}", f"subtler:{job_id}", f"stronger:{job_id}", f"sweep:{job_id}",
                    f"file:png:{job_id}", f"file:webp:{job_id}", f"file:jpeg:{job_id}", f"compare:{job_id}"]  # fmt: skip
    assert all(len(d.encode()) < 64 for d in data)
    labels = [b["text"] for row in buttons_call.params["reply_markup"]["inline_keyboard"] for b in row]
    assert "Subtler 0.45" in labels and "Stronger 0.75" in labels and "🎚 Try 3 strengths" in labels

    status = fake.messages[(ANA["id"], status_call_message_id(fake, status_call))]
    assert fake.live(status) is None  # the status message is cleaned up
    record = await bot.job(job_id)
    assert record.delivered_at is not None and record.status == "done"
    # The default (English) list, then one per translated language, with the same command names.
    assert [c.params.get("language_code") for c in fake.calls_to("setMyCommands")] == [None, "es", "ru"]
    for call in fake.calls_to("setMyCommands"):
        commands = [c["command"] for c in call.params["commands"]]
        assert commands == ["restyle", "styles", "me", "upgrade", "cancel", "link", "terms", "paysupport", "help"]


def status_call_message_id(fake: FakeTelegram, call) -> int:
    """The message a sendMessage call created (matched by its text and time)."""
    sent = [m for m in fake.sent(call.params["chat_id"]) if m.get("text") == call.params["text"] or "edit_date" in m]
    return min(m["message_id"] for m in sent)


async def test_photo_with_restyle_caption_is_a_request(start_bot, fake):
    bot = await start_bot()
    request = fake.message(ANA, caption="/restyle watercolor, soft edges", photo=picture_bytes((64, 64)))
    [status] = await wait_reply(fake, request)
    assert status.params["text"].startswith("Queued")
    await finish(bot, fake)
    [album] = fake.calls_to("sendMediaGroup")
    assert album.params["media"][0]["media"] == request["photo"][-1]["file_id"]
    assert "watercolor, soft edges" in album.params["media"][1]["caption"]


async def test_reply_to_picture_sent_as_file_uploads_the_prepared_original(start_bot, fake):
    bot = await start_bot()
    document = fake.message(ANA, document=picture_bytes((80, 48), fmt="PNG"), mime_type="image/png", push=False)
    request = fake.message(ANA, text="/restyle pencil sketch", reply_to=document)
    await wait_reply(fake, request)
    assert fake.calls_to("getFile")[0].params["file_id"] == document["document"]["file_id"]
    await finish(bot, fake)
    [album] = fake.calls_to("sendMediaGroup")
    original, result = album_pictures(album)
    assert original is not None and result is not None  # a document's file_id can't be a photo
    with Image.open(io.BytesIO(original)) as img:  # the prepared input, as the engine saw it
        assert abs(img.width / img.height - 80 / 48) < 0.1


async def test_commands_for_another_bot_are_ignored_in_groups(start_bot, fake):
    bot = await start_bot(group_edit_interval_s=0.2)
    photo = photo_message(fake, chat=GROUP)
    fake.message(ANA, GROUP, text="/restyle@OtherBot oil painting", reply_to=photo)
    fake.message(ANA, GROUP, caption="/restyle@OtherBot oil painting", photo=picture_bytes())
    ours = fake.message(ANA, GROUP, text="/restyle@RestyleTestBot oil painting", reply_to=photo)
    await wait_reply(fake, ours)
    await finish(bot, fake)
    await settle(bot, fake)
    assert len(fake.calls_to("getFile")) == 1
    assert len(fake.calls_to("sendMediaGroup")) == 1
    assert all(c.params["reply_parameters"]["message_id"] == ours["message_id"] for c in fake.calls_to("sendMessage"))


# Requests that can't run ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no reply", "Reply to a picture with /restyle"),
        ("reply to text", "That message has no picture"),
        ("reply to a pdf", "That message has no picture"),
        ("bad option", "strength must be a number from 0.05 to 1.0, like strength=0.5"),
        ("no prompt", "Please describe the new style"),
        ("file too big", "That picture is 25.0 MB; I can download up to 20 MB"),
        ("caption on a pdf", "That file is not a picture"),
    ],
)
async def test_unusable_request_gets_a_short_reply_with_an_example(start_bot, fake, case, expected):
    await start_bot()
    photo = photo_message(fake)
    if case == "no reply":
        request = fake.message(ANA, text="/restyle oil painting")
    elif case == "reply to text":
        request = fake.message(ANA, text="/restyle oil painting", reply_to=fake.message(ANA, text="hello", push=False))
    elif case == "reply to a pdf":
        pdf = fake.message(ANA, document=b"%PDF-1.4", mime_type="application/pdf", push=False)
        request = fake.message(ANA, text="/restyle oil painting", reply_to=pdf)
    elif case == "bad option":
        request = fake.message(ANA, text="/restyle oil painting strength=2", reply_to=photo)
    elif case == "no prompt":
        request = fake.message(ANA, text="/restyle", reply_to=photo)
    elif case == "file too big":
        big = fake.message(ANA, document=picture_bytes(), mime_type="image/png", file_size=25_000_000, push=False)
        request = fake.message(ANA, text="/restyle oil painting", reply_to=big)
    else:
        request = fake.message(ANA, caption="/restyle oil painting", document=b"%PDF-1.4", mime_type="application/pdf")
    [answer] = await wait_reply(fake, request)
    text = answer.params["text"]
    assert expected in text
    assert "/restyle" in text and ("example" in text.lower() or "like " in text)  # one example
    assert len(text) < 400
    assert fake.calls_to("getFile") == []  # nothing downloaded for a request that can't run
    assert "reply_markup" not in answer.params


async def test_download_limit_comes_from_config(start_bot, fake):
    await start_bot(telegram="max_download_mb = 0.001")
    noise = io.BytesIO()
    Image.effect_noise((64, 64), 100).save(noise, format="PNG")  # about 4 KB
    photo = photo_message(fake, picture=noise.getvalue())
    # The photo's reported size is unknown to the check before download; getFile tells.
    photo["photo"][-1].pop("file_size")
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo)
    [answer] = await wait_reply(fake, request)
    assert "I can download up to 0.001 MB" in answer.params["text"]
    assert fake.calls_to("getFile") and not any("files/" in str(c.params) for c in fake.calls_to("sendMediaGroup"))


async def test_failed_job_is_reported_to_the_member(start_bot, fake):
    engine = FakeEngine()
    engine.fail_prompts.add("doomed")
    bot = await start_bot(engine=engine)
    request = fake.message(ANA, text="/restyle doomed", reply_to=photo_message(fake))
    [status, failure] = await wait_reply(fake, request, 2)
    await bot.app.service.dispatch.wait_delivered()
    assert failure.params["text"].startswith("Sorry, that restyle did not work: The picture engine failed")
    status_msg = next(m for m in fake.sent(ANA["id"]) if m.get("text") == "Failed.")
    assert "reply_markup" not in status_msg


# Buttons --------------------------------------------------------------------------------------


async def delivered_buttons(bot: Bot, fake: FakeTelegram, text: str = "/restyle oil painting") -> tuple[dict, str]:
    request = fake.message(ANA, text=text, reply_to=photo_message(fake))
    await wait_reply(fake, request, 2)
    await bot.app.service.dispatch.wait_delivered()
    message = next(m for m in fake.sent(ANA["id"]) if m.get("text") == "More from this picture:")
    job_id = buttons(message)[0]["callback_data"].split(":")[1]
    return message, job_id


async def test_again_and_stronger_buttons_restyle_the_same_picture(start_bot, fake):
    bot = await start_bot()
    message, job_id = await delivered_buttons(bot, fake)
    first = await bot.job(job_id)
    uploads_before = len(fake.calls_to("getFile"))

    fake.press(ANA, message, f"again:{job_id}")
    [again_status] = await wait_reply(fake, message)
    assert again_status.params["text"].startswith("Queued")
    await finish(bot, fake, 2)
    fake.press(ANA, message, f"stronger:{job_id}")
    await finish(bot, fake, 3)

    albums = fake.calls_to("sendMediaGroup")
    assert len(albums) == 3
    # Same original (its file_id), no new download.
    assert {a.params["media"][0]["media"] for a in albums} == {albums[0].params["media"][0]["media"]}
    assert len(fake.calls_to("getFile")) == uploads_before
    assert "strength 0.5 " in albums[1].params["media"][1]["caption"]
    assert f"seed {first.seed}" not in albums[1].params["media"][1]["caption"]
    assert "strength 0.65" in albums[2].params["media"][1]["caption"]
    answers = [c.params.get("text") for c in fake.calls_to("answerCallbackQuery")]
    assert answers == ["Queued: #1 in line", "Queued: #1 in line"]


async def test_format_button_sends_the_result_converted_as_a_file(start_bot, fake):
    bot = await start_bot()
    message, job_id = await delivered_buttons(bot, fake)
    fake.press(ANA, message, f"file:webp:{job_id}")
    [doc] = await fake.wait_for("sendDocument")
    data = doc.files["document"]
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert doc.files["document#filename"] == f"restyle-{job_id}.webp".encode()
    fake.press(ANA, message, f"file:jpeg:{job_id}")
    [_, jpeg] = await fake.wait_for("sendDocument", 2)
    assert jpeg.files["document"].startswith(JPEG_MAGIC)
    assert len(fake.calls_to("sendMediaGroup")) == 1  # no new GPU work


async def test_side_by_side_button_sends_the_original_and_the_result_in_one_photo(start_bot, fake):
    bot = await start_bot()
    message, job_id = await delivered_buttons(bot, fake)
    assert [b["callback_data"] for b in buttons(message)][-1] == f"compare:{job_id}"
    fake.press(ANA, message, f"compare:{job_id}")
    [photo] = await fake.wait_for("sendPhoto")
    assert photo.params["reply_parameters"]["message_id"] == message["message_id"]
    assert photo.params["caption"] == "Before | after"
    with Image.open(io.BytesIO(photo.files["photo"])) as both:
        result = (await bot.app.store.picture(job_id, "result")) or b""
        with Image.open(io.BytesIO(result)) as alone:
            # Two pictures of the result's height side by side, a thin line between.
            assert both.height == alone.height and both.width > 2 * alone.width * 0.9
    [answer] = fake.calls_to("answerCallbackQuery")
    assert answer.params["text"] == "Sending the before and after…"
    assert len(fake.calls_to("sendMediaGroup")) == 1  # no new GPU work, no second album


async def test_a_side_by_side_wider_than_telegram_takes_is_shrunk_to_fit(start_bot, fake):
    """Telegram refuses a photo whose width and height add up to more than 10,000 (Bot API,
    sendPhoto); side by side, a wide result can get there."""
    bot = await start_bot()
    message, job_id = await delivered_buttons(bot, fake)
    wide = io.BytesIO()
    Image.new("RGB", (5000, 800), (90, 30, 200)).save(wide, format="PNG")  # 6.25:1, within MAX_ASPECT
    await bot.app.store.replace_picture(job_id, "result", wide.getvalue())
    await bot.app.store.replace_picture(job_id, "input", wide.getvalue())
    fake.press(ANA, message, f"compare:{job_id}")
    [photo] = await fake.wait_for("sendPhoto")
    with Image.open(io.BytesIO(photo.files["photo"])) as both:
        assert sum(both.size) <= 10_000


async def test_with_a_public_url_each_result_links_to_its_compare_view(start_bot, fake):
    bot = await start_bot(extra='[web]\nport = 0\npublic_url = "https://restyle.example.org"')
    message, job_id = await delivered_buttons(bot, fake)
    [link] = [b for b in buttons(message) if "url" in b]
    assert link["text"] == "Compare ↗"
    assert link["url"].startswith(f"https://restyle.example.org/compare/{job_id}?until=")
    links = bot.app.service.compare_links
    until, sig = (part.split("=", 1)[1] for part in link["url"].split("?", 1)[1].split("&"))
    assert links is not None and links.problem(job_id, until, sig, bot.clock.now()) is None


async def test_a_button_link_a_members_phone_cannot_open_is_refused_like_telegram_does(fake):
    """The fake refuses what Telegram refuses (BUTTON_URL_INVALID) and, stricter, a loopback
    address: a config check keeps public_url from being one."""
    from telegram import Bot as PtbBot, InlineKeyboardButton, InlineKeyboardMarkup
    from telegram.error import BadRequest

    from tests.harness.telegram_bot import TOKEN

    ptb = PtbBot(TOKEN, base_url=fake.base_url)
    chat = fake.message(ANA, text="/start")["chat"]["id"]
    async with ptb:
        for url in ("http://127.0.0.1:8080/compare/x", "ftp://restyle.example.org/x"):
            with pytest.raises(BadRequest, match="(?i)button_url_invalid"):
                markup = InlineKeyboardMarkup([[InlineKeyboardButton("Compare", url=url)]])
                await ptb.send_message(chat, "x", reply_markup=markup)
        ok = InlineKeyboardMarkup([[InlineKeyboardButton("Compare", url="https://restyle.example.org/c")]])
        await ptb.send_message(chat, "x", reply_markup=ok)


async def test_buttons_answer_only_the_member_who_asked(start_bot, fake):
    bot = await start_bot()
    message, job_id = await delivered_buttons(bot, fake)
    for data in (f"again:{job_id}", f"file:png:{job_id}", f"cancel:{job_id}", f"compare:{job_id}"):
        fake.press(BEN, message, data)
    answers = await fake.wait_for("answerCallbackQuery", 4)
    assert all(a.params["show_alert"] is True and "Only the member who asked" in a.params["text"] for a in answers)
    await settle(bot, fake)
    assert len(fake.calls_to("sendMediaGroup")) == 1 and fake.calls_to("sendDocument") == []
    assert fake.calls_to("sendPhoto") == []
    assert not {"queued", "running"} & set(await bot.app.store.count_by_status())


async def test_cancel_pressed_after_the_job_finished_says_too_late_in_an_alert(start_bot, fake):
    bot = await start_bot()
    message, job_id = await delivered_buttons(bot, fake)  # a press that raced the result
    fake.press(ANA, message, f"cancel:{job_id}")
    [answer] = await fake.wait_for("answerCallbackQuery", 1)
    assert answer.params["text"] == "Too late to cancel: that job has already finished."
    assert answer.params["show_alert"] is True
    assert (await bot.job(job_id)).status == "done"


async def test_cancel_button_while_waiting_cancels_that_job(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.hold()
    bot = await start_bot(engine=engine)
    photo = photo_message(fake)
    first = fake.message(ANA, text="/restyle first", reply_to=photo)
    await wait_reply(fake, first)
    await asyncio.to_thread(engine.started.wait, 5)
    second = fake.message(ANA, text="/restyle second", reply_to=photo)
    [status_call] = await wait_reply(fake, second)
    assert status_call.params["text"].startswith("Queued: #1 in line")
    status = next(m for m in fake.sent(ANA["id"]) if m.get("text", "").startswith("Queued") and
                  m["reply_to_message"]["message_id"] == second["message_id"])  # fmt: skip
    fake.press(ANA, status, buttons(status)[0]["callback_data"])
    [answer] = await fake.wait_for("answerCallbackQuery")
    assert answer.params["text"] == "Cancelled."
    await fake.wait_until(lambda: fake.live(status).get("text") == "Cancelled.")
    assert "reply_markup" not in fake.live(status)
    engine.gate.set()
    await finish(bot, fake, 1)
    await settle(bot, fake)
    assert not {"queued", "running"} & set(await bot.app.store.count_by_status())
    assert len(fake.calls_to("sendMediaGroup")) == 1
    assert "first" in fake.calls_to("sendMediaGroup")[0].params["media"][1]["caption"]


async def test_a_progress_update_arriving_after_cancel_does_not_reopen_its_status(start_bot, fake):
    """A progress update sent before /cancel but heard after it finds the status message again
    (its id is saved with the job); the job's "cancelled" update behind it must still leave
    /cancel's words."""
    engine = FakeEngine(max_batch=1)
    engine.hold()
    bot = await start_bot(engine=engine)
    request = fake.message(ANA, text="/restyle first", reply_to=photo_message(fake))
    [status_call] = await wait_reply(fake, request)
    job_id = status_call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
    await asyncio.to_thread(engine.started.wait, 5)
    running = await bot.app.service.jobs.job(job_id)
    [answer] = await wait_reply(fake, fake.message(ANA, text="/cancel"))
    assert answer.params["text"] == "Cancelled 1 job."
    status = next(m for m in fake.sent(ANA["id"]) if (m.get("reply_to_message") or {}).get("message_id") == request["message_id"])
    await fake.wait_until(lambda: fake.live(status)["text"] == "Cancelled with /cancel.")
    edits = len(fake.calls_to("editMessageText"))
    await bot.adapter.job_updated(replace(running, status="running", progress=0.4))  # late: sent before the cancel
    await bot.adapter.job_updated(replace(running, status="cancelled"))
    await bot.adapter._statuses.edits.settled(job_id)
    assert fake.live(status)["text"] == "Cancelled with /cancel."
    assert len(fake.calls_to("editMessageText")) == edits
    engine.gate.set()
    await settle(bot, fake)


# Commands -------------------------------------------------------------------------------------


async def test_help_offers_a_button_per_ready_made_style_that_copies_its_command(start_bot, fake):
    await start_bot(extra='[styles.ink]\nprompt = "ink drawing"\nstrength = 0.4')
    [answer] = await wait_reply(fake, fake.message(ANA, text="/help"))
    rows = answer.params["reply_markup"]["inline_keyboard"]
    copies = {b["text"]: b["copy_text"]["text"] for row in rows for b in row}
    assert copies["🎨 neon · 0.5"] == "/restyle style=neon "
    assert copies["🎨 ink · 0.4"] == "/restyle style=ink "
    assert all(len(row) <= 2 for row in rows)
    # In a group the copied command names the bot, or another bot there could take it.
    [in_group] = await wait_reply(fake, fake.message(ANA, GROUP, text="/help@RestyleTestBot"))
    grouped = [b["copy_text"]["text"] for row in in_group.params["reply_markup"]["inline_keyboard"] for b in row]
    assert "/restyle@RestyleTestBot style=neon " in grouped


async def test_me_help_start_and_cancel_commands(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.hold()
    await start_bot(engine=engine)
    help_ = fake.message(ANA, text="/help")
    [answer] = await wait_reply(fake, help_)
    assert answer.params["text"].startswith(USAGE + "\n\nTap a style to copy its command")
    start = fake.message(ANA, text="/start")
    [answer] = await wait_reply(fake, start)
    assert "Reply to a photo with /restyle" in answer.params["text"]

    photo = photo_message(fake)
    jobs = [fake.message(ANA, text=f"/restyle style {i}", reply_to=photo) for i in range(2)]
    for job in jobs:
        await wait_reply(fake, job)
    me = fake.message(ANA, text="/me")
    [answer] = await wait_reply(fake, me)
    assert answer.params["text"].startswith("Tier: free\nToday: 2 of 20 restyles used, 18 left")
    assert "Your jobs (2 of up to" in answer.params["text"]

    cancel = fake.message(ANA, text="/cancel")
    [answer] = await wait_reply(fake, cancel)
    assert answer.params["text"] == "Cancelled 2 jobs."
    statuses = [m for m in fake.sent(ANA["id"]) if m.get("reply_to_message", {}).get("message_id") in {j["message_id"] for j in jobs}]
    await fake.wait_until(lambda: all(fake.live(s)["text"] == "Cancelled with /cancel." for s in statuses))
    again = fake.message(ANA, text="/cancel")
    [answer] = await wait_reply(fake, again)
    assert answer.params["text"] == "You have no jobs waiting or running."
    upgrade = fake.message(ANA, text="/upgrade")
    [answer] = await wait_reply(fake, upgrade)
    assert "free" in answer.params["text"]


# Progress -------------------------------------------------------------------------------------


async def test_status_edits_are_throttled_and_show_the_latest(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.hold()
    bot = await start_bot(engine=engine, edit_interval_s=0.4)
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake))
    [status_call] = await wait_reply(fake, request)
    await asyncio.to_thread(engine.started.wait, 5)
    job_id = status_call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
    for step in range(1, 11):
        bot.app.service.batches.report_progress(job_id, step / 10)
        await asyncio.sleep(0.01)
    await fake.wait_until(lambda: any(c.params.get("text") == "Restyling… 100%" for c in fake.calls_to("editMessageText")))
    engine.gate.set()
    await finish(bot, fake)  # a throttled edit still pending would have gone out by the delivery
    edits = [c for c in fake.calls_to("editMessageText") if c.params.get("text", "").startswith("Restyling")]
    assert 1 <= len(edits) <= 4, [e.params["text"] for e in edits]  # not one per step
    gaps = [b.at - a.at for a, b in zip(edits, edits[1:])]
    assert all(g >= 0.35 for g in gaps)
    assert edits[-1].params["reply_markup"]["inline_keyboard"][0][0]["text"] == "✖ Cancel"


async def test_status_message_follows_the_queue_position(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.gate = Turnstile()  # type: ignore[assignment]
    await start_bot(engine=engine)
    carl = FakeTelegram.user(1003, "Carl")
    first = fake.message(BEN, text="/restyle first", reply_to=photo_message(fake, BEN))
    await wait_reply(fake, first)
    await asyncio.to_thread(engine.started.wait, 5)
    second = fake.message(carl, text="/restyle second", reply_to=photo_message(fake, carl))
    await wait_reply(fake, second)
    dora = FakeTelegram.user(1004, "Dora")
    third = fake.message(dora, text="/restyle third", reply_to=photo_message(fake, dora))
    await wait_reply(fake, third)
    fourth = fake.message(ANA, text="/restyle fourth", reply_to=photo_message(fake))
    [status_call] = await wait_reply(fake, fourth)
    assert status_call.params["text"].startswith("Queued: #3 in line")
    status = next(m for m in fake.sent(ANA["id"]) if m.get("text", "").startswith("Queued"))

    # The first job finishes and the second starts; the worker then claims the third ahead
    # (bot/worker.py, once the second has run as long as the first did): the fourth moves up.
    engine.gate.set()
    await fake.wait_until(lambda: fake.live(status)["text"].startswith("Queued: #1 in line"))
    assert buttons(fake.live(status))[0]["text"] == "✖ Cancel"


# Faults ---------------------------------------------------------------------------------------


async def test_rate_limited_album_is_retried_after_retry_after(start_bot, fake):
    bot = await start_bot()
    fake.fail_next("sendMediaGroup", 429, retry_after=1)
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake))
    await wait_reply(fake, request)
    await finish(bot, fake)
    calls = fake.calls_to("sendMediaGroup")
    assert [c.failed for c in calls] == [True, False]
    assert calls[1].at - calls[0].at >= 1.0
    assert bot.app.service.dispatch.delivery_failures == 0  # the rate limiter waited it out


async def test_blocked_member_keeps_the_result_for_the_next_start(start_bot, fake, caplog):
    bot = await start_bot()
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake))
    [status_call] = await wait_reply(fake, request)
    job_id = status_call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
    fake.blocked.add(ANA["id"])
    await fake.wait_until(lambda: any(c.failed for c in fake.calls_to("sendMediaGroup")))
    await bot.app.service.dispatch.wait_delivered()
    assert len(fake.calls_to("sendMediaGroup")) == 1  # a 403 is not retried now
    assert "blocked the bot" in caplog.text
    record = await bot.job(job_id)
    assert record.status == "done" and record.delivered_at is None
    assert await bot.app.store.has_picture(job_id, "result")

    await bot.stop()
    fake.blocked.clear()  # the member unblocked the bot
    bot2 = await start_bot()
    await fake.wait_for("sendMediaGroup", 1)
    await bot2.app.service.dispatch.wait_delivered()
    assert (await bot2.job(job_id)).delivered_at is not None


async def test_deleted_request_gets_the_result_without_a_reply(start_bot, fake):
    engine = FakeEngine()
    engine.hold()
    bot = await start_bot(engine=engine)
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake))
    await wait_reply(fake, request)
    fake.delete_message(ANA["id"], request["message_id"])
    engine.gate.set()
    await finish(bot, fake)
    [album] = fake.calls_to("sendMediaGroup")
    assert album.params["reply_parameters"]["allow_sending_without_reply"] is True
    assert not any("reply_to_message" in m for m in fake.sent(ANA["id"]) if m.get("media_group_id"))
    assert bot.app.service.dispatch.delivery_failures == 0


async def test_a_held_free_result_says_once_when_it_arrives_and_offers_upgrade(start_bot, fake):
    clock = FakeClock()
    bot = await start_bot(clock=clock, free_wait_s=40)
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake))
    [status_call] = await wait_reply(fake, request)
    job_id = status_call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
    due = (await bot.job(job_id)).created_at + 40
    await wait_parked(clock, due)  # done at once, held until 40 s after the request

    def held() -> list:
        return [c for c in fake.calls_to("editMessageText", ok_only=True) if "Ready" in c.params["text"]]

    await fake.wait_until(held)
    [edit] = held()
    assert edit.params["text"] == (
        "Ready — it arrives in about 40 s on the free plan. /upgrade to get results as soon as they're done."
    )
    assert "reply_markup" not in edit.params  # done: nothing left to cancel
    await clock.advance(15)
    await bot.adapter.job_updated(await bot.app.service.jobs.job(job_id))  # the same held job seen again
    await bot.adapter._statuses.edits.settled(job_id)
    assert len(held()) == 1 and fake.calls_to("sendMediaGroup") == []  # said once; the result waits
    await clock.advance(25)
    await finish(bot, fake)
    assert len(held()) == 1
    status = next(m for m in fake.sent(ANA["id"]) if (m.get("reply_to_message") or {}).get("message_id") == request["message_id"])
    assert fake.live(status) is None  # delivered: the status message is cleaned up as always


async def test_a_held_free_result_in_a_group_names_the_bot_in_its_upgrade_command(start_bot, fake):
    clock = FakeClock()
    bot = await start_bot(clock=clock, free_wait_s=40, group_edit_interval_s=0.2)
    request = fake.message(ANA, GROUP, text="/restyle ink", reply_to=photo_message(fake, ANA, GROUP))
    await wait_reply(fake, request)

    def held() -> list:
        return [c for c in fake.calls_to("editMessageText", ok_only=True) if "Ready" in c.params["text"]]

    await fake.wait_until(held)
    assert "/upgrade@RestyleTestBot to get results" in held()[0].params["text"]  # another bot may be there
    await clock.advance(40)
    await finish(bot, fake)


async def test_network_error_is_retried_later_and_delivered_once(start_bot, fake):
    clock = FakeClock()
    bot = await start_bot(clock=clock)
    fake.fail_next("sendMediaGroup", drop=True)
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake))
    await wait_reply(fake, request)
    await fake.wait_until(lambda: any(c.failed for c in fake.calls_to("sendMediaGroup")))
    await wait_parked(clock, clock.now() + DELIVERY_BACKOFF_S[0])  # the retry waits on the clock
    assert bot.app.service.dispatch.delivery_failures == 1
    assert fake.calls_to("sendMediaGroup", ok_only=True) == []
    await clock.advance(DELIVERY_BACKOFF_S[0])
    await finish(bot, fake)
    assert [c.failed for c in fake.calls_to("sendMediaGroup")] == [True, False]
    await wait_reply(fake, request, 2)  # the buttons message, once
    assert len(replies_to(fake, request)) == 2


async def test_buttons_failure_retry_does_not_send_the_album_twice(start_bot, fake):
    clock = FakeClock()
    bot = await start_bot(clock=clock)
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake))
    await wait_reply(fake, request)
    fake.fail_next("sendMessage", 502)  # the buttons message after the album
    await fake.wait_until(lambda: any(c.failed for c in fake.calls_to("sendMessage")))
    await wait_parked(clock, clock.now() + DELIVERY_BACKOFF_S[0])  # the retry waits on the clock
    await clock.advance(DELIVERY_BACKOFF_S[0])
    await wait_reply(fake, request, 2)
    await bot.app.service.dispatch.wait_delivered()
    assert len(fake.calls_to("sendMediaGroup")) == 1


async def test_refused_file_id_of_the_original_is_replaced_by_an_upload(start_bot, fake):
    bot = await start_bot()
    fake.fail_next("sendMediaGroup", 400, description="Bad Request: wrong file identifier/HTTP URL specified")
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake))
    await wait_reply(fake, request)
    await finish(bot, fake)
    failed, sent = fake.calls_to("sendMediaGroup")
    assert failed.failed and not sent.failed
    assert album_pictures(sent)[0] is not None  # the original, uploaded this time
    assert bot.app.service.dispatch.delivery_failures == 0


async def test_result_over_the_photo_limit_is_sent_as_a_smaller_jpeg(start_bot, fake):
    limit = 40_000
    fake.photo_upload_limit = limit
    bot = await start_bot(photo_limit_bytes=limit)
    noise = Image.effect_noise((256, 256), 120).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake, picture=buffer.getvalue()))
    await wait_reply(fake, request)
    await finish(bot, fake)
    [album] = fake.calls_to("sendMediaGroup")
    result = album_pictures(album)[1]
    assert result.startswith(JPEG_MAGIC) and len(result) <= limit
    assert not album.failed


async def test_restart_with_jobs_waiting_delivers_each_once(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.hold()
    bot = await start_bot(engine=engine)
    photo_a, photo_b = photo_message(fake), photo_message(fake, BEN)
    requests = [
        fake.message(ANA, text="/restyle one", reply_to=photo_a),
        fake.message(ANA, text="/restyle two", reply_to=photo_a),
        fake.message(BEN, text="/restyle three", reply_to=photo_b),
    ]
    for request in requests:
        await wait_reply(fake, request)
    await asyncio.to_thread(engine.started.wait, 5)
    statuses = [m for m in fake.sent() if m.get("text", "").startswith("Queued")]
    assert len(statuses) == 3
    await bot.stop()  # one job was running, two waiting
    assert fake.calls_to("sendMediaGroup") == []

    bot2 = await start_bot()
    await finish(bot2, fake, 3)
    await settle(bot2, fake)
    assert not {"queued", "running"} & set(await bot2.app.store.count_by_status())
    albums = fake.calls_to("sendMediaGroup")
    captions = sorted(a.params["media"][1]["caption"].split("”")[0].strip("“") for a in albums)
    assert captions == ["one", "three", "two"]
    for request in requests:  # each answers its own request
        assert len(replies_to(fake, request, "sendMediaGroup")) == 1
    await fake.wait_until(lambda: all(fake.live(s) is None for s in statuses))  # status ids survived


# Start-up, webhook, logs ----------------------------------------------------------------------


async def test_start_returns_when_telegram_is_down_and_connects_later(start_bot, fake):
    fake.fail_next("getMe", drop=True)
    fake.fail_next("getMe", 502)
    began = time.monotonic()
    bot = await start_bot(wait_polling=False, reconnect_delays_s=(0.05,))
    assert time.monotonic() - began < 2.0
    await fake.wait_for("getUpdates")
    assert bot.adapter.ready
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake))
    await wait_reply(fake, request)
    await finish(bot, fake)


async def test_wrong_token_stops_the_start_with_a_clear_message(start_bot, fake):
    fake.token = "999999:SomeOtherBotTokenThatTelegramKnows00"  # the server answers 401 to ours
    with pytest.raises(AdapterStartError, match=r"refused the bot token; check \[telegram\] token"):
        await start_bot(wait_polling=False, reconnect_delays_s=(0.05,))
    assert len(fake.calls_to("getMe")) == 1
    # and none to come: no reconnect loop was left running to hammer Telegram with a bad token
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "telegram-connect" and not t.done()]


async def test_webhook_port_in_use_stops_the_start_with_a_clear_message(start_bot, fake):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AdapterStartError, match=f"cannot listen on 127.0.0.1:{port}"):
            await start_bot(wait_polling=False, telegram=f'webhook_url = "https://example.org/hook"\nwebhook_port = {port}')


async def test_webhook_mode_takes_updates_signed_with_the_secret(start_bot, fake):
    fake.local_mode = True  # a self-hosted Bot API server: an http webhook on any port is allowed
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram-hook"
    bot = await start_bot(wait_polling=False,
                          telegram=f'webhook_url = "{url}"\nwebhook_listen = "127.0.0.1"\nwebhook_port = {port}')  # fmt: skip
    assert fake.webhook is not None and fake.webhook["url"] == url
    secret = fake.webhook["secret_token"]
    assert TOKEN not in secret and TOKEN.split(":")[1] not in secret
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake), push=False)
    update = {"update_id": 1, "message": request}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}) as response:
            assert response.status == 403
        async with http.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}) as response:
            assert response.status == 200
    await wait_reply(fake, request)
    await finish(bot, fake)
    assert fake.calls_to("getUpdates") == []


async def test_the_webhook_secret_is_compared_in_constant_time(start_bot, fake, monkeypatch):
    import hmac

    compared: list[tuple[bytes, bytes]] = []
    real_compare = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    fake.local_mode = True  # a self-hosted Bot API server: an http webhook on any port is allowed
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram-hook"
    await start_bot(wait_polling=False, telegram=f'webhook_url = "{url}"\nwebhook_port = {port}')
    secret = fake.webhook["secret_token"]
    update = {"update_id": 1, "message": fake.message(ANA, text="/help", push=False)}
    async with aiohttp.ClientSession() as http:
        for header, status in ((secret[:-1] + "x", 403), ("é" * 3, 403), (None, 403), (secret, 200)):
            headers = {"X-Telegram-Bot-Api-Secret-Token": header} if header is not None else {}
            async with http.post(url, json=update, headers=headers) as response:
                assert response.status == status, header
    assert (secret.encode(), secret.encode()) in compared  # the right one went through compare_digest
    assert (secret[:-1].encode() + b"x", secret.encode()) in compared  # and so did a wrong one


async def test_a_telegram_update_delivered_twice_queues_one_job(start_bot, fake):
    bot = await start_bot()
    answers: list[Any] = []
    real_submit = bot.app.service.jobs.submit

    async def counted(*args, **kwargs):
        answer = await real_submit(*args, **kwargs)
        answers.append(answer)
        return answer

    bot.app.service.jobs.submit = counted  # type: ignore[method-assign]
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake))
    fake.redeliver(request)  # at once: both copies are handled side by side
    await wait_until(lambda: len(answers) == 2, what="both copies answered")
    await finish(bot, fake)
    assert sorted(a.duplicate for a in answers) == [False, True]
    assert len({a.job_id for a in answers}) == 1
    assert await bot.app.store.count_by_status() == {"done": 1}
    def queued_messages() -> list[Any]:
        return [c for c in replies_to(fake, request) if c.params["text"].startswith("Queued")]

    assert len(queued_messages()) == 1  # said once, not twice
    # Once more after the result went out: still the same job, nothing sent.
    fake.redeliver(request)
    await wait_until(lambda: len(answers) == 3, what="the third copy answered")
    assert answers[2].duplicate and answers[2].job_id == answers[0].job_id
    assert await bot.app.store.count_by_status() == {"done": 1}
    assert len(fake.calls_to("sendMediaGroup")) == 1 and len(queued_messages()) == 1


async def test_the_token_never_appears_in_logs(start_bot, fake, caplog):
    caplog.set_level(logging.DEBUG)
    # bot.logs keeps httpx at WARNING once `python -m bot` (or a CLI test) ran in this process:
    # this test wants its URLs logged, to see that the token is hidden in them.
    caplog.set_level(logging.DEBUG, logger="httpx")
    fake.fail_next("getUpdates", drop=True)  # a polling error, logged with its traceback
    bot = await start_bot(wait_polling=False)
    await fake.wait_for("getUpdates", 1)
    request = fake.message(ANA, text="/restyle oil painting", reply_to=photo_message(fake))
    await wait_reply(fake, request)
    await finish(bot, fake)
    await bot.stop()
    # URLs were logged (the picture's download URL carries the token with its colon as %3A)...
    assert any(r.name == "httpx" and "/file/bot" in r.getMessage() for r in caplog.records)
    text = caplog.text + "".join(str(r.exc_text or "") for r in caplog.records)
    assert TOKEN not in text and TOKEN.split(":")[1] not in text  # ...without the token
    assert "<token>" in text


# Pure helpers ---------------------------------------------------------------------------------


def test_eta_and_caption_texts():
    assert [eta_text(s) for s in (None, 1, 12, 59, 61, 600)] == ["soon", "about 5 s", "about 10 s", "about 60 s", "about 1 min", "about 10 min"]
    from bot.core.types import JobView

    job = JobView(id="abcdef0123", platform="telegram", user_id="1", reply={}, prompt="x" * 2000, negative_prompt="text",
                  strength=0.3, seed=7, steps=4, output_format=None, tier="free", status="done", width=64, height=64,
                  created_at=0.0, seconds=1.234)  # fmt: skip
    caption = result_caption(job)
    assert len(caption) <= 1024 and caption.endswith("strength 0.3 (subtle) · seed 7 · 4 steps · 1.2 s")
    assert "\nno: text\n" in caption
    waiting = replace(job, status="queued", position=2, eta_s=95.0)  # position = jobs ahead
    assert status_text(waiting) == ("Queued: #3 in line, about 2 min", True)
    assert status_text(replace(job, status="running", progress=0.6)) == ("Restyling… 60%", True)


# The flood guard covers every command and button ------------------------------------------------

FLOOD_COMMANDS = ["/help", "/me", "/upgrade", "/link", "/terms", "/cancel", "/paysupport", "/restyle cat", "/start"]




async def test_fifty_commands_of_every_kind_get_one_slow_down_not_fifty_answers(start_bot, fake):
    bot = await start_bot()
    admitted = count_admissions(bot.app.service)
    messages = [fake.message(ANA, text=FLOOD_COMMANDS[i % len(FLOOD_COMMANDS)]) for i in range(50)]
    await fake.wait_until(lambda: len(admitted) == 50)  # every one of them reached the guard
    limit = bot.app.service.jobs.flood.limit
    assert admitted.count(True) == limit
    # Those let through are answered; of the rest, only the first hears "too fast".
    await fake.wait_until(lambda: sum(bool(replies_to(fake, m)) for m in messages) == limit + 1)
    answers = [c.params["text"] for m in messages for c in replies_to(fake, m)]
    assert len(answers) == limit + 1
    assert sum("too fast" in text for text in answers) == 1
    # Another member is not held up by Ana's flood.
    [answer] = await wait_reply(fake, fake.message(BEN, text="/help"))
    assert "/restyle" in answer.params["text"]


async def test_button_presses_count_toward_the_flood_guard(start_bot, fake):
    bot = await start_bot()
    admitted = count_admissions(bot.app.service)
    status = fake.message(ANA, text="(a bot message with buttons)", push=False)
    for _ in range(12):
        fake.press(ANA, status, "cancel:0123456789")
    await fake.wait_until(lambda: len(admitted) == 12)
    limit = bot.app.service.jobs.flood.limit
    # Every press is answered (an unanswered button spins), past the first refusal silently.
    await fake.wait_for("answerCallbackQuery", 12)
    texts = [c.params.get("text") or "" for c in fake.calls_to("answerCallbackQuery")]
    assert sum("That job is gone" in t for t in texts) == limit
    assert sum("too fast" in t for t in texts) == 1 and texts.count("") == 12 - limit - 1
    assert fake.unanswered_queries() == []


# Ready-made styles ------------------------------------------------------------------------------


async def test_a_reply_with_a_style_restyles_with_its_recipe_and_styles_lists_them(start_bot, fake):
    from bot.config import DEFAULT_STYLES

    bot = await start_bot()
    request = fake.message(ANA, text="/restyle style=autumn by the lake", reply_to=photo_message(fake))
    await wait_reply(fake, request, 2)
    await bot.app.service.dispatch.wait_delivered()
    [entry] = await bot.app.store.job_log()
    assert entry["prompt"] == DEFAULT_STYLES["autumn"].prompt + ", by the lake"
    record = await bot.job(entry["id"])
    assert record.strength == DEFAULT_STYLES["autumn"].strength
    styles = fake.message(ANA, text="/styles")
    [answer] = await wait_reply(fake, styles)
    lines = answer.params["text"].splitlines()
    assert lines[0].startswith("Styles: reply to a picture with /restyle style=NAME")
    assert [line.split(" ")[1] for line in lines[1:]] == list(DEFAULT_STYLES)
