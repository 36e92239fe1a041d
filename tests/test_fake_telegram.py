"""The strict fake Bot API enforces Telegram's rules (each names its source in
tests/fake_telegram.py): driven here over plain HTTP, without the bot."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.fake_telegram import FakeTelegram
from tests.fakes import picture_bytes

pytestmark = pytest.mark.timeout(10)

TOKEN = "42:strict-fake-token-0123456789"
ANA = FakeTelegram.user(1001, "Ana")
GROUP = FakeTelegram.group_chat()


@pytest.fixture
async def api():
    fake = await FakeTelegram(TOKEN).start()
    async with aiohttp.ClientSession() as session:

        async def call(method: str, **params):
            form = aiohttp.FormData()
            for key, value in params.items():
                if isinstance(value, bytes):
                    form.add_field(key, value, filename=f"{key}.bin")
                else:
                    form.add_field(key, value if isinstance(value, str) else json.dumps(value))
            async with session.post(f"{fake.base_url}{TOKEN}/{method}", data=form) as answer:
                return await answer.json()

        call.fake = fake  # type: ignore[attr-defined]
        yield call
    await fake.close()


async def test_flood_control_answers_429_with_retry_after(api):
    fake = api.fake
    fake.private_flood_control = True
    fake.message(ANA, GROUP, text="/start", push=False)
    fake.message(ANA, text="/start", push=False)
    assert (await api("sendMessage", chat_id=ANA["id"], text="one"))["ok"]
    second = await api("sendMessage", chat_id=ANA["id"], text="two")  # a second in the same second
    assert second["error_code"] == 429 and second["parameters"]["retry_after"] >= 1
    answers = [await api("sendMessage", chat_id=GROUP["id"], text=f"n{n}") for n in range(21)]
    assert all(a["ok"] for a in answers[:20]) and answers[20]["error_code"] == 429


async def test_callback_answers_once_short_and_fresh(api):
    fake = api.fake
    bot_message = {"message_id": 1, "chat": fake.private_chat(ANA), "from": fake.bot_user}
    first = fake.press(ANA, bot_message, "x")
    assert (await api("answerCallbackQuery", callback_query_id=first, text="a" * 201))["error_code"] == 400
    assert first in fake.unanswered_queries()
    assert (await api("answerCallbackQuery", callback_query_id=first, text="ok"))["ok"]
    assert (await api("answerCallbackQuery", callback_query_id=first))["error_code"] == 400  # answered already
    old = fake.press(ANA, bot_message, "x")
    fake.age_query(old, 15 * 60 + 1)
    assert "query is too old" in (await api("answerCallbackQuery", callback_query_id=old))["description"]


async def test_a_pre_checkout_answered_after_10_s_cancels_the_payment(api):
    fake = api.fake
    late = fake.pre_checkout(ANA, "u1.plan.n.tag", 150)
    fake.age_query(late, 10.5)
    assert (await api("answerPreCheckoutQuery", pre_checkout_query_id=late, ok=True))["error_code"] == 400
    assert fake.cancelled_payments == [late]
    in_time = fake.pre_checkout(ANA, "u1.plan.n.tag", 150)
    assert (await api("answerPreCheckoutQuery", pre_checkout_query_id=in_time, ok=True))["ok"]


async def test_who_may_be_written_to_and_where(api):
    fake = api.fake
    fake.message(ANA, GROUP, text="/restyle", push=False)  # Ana is known from the group only
    never_started = await api("sendMessage", chat_id=ANA["id"], text="hi")
    assert never_started["error_code"] == 403 and "can't initiate conversation" in never_started["description"]
    fake.blocked.add(GROUP["id"])
    assert "blocked" in (await api("sendMessage", chat_id=GROUP["id"], text="hi"))["description"]
    fake.blocked.clear()
    assert "thread not found" in (await api("sendMessage", chat_id=GROUP["id"], text="hi", message_thread_id=5))["description"]
    fake.add_topic(GROUP["id"], 5, closed=True)
    assert "TOPIC_CLOSED" in (await api("sendMessage", chat_id=GROUP["id"], text="hi", message_thread_id=5))["description"]
    fake.no_media_rights.add(GROUP["id"])
    assert "not enough rights" in (await api("sendPhoto", chat_id=GROUP["id"], photo=picture_bytes()))["description"]
    assert "message is too long" in (await api("sendMessage", chat_id=GROUP["id"], text="a" * 4097))["description"]
    new = fake.migrate(GROUP, -100999)
    moved = await api("sendMessage", chat_id=GROUP["id"], text="hi")
    assert moved["parameters"]["migrate_to_chat_id"] == new["id"]


async def test_files_keep_their_type(api):
    fake = api.fake
    fake.message(ANA, text="/start", push=False)
    webp = picture_bytes(fmt="WEBP")
    as_sticker = await api("sendDocument", chat_id=ANA["id"], document=webp)
    assert "sticker" in as_sticker["result"] and "document" not in as_sticker["result"]
    as_file = await api("sendDocument", chat_id=ANA["id"], document=webp, disable_content_type_detection=True)
    assert "document" in as_file["result"]
    document_id = as_file["result"]["document"]["file_id"]
    media = [{"type": "photo", "media": document_id}, {"type": "photo", "media": document_id}]
    assert "Document as Photo" in (await api("sendMediaGroup", chat_id=ANA["id"], media=media))["description"]
    long_caption = await api("sendPhoto", chat_id=ANA["id"], photo=picture_bytes(), caption="a" * 1025)
    assert "caption is too long" in long_caption["description"]


async def test_invoice_limits_and_webhook_rules(api):
    fake = api.fake
    fake.message(ANA, text="/start", push=False)
    base = {"chat_id": ANA["id"], "title": "Pro", "description": "a month", "payload": "p", "currency": "XTR",
            "provider_token": "", "prices": [{"label": "Pro", "amount": 250}]}  # fmt: skip
    assert (await api("sendInvoice", **base))["ok"]
    assert (await api("sendInvoice", **{**base, "title": "t" * 33}))["error_code"] == 400
    assert (await api("sendInvoice", **{**base, "description": "d" * 256}))["error_code"] == 400
    assert (await api("sendInvoice", **{**base, "payload": "p" * 129}))["error_code"] == 400
    link = {k: v for k, v in base.items() if k != "chat_id"}
    assert (await api("createInvoiceLink", **link, subscription_period=2592000))["ok"]
    too_dear = {**link, "prices": [{"label": "Pro", "amount": 10001}]}
    assert (await api("createInvoiceLink", **too_dear, subscription_period=2592000))["error_code"] == 400
    assert (await api("createInvoiceLink", **{**link, "currency": "EUR"}, subscription_period=2592000))["error_code"] == 400
    assert "HTTPS" in (await api("setWebhook", url="http://bot.example.org/hook"))["description"]
    assert "ports" in (await api("setWebhook", url="https://bot.example.org:8080/hook"))["description"]
    assert (await api("setWebhook", url="https://bot.example.org:8443/hook"))["ok"]


async def test_privacy_mode_keeps_plain_group_messages_from_the_bot(api):
    fake = api.fake
    fake.message(ANA, GROUP, text="nice picture")
    fake.message(ANA, GROUP, text="/restyle@OtherBot ink")
    fake.other_bot_spoke_last.add(GROUP["id"])
    fake.message(ANA, GROUP, text="/restyle ink")
    fake.message(ANA, GROUP, text="/restyle@RestyleTestBot ink")
    updates = (await api("getUpdates", timeout=0))["result"]
    assert [u["message"]["text"] for u in updates] == ["/restyle@RestyleTestBot ink"]
    assert len(fake.withheld) == 3


async def test_set_my_commands_takes_a_two_letter_language_and_valid_commands(api):
    """Bot API, setMyCommands: language_code is a two-letter ISO 639-1 code (empty: everyone);
    a command is 1-32 lowercase letters, digits and underscores, its description 1-256 characters."""
    good = [{"command": "restyle", "description": "Responde a una imagen"}]
    assert (await api("setMyCommands", commands=good, language_code="es"))["ok"]
    assert (await api("setMyCommands", commands=good))["ok"]
    for code in ("es-ES", "ES", "spa", "e"):
        answer = await api("setMyCommands", commands=good, language_code=code)
        assert not answer["ok"] and answer["error_code"] == 400, code
    for bad in ({"command": "Restyle", "description": "x"}, {"command": "re-style", "description": "x"},
                {"command": "r" * 33, "description": "x"}, {"command": "restyle", "description": ""},
                {"command": "restyle", "description": "x" * 257}):  # fmt: skip
        answer = await api("setMyCommands", commands=[bad])
        assert not answer["ok"] and answer["error_code"] == 400, bad
    assert set(api.fake.my_commands) == {('{"type": "default"}', "es"), ('{"type": "default"}', "")}


async def test_document_albums_take_only_documents_and_each_file_is_at_most_50_mb(api):
    fake = api.fake
    fake.message(ANA, text="/start", push=False)
    assert fake.document_upload_limit == 50_000_000  # Bot API, sendDocument: 50 MB for bots

    async def album(*kinds: str) -> dict:
        form = aiohttp.FormData()
        form.add_field("chat_id", str(ANA["id"]))
        media = [{"type": kind, "media": f"attach://part{i}"} for i, kind in enumerate(kinds)]
        form.add_field("media", json.dumps(media))
        for i in range(len(kinds)):
            form.add_field(f"part{i}", picture_bytes(), filename=f"restyle-{i}.png")
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{fake.base_url}{TOKEN}/sendMediaGroup", data=form) as answer:
                return await answer.json()

    sent = await album("document", "document", "document")
    assert sent["ok"] and [m["document"]["file_name"] for m in sent["result"]] == [f"restyle-{i}.png" for i in range(3)]
    assert "MEDIA_INVALID" in (await album("document", "photo"))["description"]  # not mixed with photos
    assert not (await album("document"))["ok"]  # 2-10 items
    fake.document_upload_limit = 100  # stricter here, to test the rule without a 50 MB upload
    assert (await album("document", "document"))["error_code"] == 413
    assert (await api("sendDocument", chat_id=ANA["id"], document=picture_bytes()))["error_code"] == 413
