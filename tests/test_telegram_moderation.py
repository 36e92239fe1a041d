"""Access and moderation on Telegram, end to end against the fake Bot API: [access] allow-lists
and private chats, admins' /ban, /unban and /queue (fixtures from tests/harness/telegram_bot.py)."""

from __future__ import annotations

import asyncio

import pytest

from bot.moderation import BANNED, NO_DMS, NOT_HERE
from tests.fake_telegram import FakeTelegram, buttons
from tests.fakes import FakeEngine, picture_bytes
from tests.harness.telegram_bot import (  # noqa: F401  (fixtures)
    ANA,
    BEN,
    GROUP,
    fake,
    finish,
    photo_message,
    replies_to,
    settle,
    start_bot,
    wait_reply,
)

pytestmark = pytest.mark.timeout(30)

ADA = FakeTelegram.user(9001, "Ada")  # the bot's admin
ADMINS = 'admins = ["telegram:9001"]'
OTHER_GROUP = FakeTelegram.group_chat(-1009999, "Elsewhere")


async def test_outside_the_allowed_chats_the_bot_answers_once_then_stays_quiet(start_bot, fake):
    bot = await start_bot(extra=f"[access]\ntelegram_chats = [{GROUP['id']}]")
    photo = photo_message(fake, ANA, OTHER_GROUP)
    first = fake.message(ANA, OTHER_GROUP, text="/restyle oil painting", reply_to=photo)
    [answer] = await wait_reply(fake, first)
    assert answer.params["text"] == NOT_HERE
    again = fake.message(BEN, OTHER_GROUP, text="/restyle watercolor", reply_to=photo)
    caption = fake.message(ANA, OTHER_GROUP, photo=picture_bytes(), caption="/restyle pencil")
    await settle(bot, fake)  # both handled: what was not said by now is not said
    assert replies_to(fake, again) == [] and replies_to(fake, caption) == []
    assert fake.calls_to("getFile") == []  # nothing downloaded outside the list

    # In the listed group, and in a private chat, it works.
    photo = photo_message(fake, ANA, GROUP)
    ok = fake.message(ANA, GROUP, text="/restyle oil painting", reply_to=photo)
    [status] = await wait_reply(fake, ok)
    assert status.params["text"].startswith("Queued")
    private = fake.message(BEN, text="/restyle oil painting", reply_to=photo_message(fake, BEN))
    [status] = await wait_reply(fake, private)
    assert status.params["text"].startswith("Queued")


async def test_with_private_chats_off_a_request_there_is_refused_once(start_bot, fake):
    bot = await start_bot(extra="[access]\ndirect_messages = false")
    photo = photo_message(fake, ANA)
    first = fake.message(ANA, text="/restyle oil painting", reply_to=photo)
    [answer] = await wait_reply(fake, first)
    assert answer.params["text"] == NO_DMS
    second = fake.message(ANA, text="/restyle oil painting", reply_to=photo)
    await settle(bot, fake)  # both handled: what was not said by now is not said
    assert replies_to(fake, second) == []
    in_group = fake.message(ANA, GROUP, text="/restyle oil painting", reply_to=photo_message(fake, ANA, GROUP))
    [status] = await wait_reply(fake, in_group)
    assert status.params["text"].startswith("Queued")


async def test_result_buttons_in_a_chat_taken_off_the_list_stop_making_new_work(start_bot, fake):
    bot = await start_bot()
    request = fake.message(ANA, GROUP, text="/restyle oil painting", reply_to=photo_message(fake, ANA, GROUP))
    await finish(bot, fake)
    buttons_message = next(m for m in fake.sent(GROUP["id"]) if m.get("text") == "More from this picture:")
    again = next(b["callback_data"] for b in buttons(buttons_message) if b["callback_data"].startswith("again:"))
    await bot.stop()

    bot = await start_bot(extra=f"[access]\ntelegram_chats = [{OTHER_GROUP['id']}]")
    fake.press(ANA, buttons_message, again)
    await fake.wait_for("answerCallbackQuery")
    [answer] = fake.calls_to("answerCallbackQuery")
    assert answer.params["text"] == NOT_HERE and answer.params["show_alert"] is True
    fake.press(ANA, buttons_message, again)
    await fake.wait_for("answerCallbackQuery", 2)
    assert "text" not in fake.calls_to("answerCallbackQuery")[1].params  # quiet the second time
    assert len(replies_to(fake, request)) == 2  # only the first run's status and buttons
    assert len(await bot.app.store.job_log(10)) == 1  # no new job


