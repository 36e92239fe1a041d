"""The Telegram front end against the strict fake (tests/fake_telegram.py): the Bot API rules
the bot used to break (issue 16), each with the defect it exposed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.adapters import AdapterStartError
from bot.adapters.telegram.texts import POST_AS_YOURSELF
from bot.core.types import Refused
from tests.fake_telegram import FakeTelegram, buttons
from tests.fakes import FakeEngine, picture_bytes
from tests.harness.telegram_bot import (  # noqa: F401  (fixtures)
    ADMINS,
    ANA,
    BEN,
    GROUP,
    PLANS,
    ROOT,
    Turnstile,
    buy,
    fake,
    free_port,
    photo_message,
    replies_to,
    said,
    settle,
    start_bot,
    wait_reply,
)

pytestmark = pytest.mark.timeout(30)


async def finished_job(bot, fake, user=ANA, chat=None) -> tuple[dict, dict]:
    """A delivered job: (the member's request, the buttons message)."""
    request = fake.message(user, chat, text="/restyle ink", reply_to=photo_message(fake, user, chat))
    await wait_reply(fake, request, 2)
    await bot.app.service.dispatch.wait_delivered()
    [buttons_message] = [m for m in fake.sent(request["chat"]["id"]) if m.get("text") == "More from this picture:"]
    return request, buttons_message


# 13. Every callback query is answered --------------------------------------------------------


async def test_every_button_press_is_answered_unknown_old_or_failing(start_bot, fake, monkeypatch):
    bot = await start_bot()
    _, message = await finished_job(bot, fake)
    fake.press(ANA, message, "zoom:abc")  # data no handler knows (an old keyboard)
    fake.press(ANA, message, "again:no-such-job")
    await settle(bot, fake)

    async def broken(job_id):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(bot.app.service.jobs, "job", broken)
    fake.press(ANA, message, buttons(message)[0]["callback_data"])  # fails before its answer
    await settle(bot, fake)
    monkeypatch.undo()

    monkeypatch.setattr(bot.app.service.jobs, "admit", lambda member: Refused("flood", "", quiet=True))
    fake.press(ANA, message, buttons(message)[0]["callback_data"])  # a quiet flood refusal
    await settle(bot, fake)
    assert fake.unanswered_queries() == []


# 13. Forum topics, stickers ------------------------------------------------------------------


async def test_the_private_chat_hint_goes_to_the_topic_it_was_asked_in(start_bot, fake):
    await start_bot(extra=PLANS)
    fake.add_topic(GROUP["id"], 7)
    carl = FakeTelegram.user(1003, "Carl")  # never opened a private chat with the bot: 403 there
    upgrade = fake.message(carl, GROUP, text="/upgrade", thread_id=7)
    await wait_reply(fake, upgrade)
    plans = fake.sent(GROUP["id"])[-1]
    assert plans.get("message_thread_id") == 7
    fake.press(carl, plans, "buy:max_week")
    await fake.wait_until(lambda: any("open a private chat" in (m.get("text") or "") for m in fake.sent(GROUP["id"])))
    [hint] = [m for m in fake.sent(GROUP["id"]) if "open a private chat" in (m.get("text") or "")]
    assert hint.get("message_thread_id") == 7
    assert fake.calls_to("sendInvoice")[-1].failed  # Telegram's answer: 403, the member never started the bot


async def test_a_static_sticker_is_a_picture(start_bot, fake):
    bot = await start_bot()
    sticker = fake.message(ANA, sticker=picture_bytes((64, 64), fmt="WEBP"), push=False)
    request = fake.message(ANA, text="/restyle ink", reply_to=sticker)
    [queued] = await wait_reply(fake, request)
    assert queued.params["text"].startswith("Queued")
    await fake.wait_for("sendMediaGroup")
    await bot.app.service.dispatch.wait_delivered()
    [album] = fake.calls_to("sendMediaGroup", ok_only=True)
    original = album.params["media"][0]
    assert original["media"].startswith("attach://")  # a sticker's file_id is no photo: uploaded


# 5. Senders that are not members -------------------------------------------------------------

ANONYMOUS_ADMIN = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}
TELEGRAM = {"id": 777000, "is_bot": False, "first_name": "Telegram"}
CHANNEL = {"id": -1009876543210, "type": "channel", "title": "Painters' news"}


