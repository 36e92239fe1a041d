"""The member's language on Telegram (its `language_code`), against the strict fake Bot API: a
Spanish member reads Spanish refusals, statuses, captions and buttons, also when the result is
delivered later, and Spanish plans, prices and receipts; a Russian one a Russian Stars invoice; the
command list is registered per language."""

from __future__ import annotations

import asyncio

import pytest

from bot.commands import USAGE
from tests.fake_telegram import FakeTelegram, buttons
from tests.fakes import FakeEngine

pytestmark = pytest.mark.timeout(30)

from tests.harness.language import english_left
from tests.harness.telegram_bot import (  # noqa: F401  (fixtures)
    ANA,
    BEN,
    GROUP,
    PLANS,
    buy,
    fake,
    finish,
    photo_message,
    said,
    settle,
    start_bot,
    wait_reply,
)

LUCIA = FakeTelegram.user(1003, "Lucía", language_code="es")
IVAN = FakeTelegram.user(1004, "Иван", language_code="ru")
NADIE = FakeTelegram.user(1005, "Nadie", language_code="pt-br")


async def test_a_spanish_member_gets_a_spanish_refusal_status_and_result(start_bot, fake):
    bot = await start_bot()
    photo = photo_message(fake, LUCIA)

    wrong = fake.message(LUCIA, text="/restyle acuarela strength=2", reply_to=photo)
    [refusal] = await wait_reply(fake, wrong)
    assert refusal.params["text"].startswith("strength tiene que ser un número de 0.05 a 1.0")
    assert "Por ejemplo: /restyle" in refusal.params["text"]

    request = fake.message(LUCIA, text="/restyle oil painting strength=0.8 seed=42", reply_to=photo)
    [status] = await wait_reply(fake, request)
    assert status.params["text"].startswith("En cola: n.º 1, unos")
    [cancel] = status.params["reply_markup"]["inline_keyboard"][0]
    assert cancel["text"] == "✖ Cancelar"
    job_id = cancel["callback_data"].split(":")[1]

    await finish(bot, fake)
    [album] = fake.calls_to("sendMediaGroup")
    caption = album.params["media"][1]["caption"]
    assert "strength 0.8 (fuerte) · seed 42 ·" in caption and "pasos" in caption
    [_, buttons] = await wait_reply(fake, request, 2)
    assert buttons.params["text"] == "Más con esta imagen:"
    labels = [b["text"] for row in buttons.params["reply_markup"]["inline_keyboard"] for b in row]
    assert labels[:3] == ["🎲 Otra vez", "Más sutil 0.65", "Más fuerte 0.95"]
    assert "↔ Lado a lado" in labels
    # Saved with the job (deliveries may run in another process, after a restart), and kept
    # through the front end's own writes of its reply data (the status id, the steps sent).
    record = await bot.job(job_id)
    assert record.reply["lang"] == "es" and record.reply.get("status_id") and record.reply.get("sent")


async def test_a_russian_member_reads_help_and_me_in_russian_and_others_english(start_bot, fake):
    await start_bot()
    help_ru = fake.message(IVAN, text="/help")
    [answer] = await wait_reply(fake, help_ru)
    assert answer.params["text"].startswith("Отправьте картинку (или ответьте на неё) командой /restyle")
    me_ru = fake.message(IVAN, text="/me")
    [answer] = await wait_reply(fake, me_ru)
    assert answer.params["text"].startswith("Тариф: free")
    assert "Сегодня: использовано 0 из" in answer.params["text"]
    # A language without a catalogue, and English: the English texts.
    for user in (NADIE, ANA):
        asked = fake.message(user, text="/help")
        [answer] = await wait_reply(fake, asked)
        assert answer.params["text"].startswith(USAGE)


