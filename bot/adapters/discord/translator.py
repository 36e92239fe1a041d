"""The slash commands' descriptions in the member's Discord language: discord.py asks a
Translator for every locale when the commands are synced (CommandTree.set_translator; the
payload carries `description_localizations` and each option's and choice's)."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.i18n import ENGLISH, language, translator

# Names stay English everywhere: members, /help, the README and shared recipes all say
# /restyle strength:0.5, and a localised name would make one command two (Discord matches a
# typed command by its local name).
_NAMES = {
    app_commands.TranslationContextLocation.command_name,
    app_commands.TranslationContextLocation.group_name,
    app_commands.TranslationContextLocation.parameter_name,
}


def described(template: str, **params: Any) -> app_commands.locale_str:
    """A description with values in it: the English text Discord shows by default, and the msgid
    (`template`, marked with N_ by the caller) the translator says in each language."""
    return app_commands.locale_str(template.format(**params), template=template, params=params)


class CatalogueTranslator(app_commands.Translator):
    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: app_commands.TranslationContextTypes
    ) -> str | None:
        if context.location in _NAMES:
            return None
        lang = language(locale.value)
        if lang == ENGLISH:
            return None  # the default text is English already
        template = string.extras.get("template", string.message)
        translated = translator(lang).gettext(template)
        if translated == template:
            return None  # not translated: Discord shows the default (English)
        return translated.format(**string.extras.get("params", {}))