async def test_an_anonymous_admin_is_told_once_to_post_as_themselves(start_bot, fake):
    bot = await start_bot()
    for _ in range(2):
        photo = photo_message(fake, ANA, GROUP)
        fake.message(ANONYMOUS_ADMIN, GROUP, text="/restyle ink", reply_to=photo, sender_chat=GROUP)
    await settle(bot, fake)
    answers = [m["text"] for m in fake.sent(GROUP["id"])]
    assert answers == [POST_AS_YOURSELF]
    assert fake.calls_to("getFile") == []


async def test_an_automatic_forward_from_the_linked_channel_never_runs_as_telegram(start_bot, fake):
    bot = await start_bot()
    fake.message(TELEGRAM, GROUP, photo=picture_bytes(), caption="/restyle ink", sender_chat=CHANNEL,
                 is_automatic_forward=True, forward_origin={"type": "channel", "chat": CHANNEL, "message_id": 5, "date": 0})  # fmt: skip
    await settle(bot, fake)
    assert fake.sent(GROUP["id"]) == [] and fake.calls_to("getFile") == []
    assert await bot.app.store._identity_account("telegram", "777000") is None


# 6. WebP and other files ---------------------------------------------------------------------


async def test_the_webp_button_sends_a_file_not_a_sticker(start_bot, fake, caplog):
    bot = await start_bot()
    _, message = await finished_job(bot, fake)
    [webp] = [b["callback_data"] for b in buttons(message) if b["callback_data"].startswith("file:webp:")]
    fake.press(ANA, message, webp)
    [call] = await fake.wait_for("sendDocument")
    assert call.params.get("disable_content_type_detection") is True
    sent = fake.sent(ANA["id"])[-1]
    assert "document" in sent and "sticker" not in sent
    assert "did not keep" not in caplog.text


# 11. Permanent BadRequests -------------------------------------------------------------------


async def test_a_closed_topic_gets_the_result_outside_the_topic(start_bot, fake):
    bot = await start_bot(engine=(engine := FakeEngine()))
    engine.hold()
    fake.add_topic(GROUP["id"], 7)
    photo = fake.message(ANA, GROUP, photo=picture_bytes((96, 64)), push=False, thread_id=7)
    request = fake.message(ANA, GROUP, text="/restyle ink", reply_to=photo, thread_id=7)
    await wait_reply(fake, request)
    fake.closed_topics.add((GROUP["id"], 7))  # an admin closes the topic while the job runs
    engine.gate.set()
    await fake.wait_for("sendMediaGroup", timeout=3)  # at once, not after a retry's backoff
    await bot.app.service.dispatch.wait_delivered()
    [album] = fake.calls_to("sendMediaGroup", ok_only=True)
    assert album.params.get("message_thread_id") is None
    assert (await bot.job(request_job(fake, request))).delivered_at is not None


async def test_no_right_to_send_photos_fails_at_once_and_tells_the_member_privately(start_bot, fake):
    bot = await start_bot()
    fake.message(ANA, text="/start")  # Ana has a private chat with the bot
    await fake.wait_for("sendMessage")
    fake.no_media_rights.add(GROUP["id"])
    request = fake.message(ANA, GROUP, text="/restyle ink", reply_to=photo_message(fake, ANA, GROUP))
    await wait_reply(fake, request)
    await fake.wait_until(lambda: any("not allowed me to send photos" in (m.get("text") or "") for m in fake.sent(ANA["id"])))
    await bot.app.service.dispatch.wait_delivered()  # given up, not parked on a 20-minute retry schedule
    assert len(fake.calls_to("sendMediaGroup")) == 1
    assert bot.app.service.dispatch.delivery_failures == 1


def request_job(fake, request) -> str:
    [status] = [m for m in fake.sent(request["chat"]["id"]) if (m.get("text") or "").startswith("Queued")]
    return buttons(status)[0]["callback_data"].split(":")[1]


# 8. Start-up errors that are not network errors ----------------------------------------------