async def test_a_spanish_member_cancels_in_spanish_by_button_and_by_command(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.hold()
    bot = await start_bot(engine=engine)
    photo = photo_message(fake, LUCIA)
    first = fake.message(LUCIA, text="/restyle first", reply_to=photo)
    [running] = await wait_reply(fake, first)
    await asyncio.to_thread(engine.started.wait, 5)
    second = fake.message(LUCIA, text="/restyle second", reply_to=photo)
    await wait_reply(fake, second)
    status = next(m for m in fake.sent(LUCIA["id"]) if m.get("text", "").startswith("En cola") and
                  m["reply_to_message"]["message_id"] == second["message_id"])  # fmt: skip
    fake.press(LUCIA, status, buttons(status)[0]["callback_data"])
    [answer] = await fake.wait_for("answerCallbackQuery")
    assert answer.params["text"] == "Cancelado."
    await fake.wait_until(lambda: fake.live(status).get("text") == "Cancelado.")

    cancel = fake.message(LUCIA, text="/cancel")
    [answer] = await wait_reply(fake, cancel)
    assert answer.params["text"] == "Cancelé 1 trabajo."  # the running one
    first_status = next(m for m in fake.sent(LUCIA["id"]) if m.get("reply_to_message", {}).get("message_id") == first["message_id"])
    await fake.wait_until(lambda: fake.live(first_status).get("text") == "Cancelado con /cancel.")
    assert running.params["text"].startswith("En cola: n.º 1")
    engine.gate.set()
    await settle(bot, fake)


async def test_the_command_list_is_registered_in_each_language(start_bot, fake):
    await start_bot()
    await fake.wait_until(lambda: len(fake.my_commands) == 3)  # registered in the background
    default = fake.my_commands[('{"type": "default"}', "")]
    spanish = fake.my_commands[('{"type": "default"}', "es")]
    russian = fake.my_commands[('{"type": "default"}', "ru")]
    # The same names everywhere (members, /help and shared recipes all say /restyle) ...
    assert [c["command"] for c in spanish] == [c["command"] for c in default] == [c["command"] for c in russian]
    # ... and the descriptions in the language.
    described = {c["command"]: c["description"] for c in spanish}
    assert described["restyle"] == "Responde a una imagen: /restyle <nuevo estilo>"
    assert {c["command"]: c["description"] for c in russian}["cancel"] == "Отменить задания в очереди"
    assert {c["command"]: c["description"] for c in default}["cancel"] == "Cancel your waiting jobs"


async def test_a_spanish_member_reads_upgrade_with_its_plans_prices_and_perks_in_spanish(start_bot, fake):
    await start_bot(extra=PLANS)
    english = await said(fake, ANA, "/upgrade")
    upgrade = fake.message(LUCIA, text="/upgrade")
    [answer] = await wait_reply(fake, upgrade)
    spanish = answer.params["text"]
    assert spanish.startswith("Estás en el plan free.")
    assert "• Pro · mes: 250 ⭐ al mes" in spanish and "• Max · 7 días: 150 ⭐" in spanish
    assert "max: resultados en cuanto estén listos, prioridad en la cola" in spanish
    assert "Pulsa un plan para pagar con Telegram Stars." in spanish
    assert spanish.endswith("¿Tienes un código? Envía /upgrade CÓDIGO.")
    labels = [b["text"] for b in buttons(answer.params)]
    assert labels == ["Pro · mes · 250 ⭐ al mes", "Max · 7 días · 150 ⭐"]
    assert english_left(english, spanish) == []


async def test_a_spanish_member_reads_me_with_no_english_sentence_left(start_bot, fake):
    await start_bot()
    english = await said(fake, ANA, "/me")
    spanish = await said(fake, LUCIA, "/me")
    assert spanish.startswith("Plan: free") and "Pro te daría:" in spanish
    assert english_left(english, spanish) == []


async def test_a_russian_member_gets_a_russian_stars_invoice(start_bot, fake):
    await start_bot(extra=PLANS)
    _, invoice = await buy(fake, IVAN, "max_week")
    assert invoice.params["title"] == "Max · 7 дней"
    assert invoice.params["prices"] == [{"label": "Max · 7 дней", "amount": 150}]
    description = invoice.params["description"]
    assert description.startswith("Тариф max на 7 дней: ") and "приоритет в очереди" in description
    assert "обработок в день" in description  # the free tier's 20 (and max's) a day: the "many" form
    _, link = await buy(fake, IVAN, "pro_month", method="createInvoiceLink")
    assert link.params["title"] == "Pro · месяц"
    assert link.params["description"].startswith("Тариф pro на месяц с ежемесячным продлением: ")
    await fake.wait_until(lambda: any("Подписаться" in str(m.get("reply_markup")) for m in fake.sent(IVAN["id"])))


async def test_a_spanish_member_is_answered_in_spanish_at_pre_checkout_and_on_the_receipt(start_bot, fake):
    await start_bot(extra=PLANS)
    _, theirs = await buy(fake, IVAN, "max_week")
    fake.pre_checkout(LUCIA, theirs.params["payload"], 150)  # an invoice made for another member
    [declined] = await fake.wait_for("answerPreCheckoutQuery")
    assert declined.params["error_message"].startswith("Esta factura se hizo para otro miembro.")

    _, invoice = await buy(fake, LUCIA, "max_week")
    assert invoice.params["title"] == "Max · 7 días"
    assert invoice.params["description"].startswith("Plan max durante 7 días: ")
    fake.pre_checkout(LUCIA, invoice.params["payload"], 150)
    await fake.wait_for("answerPreCheckoutQuery", 2)
    fake.successful_payment(LUCIA, invoice.params["payload"], 150, "stxES1")
    await fake.wait_until(lambda: any("Pago recibido" in (m.get("text") or "") for m in fake.sent(LUCIA["id"])))
    receipt = next(m["text"] for m in fake.sent(LUCIA["id"]) if "Pago recibido" in (m.get("text") or ""))
    assert receipt.startswith("¡Pago recibido, gracias! Estás en el plan max hasta el ")
    assert receipt.endswith("\nId del cobro: stxES1")
    assert not any(english in receipt for english in ("Payment received", "You are on", "Charge id", "until"))



async def test_a_spanish_admin_reads_the_job_log_with_spanish_status_words_and_places(start_bot, fake):
    engine = FakeEngine(max_batch=1)
    engine.hold()
    bot = await start_bot(engine=engine, bot='admins = ["telegram:1003"]')
    running = fake.message(ANA, GROUP, text="/restyle running now", reply_to=photo_message(fake, ANA, GROUP))
    await wait_reply(fake, running)
    await asyncio.to_thread(engine.started.wait, 5)
    await bot.clock.advance(5)  # newest first: the waiting one is listed above
    await wait_reply(fake, fake.message(BEN, text="/restyle second in line", reply_to=photo_message(fake, BEN)))
    lines = (await said(fake, LUCIA, "/queue log")).splitlines()
    assert lines[0].endswith(", del más reciente al más antiguo (horas en UTC):")
    assert "1002 en un chat privado · “second in line” · en cola · trabajo " in lines[1]
    assert f"1001 en el chat {GROUP['id']} · “running now” · en curso · trabajo " in lines[2]
    engine.gate.set()


async def test_the_default_terms_and_support_texts_are_said_in_the_members_language(start_bot, fake):
    await start_bot(extra=PLANS)
    assert (await said(fake, LUCIA, "/terms")).startswith("Las mejoras dan un plan superior durante el periodo comprado.")
    assert (await said(fake, IVAN, "/paysupport")).startswith("Если нужна помощь с платежом, напишите администратору")
    assert (await said(fake, ANA, "/terms")).startswith("Upgrades give a higher tier for the period bought.")