async def test_an_admin_bans_by_reply_which_cancels_waiting_jobs_and_unbans_by_id(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.hold()
    await start_bot(engine=engine, bot=ADMINS)
    busy = fake.message(ANA, GROUP, text="/restyle keeps the engine busy", reply_to=photo_message(fake, ANA, GROUP))
    await wait_reply(fake, busy)
    await asyncio.to_thread(engine.started.wait, 5)
    photo = photo_message(fake, BEN, GROUP)
    spam = [fake.message(BEN, GROUP, text=f"/restyle spam {i}", reply_to=photo) for i in range(2)]
    statuses = [(await wait_reply(fake, m))[0] for m in spam]
    assert all(s.params["text"].startswith("Queued") for s in statuses)

    ban = fake.message(ADA, GROUP, text="/ban flooding the group", reply_to=spam[0])
    [answer] = await wait_reply(fake, ban)
    assert answer.params["text"] == "Banned Ben (1002): flooding the group. Cancelled 2 waiting jobs."
    status_messages = [m for m in fake.sent(GROUP["id"]) if m.get("reply_to_message", {}).get("message_id") in
                       {s["message_id"] for s in spam}]  # fmt: skip
    await fake.wait_until(lambda: all(fake.live(m)["text"] == "Cancelled." for m in status_messages))
    assert not any(buttons(fake.live(m)) for m in status_messages)

    refused = fake.message(BEN, GROUP, text="/restyle spam again", reply_to=photo)
    [answer] = await wait_reply(fake, refused)
    assert answer.params["text"] == BANNED

    unban = fake.message(ADA, text=f"/unban {BEN['id']} appeal accepted")
    [answer] = await wait_reply(fake, unban)
    assert answer.params["text"] == f"Unbanned {BEN['id']}; they can use the bot again."
    welcome_back = fake.message(BEN, GROUP, text="/restyle a calm one", reply_to=photo)
    [status] = await wait_reply(fake, welcome_back)
    assert status.params["text"].startswith("Queued")
    engine.gate.set()


async def test_ban_by_id_without_a_reason_and_usage_when_no_one_is_named(start_bot, fake):
    await start_bot(bot=ADMINS)
    by_id = fake.message(ADA, text=f"/ban {BEN['id']}")
    [answer] = await wait_reply(fake, by_id)
    assert answer.params["text"] == f"Banned {BEN['id']}: no reason given. Cancelled 0 waiting jobs."
    nobody = fake.message(ADA, text="/ban because")
    [answer] = await wait_reply(fake, nobody)
    assert "Reply to the member's message with /ban" in answer.params["text"]
    bot_reply = fake.sent(ADA["id"])[-1]  # replying to the bot's own message names no member
    at_bot = fake.message(ADA, text="/unban", reply_to=bot_reply)
    [answer] = await wait_reply(fake, at_bot)
    assert "/unban 123456789" in answer.params["text"]


async def test_members_who_are_not_admins_are_refused_politely(start_bot, fake):
    await start_bot(bot=ADMINS)
    for command in ("ban", "unban", "queue"):
        attempt = fake.message(BEN, text=f"/{command} {ANA['id']} no reason")
        [answer] = await wait_reply(fake, attempt)
        assert answer.params["text"] == f"Sorry, only the bot's admins can use /{command}."
    request = fake.message(ANA, text="/restyle still fine", reply_to=photo_message(fake, ANA))
    [status] = await wait_reply(fake, request)
    assert status.params["text"].startswith("Queued")  # nobody was banned
    commands = [c["command"] for c in (await fake.wait_for("setMyCommands"))[0].params["commands"]]
    assert not {"ban", "unban", "queue"} & set(commands)  # admin commands are not advertised


async def test_queue_shows_who_is_waiting_and_the_log_shows_who_asked_what_where(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.hold()
    bot = await start_bot(engine=engine, bot=ADMINS)
    empty = fake.message(ADA, text="/queue")
    [answer] = await wait_reply(fake, empty)
    assert answer.params["text"].startswith("Nobody is waiting (free 0 · pro 0 · max 0)")
    running = fake.message(ANA, GROUP, text="/restyle running now", reply_to=photo_message(fake, ANA, GROUP))
    await wait_reply(fake, running)
    await asyncio.to_thread(engine.started.wait, 5)
    await bot.clock.advance(5)
    waiting = fake.message(BEN, text="/restyle second in line", reply_to=photo_message(fake, BEN))
    await wait_reply(fake, waiting)

    queue = fake.message(ADA, text="/queue")
    [answer] = await wait_reply(fake, queue)
    lines = answer.params["text"].splitlines()
    assert lines[0] == "Waiting: free 1 · pro 0 · max 0"
    assert lines[1].startswith("#1 free · job ") and "1002 · waiting" in lines[1] and "“second in line”" in lines[1]
    assert len(lines) == 3  # the running job is not waiting

    log = fake.message(ADA, text="/queue log")
    [answer] = await wait_reply(fake, log)
    lines = answer.params["text"].splitlines()
    assert lines[0] == "Latest 2 jobs, newest first (times UTC):"
    assert "1002 in a private chat · “second in line” · queued" in lines[1]
    assert f"1001 in chat {GROUP['id']} · “running now” · running" in lines[2]
    engine.gate.set()


async def test_queue_answers_only_in_a_private_chat(start_bot, fake):
    await start_bot(bot=ADMINS)
    in_group = fake.message(ADA, GROUP, text="/queue log")
    [answer] = await wait_reply(fake, in_group)
    assert "private chat" in answer.params["text"] and "telegram:" not in answer.params["text"]


def test_queue_texts_fit_one_telegram_message():
    from bot.adapters.telegram.texts import TELEGRAM_STYLE
    from bot.chat.texts import job_log

    entries = [{"id": f"job{i}", "platform": "telegram", "user_id": "1", "reply": {"chat_id": 1}, "prompt": "x" * 500,
                "status": "failed", "error": "e" * 500, "created_at": 0.0, "finished_at": 1.0} for i in range(50)]  # fmt: skip
    text = job_log(entries, TELEGRAM_STYLE)
    assert len(text) <= 4096 and text.endswith("more lines") and "x" * 60 not in text