def test_a_cloud_webhook_must_be_https_on_an_allowed_port():
    from bot.adapters.telegram.connection import webhook_problem

    assert "https://" in webhook_problem("http://bot.example.org/hook", None)
    assert "port 8080" in webhook_problem("https://bot.example.org:8080/hook", None)
    assert "port 8080" in webhook_problem("https://bot.example.org:8080/hook", "https://api.telegram.org/bot")
    assert webhook_problem("https://bot.example.org:8443/hook", None) is None
    assert webhook_problem("http://10.0.0.2:9000/hook", "http://127.0.0.1:8081/bot") is None  # self-hosted server


async def test_a_webhook_telegram_refuses_stops_the_start_with_one_sentence(start_bot, fake):

    port = free_port()
    with pytest.raises(AdapterStartError) as refused:  # the fake is the cloud API here: no http
        await start_bot(wait_polling=False, telegram=f'webhook_url = "http://127.0.0.1:{port}/hook"\nwebhook_port = {port}')
    assert "refused the webhook URL" in str(refused.value) and str(refused.value).count(". ") == 0
    assert fake.calls_to("setWebhook")[-1].failed


# 9. Two pollers ------------------------------------------------------------------------------


async def test_a_second_poller_is_logged_as_a_conflict_and_polling_recovers(start_bot, fake, caplog):
    import aiohttp

    bot = await start_bot()
    caplog.set_level(logging.ERROR, logger="bot.telegram")
    polls = len(fake.calls_to("getUpdates"))
    async with aiohttp.ClientSession() as session:  # another process with the same token
        async with session.post(f"{fake.base_url}{fake.token}/getUpdates", data={"timeout": "1"}) as answer:
            assert answer.status == 200  # the newest reader wins; the bot's held poll got the 409
    await fake.wait_until(lambda: "409 Conflict: another process is polling with this bot token" in caplog.text)
    await fake.wait_for("getUpdates", polls + 2, timeout=5)  # polling again after its backoff
    request = fake.message(ANA, text="/help")
    await wait_reply(fake, request)
    assert bot.adapter.ready


# 10. Chat migration --------------------------------------------------------------------------


async def test_a_group_that_becomes_a_supergroup_keeps_working(start_bot, fake, caplog):
    old = {"id": -4001, "type": "group", "title": "Painters"}
    engine = FakeEngine()
    engine.hold()
    bot = await start_bot(engine=engine, extra=f"[access]\ntelegram_chats = [{old['id']}]")
    request = fake.message(ANA, old, text="/restyle ink", reply_to=photo_message(fake, ANA, old))
    await wait_reply(fake, request)
    new = fake.migrate(old, -1004001)
    await settle(bot, fake)
    assert "replace -4001 with -1004001 in [access] telegram_chats" in caplog.text
    engine.gate.set()
    await fake.wait_for("sendMediaGroup")
    await bot.app.service.dispatch.wait_delivered()
    assert [c.params["chat_id"] for c in fake.calls_to("sendMediaGroup")] == [new["id"]]  # no try at the old id
    # The allow-list names the old id; the supergroup is the same group.
    again = fake.message(ANA, new, text="/restyle pencil", reply_to=photo_message(fake, ANA, new))
    [answer] = await wait_reply(fake, again)
    assert answer.params["text"].startswith("Queued")


# 7. Refunds ----------------------------------------------------------------------------------


async def test_refunding_a_subscription_payment_also_cancels_the_subscription(start_bot, fake):

    bot = await start_bot(extra=PLANS, bot=ADMINS)
    _, link = await buy(fake, ANA, "pro_month", method="createInvoiceLink")
    fake.successful_payment(ANA, link.params["payload"], 250, "sub-9", subscription_expiration_date=int(bot.clock.now() + 30 * 86400),
                            is_recurring=True, is_first_recurring=True)  # fmt: skip
    await fake.wait_until(lambda: any("Payment received" in (m.get("text") or "") for m in fake.sent(ANA["id"])))
    answer = await said(fake, ROOT, "/refund sub-9")
    assert "Refunded 250 ⭐" in answer and "subscription is cancelled" in answer
    assert fake.cancelled_subscriptions == {"sub-9"}
    await settle(bot, fake)  # Telegram's refunded_payment notice for our own refund changes nothing more
    account = await bot.app.store.account_for("telegram", str(ANA["id"]), 0)
    assert [c["reason"] for c in await bot.app.store.tier_changes(account.id)] == ["payment", "refund"]


