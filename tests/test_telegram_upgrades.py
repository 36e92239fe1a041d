"""Telegram upgrades on the fake Bot API: /upgrade with Stars (invoice, pre-checkout, payment,
then /me and the queue), a replayed payment, a refund, a subscription and its renewal, codes,
/link, /terms, /paysupport and the admins' /grant and /revoke."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.adapters.telegram.upgrades import GRANT_USAGE
from bot.core.types import Member
from bot.upgrades import MAX_GRANT_DAYS, code_hash
from tests.fake_telegram import FakeTelegram, buttons
from tests.fakes import FakeEngine
from tests.harness.telegram_bot import (  # noqa: F401  (fixtures)
    ADMINS,
    ANA,
    BEN,
    DAY,
    PLANS,
    ROOT,
    buy,
    fake,
    photo_message,
    said,
    start_bot,
    wait_reply,
)

pytestmark = pytest.mark.timeout(30)


async def test_stars_flow_pre_checkout_payment_me_and_queue(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.hold()
    bot = await start_bot(engine=engine, extra=PLANS)
    # Ben's job runs (held), Carl's waits, then Ana's waits behind it.
    carl = FakeTelegram.user(1003, "Carl")
    first = fake.message(BEN, text="/restyle first", reply_to=photo_message(fake, BEN))
    await wait_reply(fake, first)
    await asyncio.to_thread(engine.started.wait, 5)
    await wait_reply(fake, fake.message(carl, text="/restyle second", reply_to=photo_message(fake, carl)))
    [queued] = await wait_reply(fake, fake.message(ANA, text="/restyle mine", reply_to=photo_message(fake)))
    assert queued.params["text"].startswith("Queued: #2 in line")

    answer, invoice = await buy(fake, ANA, "max_week")
    text = answer.params["text"]
    assert "You are on the free tier." in text and "priority in the queue" in text and "Max · 7 days: 150 ⭐" in text
    assert [b["callback_data"] for b in buttons(fake.sent(ANA["id"])[-2])] == ["buy:pro_month", "buy:max_week"]
    params = invoice.params
    assert params["currency"] == "XTR" and params["provider_token"] == "" and params["chat_id"] == ANA["id"]
    assert params["prices"] == [{"label": "Max · 7 days", "amount": 150}]
    payload = params["payload"]
    assert len(payload.encode()) <= 128

    # Pre-checkout: a wrong amount and someone else's payload are declined, the real one passes.
    started = time.monotonic()
    fake.pre_checkout(ANA, payload, 150)
    [ok] = await fake.wait_for("answerPreCheckoutQuery")
    assert ok.params["ok"] is True and time.monotonic() - started < 10
    fake.pre_checkout(BEN, payload, 150)
    fake.pre_checkout(ANA, payload, 1)
    calls = await fake.wait_for("answerPreCheckoutQuery", 3)
    assert [c.params["ok"] for c in calls[1:]] == [False, False]
    assert all(c.params["error_message"] for c in calls[1:])

    fake.successful_payment(ANA, payload, 150, "stxCHARGE1")
    await fake.wait_until(lambda: any("Payment received" in (m.get("text") or "") for m in fake.sent(ANA["id"])))
    confirmation = next(m["text"] for m in fake.sent(ANA["id"]) if "Payment received" in (m.get("text") or ""))
    assert "max tier until" in confirmation and "stxCHARGE1" in confirmation
    me = await said(fake, ANA, "/me")
    assert me.startswith("Tier: max, until") and "#1 in line" in me  # jumped ahead of Carl
    account = await bot.app.store.account_for("telegram", str(ANA["id"]), 0)
    [change] = await bot.app.store.tier_changes(account.id)
    assert change["reason"] == "payment" and change["changed_by"] == "telegram-stars:stxCHARGE1"

    # The same update again (a replay) changes nothing and says nothing.
    expiry = (await bot.app.service.jobs.me(Member("telegram", str(ANA["id"])))).tier_expires_at
    fake.successful_payment(ANA, payload, 150, "stxCHARGE1")
    me = await said(fake, ANA, "/me")
    assert (await bot.app.service.jobs.me(Member("telegram", str(ANA["id"])))).tier_expires_at == expiry
    assert len(await bot.app.store.tier_changes(account.id)) == 1
    assert sum("Payment received" in (m.get("text") or "") for m in fake.sent(ANA["id"])) == 1


async def test_refund_by_an_admin_reverts_the_tier(start_bot, fake):
    bot = await start_bot(extra=PLANS, bot=ADMINS)
    _, invoice = await buy(fake, ANA, "max_week")
    fake.successful_payment(ANA, invoice.params["payload"], 150, "stxR")
    await fake.wait_until(lambda: any("Payment received" in (m.get("text") or "") for m in fake.sent(ANA["id"])))
    assert "Sorry, only the bot's admins can use /refund." in await said(fake, ANA, "/refund stxR")
    answer = await said(fake, ROOT, "/refund stxR")
    assert "Refunded 150 ⭐" in answer and "free tier" in answer
    [refund] = fake.calls_to("refundStarPayment", ok_only=True)
    assert refund.params == {"user_id": ANA["id"], "telegram_payment_charge_id": "stxR"}
    assert (await said(fake, ANA, "/me")).startswith("Tier: free")
    assert "refunded already" in await said(fake, ROOT, "/refund stxR")
    assert "No payment" in await said(fake, ROOT, "/refund nope")
    account = await bot.app.store.account_for("telegram", str(ANA["id"]), 0)
    assert [c["reason"] for c in await bot.app.store.tier_changes(account.id)] == ["payment", "refund"]


async def test_subscription_link_and_renewal(start_bot, fake):
    bot = await start_bot(extra=PLANS)
    now = bot.clock.now()
    _, link_call = await buy(fake, ANA, "pro_month", method="createInvoiceLink")
    assert link_call.params["subscription_period"] == 2592000 and link_call.params["currency"] == "XTR"
    assert link_call.params["prices"] == [{"label": "Pro · month", "amount": 250}]
    await fake.wait_until(lambda: any("Subscribe" in str(m.get("reply_markup")) for m in fake.sent(ANA["id"])))
    message = next(m for m in fake.sent(ANA["id"]) if "Subscribe" in str(m.get("reply_markup")))
    assert buttons(message)[0]["url"].startswith("https://t.me/$invoice")
    payload = link_call.params["payload"]
    fake.successful_payment(ANA, payload, 250, "sub-1", subscription_expiration_date=int(now + 30 * DAY),
                            is_recurring=True, is_first_recurring=True)  # fmt: skip
    await fake.wait_until(lambda: any("Payment received" in (m.get("text") or "") for m in fake.sent(ANA["id"])))
    member = Member("telegram", str(ANA["id"]))
    assert (await bot.app.service.jobs.me(member)).tier_expires_at == now + 30 * DAY
    await bot.clock.advance(30 * DAY - 60)  # Telegram charges again near the end of the period
    fake.successful_payment(ANA, payload, 250, "sub-2", subscription_expiration_date=int(now + 60 * DAY),
                            is_recurring=True)  # fmt: skip
    await fake.wait_until(lambda: any("Subscription renewed" in (m.get("text") or "") for m in fake.sent(ANA["id"])))
    assert (await bot.app.service.jobs.me(member)).tier_expires_at == now + 60 * DAY


async def test_upgrade_without_plans_explains_and_redeems_codes(start_bot, fake):
    bot = await start_bot()
    text = await said(fake, ANA, "/upgrade")
    assert "has not set up payments" in text and "/upgrade CODE" in text and "pictures up to 1024 px" in text
    assert not buttons(fake.sent(ANA["id"])[-1])
    [code] = await bot.app.service.codes.mint_codes("pro", 30, 1, valid_days=1)
    assert "Code accepted. You are on the pro tier until" in await said(fake, ANA, f"/upgrade {code}")
    assert "already been used" in await said(fake, BEN, f"/upgrade {code}")
    assert "not valid" in await said(fake, BEN, "/upgrade RS-AAAA-AAAA-AAAA")
    assert await bot.app.store.code(code_hash(code)) is not None
    assert (await said(fake, ANA, "/me")).startswith("Tier: pro")


async def test_terms_and_paysupport(start_bot, fake):
    await start_bot(extra='[payments]\nterms = "Be nice."\nsupport = "Mail pay@example.org"\n')
    assert await said(fake, ANA, "/terms") == "Be nice."
    assert await said(fake, ANA, "/paysupport") == "Mail pay@example.org"


async def test_link_gives_a_code_in_private_only(start_bot, fake):
    bot = await start_bot()
    group = FakeTelegram.group_chat()
    message = fake.message(ANA, group, text="/link")
    [answer] = await wait_reply(fake, message)
    assert "private chat" in answer.params["text"]
    text = await said(fake, ANA, "/link")
    code = text.split("Your link code: ")[1].split()[0]
    # Discord side (through the service, as the Discord adapter does) uses the code.
    from bot.core.types import Member

    view = await bot.app.service.codes.link_finish(Member("discord", "5001", "ana"), code)
    assert view.tier == "free"
    account = await bot.app.store.account_for("telegram", str(ANA["id"]), 0)
    assert ("discord", "5001") in await bot.app.store.identities(account.id)
    assert "not valid or has expired" in await said(fake, BEN, "/link WRONGCODE")


async def test_admin_grant_and_revoke_and_non_admin_refused(start_bot, fake):
    bot = await start_bot(bot=ADMINS)
    assert "Sorry, only the bot's admins can use /grant." in await said(fake, BEN, f"/grant {ANA['id']} max 30")
    assert "Sorry, only the bot's admins can use /revoke." in await said(fake, BEN, f"/revoke {ANA['id']}")
    assert "Usage: /grant" in await said(fake, ROOT, "/grant someone max")
    answer = await said(fake, ROOT, f"/grant {ANA['id']} max 30")
    assert f"telegram:{ANA['id']}: You are on the max tier until" in answer
    assert (await said(fake, ANA, "/me")).startswith("Tier: max, until")
    assert "max tier with no end date" in await said(fake, ROOT, "/grant discord:5001 max 0")
    assert "free tier" in await said(fake, ROOT, f"/revoke {ANA['id']}")
    assert (await said(fake, ANA, "/me")).startswith("Tier: free")
    account = await bot.app.store.account_for("telegram", str(ANA["id"]), 0)
    changes = await bot.app.store.tier_changes(account.id)
    assert [(c["to_tier"], c["changed_by"]) for c in changes] == [("max", "telegram:900"), ("free", "telegram:900")]


@pytest.mark.parametrize(
    "command",
    [
        "/grant 3005 pro 99999999999",  # days past any date: the expiry used to overflow
        "/grant 3005 pro ²",  # "²".isdigit() is True, int("²") raises
        "/grant 3005 pro -5",
        "/grant 3005 pro nan",
        "/grant 3005 pro inf",
        "/grant 3005 pro 1e9",
        "/grant ³005 pro 30",
        "/grant 99999999999999999999999999 pro 30",  # an id no platform has
        "/grant discord:٣ pro 30",  # an Arabic-Indic digit
        "/grant 3005 pro 36501",
    ],
)
async def test_odd_numbers_in_grant_get_the_usage_sentence_not_a_traceback(start_bot, fake, command):
    bot = await start_bot(bot=ADMINS)
    assert await said(fake, ROOT, command) == GRANT_USAGE.format(most=MAX_GRANT_DAYS)
    assert await bot.app.store.tier_changes((await bot.app.store.account_for("telegram", "3005", 0)).id) == []


async def test_ban_and_queue_log_with_odd_numbers_answer_in_one_sentence(start_bot, fake):
    await start_bot(bot=ADMINS)
    assert "Reply to the member's message with /ban" in await said(fake, ROOT, "/ban ²² spamming")
    assert "Reply to the member's message with /unban" in await said(fake, ROOT, "/unban 9" + "9" * 30)
    assert await said(fake, ROOT, "/queue log ²") == "No jobs in the log."  # int("²") raised here


async def test_a_429_on_a_status_edit_never_delays_a_payment_or_a_button(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.hold()
    await start_bot(engine=engine, extra=PLANS)
    _, invoice = await buy(fake, ANA, "max_week")
    plans_message = fake.sent(ANA["id"])[-2]
    fake.fail_next("editMessageText", 429, retry_after=15)
    await wait_reply(fake, fake.message(BEN, text="/restyle ink", reply_to=photo_message(fake, BEN)))
    await asyncio.to_thread(engine.started.wait, 5)  # "Restyling…": the status edit gets the 429
    await fake.wait_until(lambda: any(c.failed for c in fake.calls_to("editMessageText")))
    await asyncio.sleep(0.5)  # the member presses Pay half a second later

    query = fake.pre_checkout(ANA, invoice.params["payload"], 150)
    [answer] = await fake.wait_for("answerPreCheckoutQuery", timeout=2)
    assert answer.params["ok"] is True and fake.pre_checkout_answer(query)["after_s"] < 2
    answers = len(fake.calls_to("answerCallbackQuery", ok_only=True))
    fake.press(ANA, plans_message, "buy:max_week")
    await fake.wait_for("answerCallbackQuery", answers + 1, timeout=2)
    # The status edit was not retried inside retry_after: the throttle waits it out itself.
    assert len(fake.calls_to("editMessageText")) == 1
    engine.gate.set()
