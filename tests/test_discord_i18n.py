"""The member's language on Discord (the interaction's `locale`), against the strict fake: the
commands are synced with description_localizations Discord accepts (keys from its Locales list),
names stay English, a Russian member reads Russian statuses, results, buttons and refusals, a Spanish
one Spanish plans and perks, and an @mention is answered in its member's latest interaction language."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.adapters.discord.translator import CatalogueTranslator
from tests.fake_discord import LOCALES, _command_schema_problem
from tests.fakes import picture_bytes
from tests.harness.discord_bot import (
    CHANNEL,
    GUILD,
    OTHER,
    USER,
    callbacks,
    ephemerals,
    h,  # noqa: F401  (a fixture)
    result_edits,
)
from tests.harness.language import english_left

pytestmark = pytest.mark.timeout(30)


async def test_the_commands_are_synced_with_spanish_and_russian_descriptions_and_english_names(h):
    await h.start()
    commands = {c["name"]: c for c in h.fake.commands[str(GUILD)]}
    restyle = commands["restyle"]
    assert restyle["description"] == "Restyle a picture with a text prompt"
    localized = restyle["description_localizations"]
    assert set(localized) == {"es-ES", "es-419", "ru"}  # only where there is a translation
    assert localized["es-ES"] == localized["es-419"] == "Cambia el estilo de una imagen con una descripción"
    assert localized["ru"] == "Изменить стиль картинки по текстовому описанию"
    assert not restyle.get("name_localizations")  # /restyle everywhere
    options = {o["name"]: o for o in restyle["options"]}
    assert options["steps"]["description"] == "Denoising steps, 1 to 50, capped by your tier (optional)"
    assert options["steps"]["description_localizations"]["ru"].startswith("Шаги шумоподавления, от 1 до 50")
    assert not options["strength"].get("name_localizations")
    assert all(set(c.get("description_localizations") or {}) <= LOCALES for c in commands.values())


def test_the_fake_refuses_a_localization_discord_would_refuse():
    command = {"name": "restyle", "type": 1, "description": "Restyle a picture", "options": []}
    assert _command_schema_problem([{**command, "description_localizations": {"es-ES": "Reestiliza"}}]) is None
    for bad in ({"es": "Reestiliza"}, {"ru-RU": "x"}, {"en": "x"}, {"es-ES": ""}, {"ru": "x" * 101}):
        assert _command_schema_problem([{**command, "description_localizations": bad}]), bad
    assert _command_schema_problem([{**command, "name_localizations": {"es-ES": "Reestilizar"}}])  # upper case
    option = {"name": "prompt", "type": 3, "description": "The style", "description_localizations": {"pt": "x"}}
    assert _command_schema_problem([{**command, "options": [option]}])


async def test_the_translator_keeps_names_and_english_and_says_descriptions_in_the_language():
    import discord
    from discord import app_commands

    translator = CatalogueTranslator()
    text = app_commands.locale_str("Cancel your waiting and running jobs")
    description = app_commands.TranslationContext(app_commands.TranslationContextLocation.command_description, None)
    name = app_commands.TranslationContext(app_commands.TranslationContextLocation.command_name, None)
    assert await translator.translate(text, discord.Locale.spain_spanish, description) == (
        "Cancela tus trabajos en espera y en curso"
    )
    assert await translator.translate(text, discord.Locale.american_english, description) is None
    assert await translator.translate(text, discord.Locale.japanese, description) is None
    assert await translator.translate(app_commands.locale_str("cancel"), discord.Locale.russian, name) is None


async def test_a_russian_member_gets_a_russian_status_result_and_buttons(h):
    await h.start()
    h.fake.user_locales[USER] = "ru"
    gate = h.hold_engine()
    interaction = await h.restyle("oil painting", 0.8, seed=42)
    status = await h.fake.wait_for(
        lambda: [c for c in h.fake.find("PATCH", r"^/webhooks/") if "Меняю стиль" in (c.content or "")],
        what="a Russian progress edit",
    )
    assert "strength 0.8 (сильная)" in status[-1].content
    gate.set()
    message = await h.result_of(interaction)
    assert "seed 42" in message["content"] and "шаг" in message["content"]
    labels = [b["label"] for row in message["components"] for b in row["components"]]
    assert labels[:3] == ["Ещё раз", "Мягче", "Сильнее"]
    job = (await h.jobs())[0]
    assert job.reply["lang"] == "ru"
    assert len(result_edits(h.fake)) == 1


async def test_a_spanish_member_is_refused_in_spanish_and_an_english_one_in_english(h):
    await h.start()
    h.fake.user_locales[USER] = "es-419"
    await h.restyle(steps=20)  # the free tier allows 8
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the refusal")
    assert ephemerals(h.fake)[0].startswith("El plan free permite hasta 8 pasos; usa steps=8 o menos.")
    assert "Mejora tu plan con /upgrade" in ephemerals(h.fake)[0]
    await h.restyle(steps=20, user_id=2002)  # no locale set: en-US
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 2, what="the second refusal")
    assert ephemerals(h.fake)[1].startswith("The free tier allows up to 8 steps")


async def test_help_and_me_in_russian(h):
    await h.start()
    h.fake.user_locales[USER] = "ru"
    await h.fake.slash("help", {})
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="/help")
    assert ephemerals(h.fake)[0].startswith("**Как изменить стиль картинки**")
    await h.fake.slash("me", {})
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 2, what="/me")
    assert ephemerals(h.fake)[1].startswith("Тариф: **free**")


SKU = 1300000000000000001
PLANS = f"""
[plans.pro_month]
tier = "pro"
days = 30
stars = 250
subscription = true
discord_sku = {SKU}
"""


async def answer_to(h, command: str, user_id: int) -> str:
    before = len(ephemerals(h.fake))
    await h.fake.slash(command, {}, user_id=user_id)
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) > before, what=f"/{command}")
    return ephemerals(h.fake)[-1]


async def test_upgrade_and_me_in_spanish_leave_no_english_sentence(h):
    h.fake.sku(SKU)
    await h.start(PLANS)
    h.fake.user_locales[USER] = "es-ES"
    english, spanish = await answer_to(h, "upgrade", OTHER), await answer_to(h, "upgrade", USER)
    assert spanish.startswith("Estás en el plan **free**.")
    assert "**pro**: resultados en cuanto estén listos, prioridad en la cola" in spanish
    assert "Planes: Pro · mes. Compra uno con un botón de abajo." in spanish
    assert spanish.endswith("¿Tienes un código? Usa `/upgrade code:TU-CÓDIGO`.")
    assert english_left(english, spanish) == []
    english, spanish = await answer_to(h, "me", OTHER), await answer_to(h, "me", USER)
    assert spanish.startswith("Plan: **free**")
    assert english_left(english, spanish) == []


async def mention(h, content: str, **kw) -> None:
    message = h.fake.message(CHANNEL, guild_id=GUILD, author=h.fake.user(USER, "member"),
                             content=f"<@{h.fake.bot_user['id']}> {content}", **kw)  # fmt: skip
    message["mentions"] = [h.fake.bot_user]
    await h.fake.message_create(message)


async def test_a_mention_is_answered_in_the_language_of_the_members_latest_command(h):
    await h.start("message_replies = true")
    await mention(h, "watercolor")  # no picture, and no language known yet: English
    await h.messages_handled(1)
    replies = lambda: h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$")  # noqa: E731
    assert replies()[-1].content.startswith("Reply to a message with a picture (or attach one)")

    h.fake.user_locales[USER] = "es-ES"
    await answer_to(h, "help", USER)  # the member's Discord language, seen on their command
    await mention(h, "watercolor")
    await h.messages_handled(2)
    assert replies()[-1].content.startswith("Responde a un mensaje con una imagen (o adjunta una)")
    await mention(h, "watercolor strength=2", attachments=[h.fake.attachment(picture_bytes())])
    await h.messages_handled(3)
    assert replies()[-1].content.startswith("strength tiene que ser un número de 0.05 a 1.0")
    assert "Por ejemplo: `@" in replies()[-1].content

    await mention(h, "watercolor", attachments=[h.fake.attachment(picture_bytes())])
    await h.messages_handled(4)
    assert replies()[-1].content == "⏳ Recibido…"
    [job] = await h.jobs()
    assert job.reply["lang"] == "es-ES"  # its later statuses and result are said in Spanish too


async def test_the_restyle_image_form_is_in_the_members_language_and_still_restyles(h):
    await h.start()
    h.fake.user_locales[USER] = "es-ES"
    target = h.fake.message(CHANNEL, author=h.fake.user(3003, "poster"), guild_id=GUILD,
                            attachments=[h.fake.attachment(picture_bytes())])  # fmt: skip
    await h.fake.context_menu(target)
    modal_call = (await h.fake.wait_for(lambda: callbacks(h.fake, 9), what="the form"))[0]
    modal = modal_call.json["data"]
    assert modal["title"] == "Reestilizar imagen"
    labels = [(c["label"], c.get("description")) for c in modal["components"]]
    assert labels == [
        ("Descripción: el nuevo estilo", "Cómo debe quedar la imagen, p. ej. rainy night with neon signs"),
        ("Intensidad (0.05 a 1.0)", "0.25 sutil · 0.5 clara · 0.8 fuerte · sweep: prueba 0.3, 0.5 y 0.7; vacío: la predeterminada"),
    ]
    submit = await h.fake.modal_submit(modal_call, {"prompt": "watercolor", "strength": "0.5"})
    await h.result_of(submit)
    [job] = await h.jobs()
    assert (job.prompt, job.strength, job.reply["lang"]) == ("watercolor", 0.5, "es-ES")


def test_a_message_is_answered_in_the_members_latest_language_else_the_servers_else_english():
    import discord

    from bot.adapters.discord.locales import RecentLocales

    def message(user_id: int, guild_locale: str | None):
        guild = SimpleNamespace(preferred_locale=discord.Locale(guild_locale)) if guild_locale else None
        return SimpleNamespace(author=SimpleNamespace(id=user_id), guild=guild)

    locales = RecentLocales(limit=2)
    assert locales.of(message(1, None)) is None  # a DM from a member never seen: English
    assert locales.of(message(1, "ru")) == "ru"  # a Community server's language
    locales.saw(1, "es-ES")
    assert locales.of(message(1, "ru")) == "es-ES"  # the member's own, once known
    locales.saw(2, "ru")
    locales.saw(1, "es-419")  # seen again: now the latest
    locales.saw(3, "ru")  # past the limit the one seen longest ago (2) is forgotten
    assert locales.of(message(1, None)) == "es-419" and locales.of(message(2, None)) is None