async def test_a_refund_made_outside_the_bot_takes_back_the_time_once(start_bot, fake):

    bot = await start_bot(extra=PLANS)
    _, invoice = await buy(fake, ANA, "max_week")
    fake.successful_payment(ANA, invoice.params["payload"], 150, "stxOUT")
    await fake.wait_until(lambda: any("Payment received" in (m.get("text") or "") for m in fake.sent(ANA["id"])))
    assert (await said(fake, ANA, "/me")).startswith("Tier: max")
    notice = fake.refund_outside("stxOUT")  # Telegram support refunded it
    await fake.wait_until(lambda: any("was refunded" in (m.get("text") or "") for m in fake.sent(ANA["id"])))
    fake.redeliver(notice)  # the same notice again
    await settle(bot, fake)
    assert sum("was refunded" in (m.get("text") or "") for m in fake.sent(ANA["id"])) == 1
    assert (await said(fake, ANA, "/me")).startswith("Tier: free")
    account = await bot.app.store.account_for("telegram", str(ANA["id"]), 0)
    assert [c["reason"] for c in await bot.app.store.tier_changes(account.id)] == ["payment", "refund"]


# 3. Group budgets ----------------------------------------------------------------------------


async def test_jobs_in_one_group_share_one_status_edit_budget(start_bot, fake):

    engine = FakeEngine(max_batch=1)
    engine.gate = Turnstile()  # type: ignore[assignment]
    bot = await start_bot(engine=engine, group_edit_interval_s=0.3)
    assert fake.flood_control  # a 429 past 20 messages a minute in the group (edits count)
    members = [FakeTelegram.user(2000 + n, f"M{n}") for n in range(4)]  # within PTB's 20-a-minute group burst
    for member in members:
        request = fake.message(member, GROUP, text="/restyle ink", reply_to=photo_message(fake, member, GROUP))
        await wait_reply(fake, request)
    statuses = [m for m in fake.sent(GROUP["id"]) if (m.get("text") or "").startswith("Queued")]

    def running_shown() -> bool:
        return any((fake.live(m) or {}).get("text", "").startswith("Restyling") for m in statuses)

    for done in range(1, len(members) + 1):
        await fake.wait_until(running_shown)  # the running job's status says so (an edit)
        engine.gate.set()  # the queue moves: every waiting job's place changes at once
        await fake.wait_for("sendMediaGroup", done, timeout=5)
    await bot.app.service.dispatch.wait_delivered()
    edits = sorted(c.at for c in fake.calls_to("editMessageText") if c.params["chat_id"] == GROUP["id"])
    assert edits, "the statuses were edited at all"
    gaps = [b - a for a, b in zip(edits, edits[1:])]
    assert min(gaps, default=1.0) >= 0.29, gaps  # one edit per interval for the whole group
    assert not any(c.failed for c in fake.calls if c.params.get("chat_id") == GROUP["id"])  # never a 429


def test_a_group_status_moves_only_by_a_meaningful_step():
    from bot.adapters.telegram.texts import position_step_matters

    assert not position_step_matters(9, 8) and not position_step_matters(9, 9)
    assert position_step_matters(9, 7) and position_step_matters(4, 3) and position_step_matters(2, 1)
    assert not position_step_matters(40, 32) and position_step_matters(40, 30)
    assert position_step_matters(None, 12)


# 4. Privacy mode -----------------------------------------------------------------------------


async def test_group_hints_address_the_bot_by_name_and_the_start_logs_privacy_mode(start_bot, fake, caplog):
    caplog.set_level(logging.INFO, logger="bot.telegram")
    await start_bot()
    assert "privacy mode is on" in caplog.text and "/restyle@RestyleTestBot" in caplog.text
    fake.other_bot_spoke_last.add(GROUP["id"])  # another bot spoke last: a bare /restyle is not ours
    bare = fake.message(ANA, GROUP, text="/restyle ink")
    addressed = fake.message(ANA, GROUP, text="/restyle@RestyleTestBot ink")
    [hint] = await wait_reply(fake, addressed)
    assert "/restyle@RestyleTestBot rainy night" in hint.params["text"] and " /restyle " not in hint.params["text"]
    assert bare in fake.withheld and replies_to_count(fake, bare) == 0
    private = fake.message(ANA, text="/restyle ink")  # private chats keep the short form
    [answer] = await wait_reply(fake, private)
    assert "@RestyleTestBot" not in answer.params["text"]


def replies_to_count(fake, message) -> int:

    return len(replies_to(fake, message))


# 12. Uploads that timed out after Telegram took them -----------------------------------------


async def test_an_album_telegram_took_but_answered_late_is_not_sent_twice(start_bot, fake):
    bot = await start_bot(media_read_timeout_s=0.3)
    fake.slow_next("sendMediaGroup", 1.0)  # processed at once, answered after the bot gave up waiting
    request = fake.message(ANA, text="/restyle ink", reply_to=photo_message(fake))
    await wait_reply(fake, request, 2)  # "Queued", then the buttons message: no retry's backoff in between
    await bot.app.service.dispatch.wait_delivered()
    albums = {m["media_group_id"] for m in fake.sent(ANA["id"]) if "media_group_id" in m}
    assert len(albums) == 1 and len(fake.calls_to("sendMediaGroup")) == 1


# 13. Status editing stops after 403 ----------------------------------------------------------


async def test_status_editing_stops_after_a_403(start_bot, fake):
    from dataclasses import replace


    engine = FakeEngine(max_batch=1)
    engine.gate = Turnstile()  # type: ignore[assignment]
    bot = await start_bot(engine=engine)
    await wait_reply(fake, fake.message(BEN, text="/restyle first", reply_to=photo_message(fake, BEN)))
    await asyncio.to_thread(engine.started.wait, 5)
    carl = FakeTelegram.user(1003, "Carl")
    await wait_reply(fake, fake.message(carl, text="/restyle second", reply_to=photo_message(fake, carl)))
    request = fake.message(ANA, text="/restyle third", reply_to=photo_message(fake))
    await wait_reply(fake, request)
    job_id = request_job(fake, request)
    fake.blocked.add(ANA["id"])  # Ana blocks the bot while she waits
    engine.gate.set()  # the queue moves: Ana's status wants "#1 in line" and gets the 403
    await fake.wait_until(lambda: any(c.failed and c.params["chat_id"] == ANA["id"] for c in fake.calls_to("editMessageText")))
    status_edits = bot.adapter._statuses.edits
    await status_edits.settled(job_id)
    edits = len(fake.calls_to("editMessageText"))
    view = await bot.app.service.jobs.job(job_id)
    await bot.adapter.job_updated(replace(view, status="running", progress=0.5))  # a later update
    await status_edits.settled(job_id)
    assert status_edits.is_final(job_id) and len(fake.calls_to("editMessageText")) == edits
    engine.gate.set()
    engine.gate.set()


async def test_a_result_going_out_in_a_group_comes_before_status_edits(start_bot, fake):

    engine = FakeEngine(max_batch=1)
    engine.gate = Turnstile()  # type: ignore[assignment]
    await start_bot(engine=engine, group_edit_interval_s=0.05)
    first = fake.message(ANA, GROUP, text="/restyle one", reply_to=photo_message(fake, ANA, GROUP))
    await wait_reply(fake, first)
    await asyncio.to_thread(engine.started.wait, 5)
    second = fake.message(BEN, GROUP, text="/restyle two", reply_to=photo_message(fake, BEN, GROUP))
    await wait_reply(fake, second)
    status = next(m for m in fake.sent(GROUP["id"]) if (m.get("reply_to_message") or {}).get("message_id") == second["message_id"])
    fake.slow_next("sendMediaGroup", 0.6)  # the first result's upload takes a while
    engine.gate.set()  # the first is done; the second starts and wants "Restyling…"

    def restyling() -> list:
        return [e for e in fake.calls_to("editMessageText")
                if e.params.get("message_id") == status["message_id"] and "Restyling" in str(e.params.get("text"))]  # fmt: skip

    await fake.wait_until(lambda: fake.calls_to("sendMediaGroup", ok_only=True) and restyling())
    [album] = fake.calls_to("sendMediaGroup")
    # The second's "Restyling…" may have gone out before the first result was ready (the worker
    # claims ahead); what must never happen is an edit in this group while the album is on its way.
    in_flight = [e for e in fake.calls_to("editMessageText") if album.at <= e.at < album.at + 0.6 - 0.01]
    assert in_flight == []
    engine.gate.set()
