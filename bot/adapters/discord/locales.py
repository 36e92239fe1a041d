"""The language of a member who writes to the bot in a message (an @mention request).

A message carries no language: only an interaction has the member's `locale` (discord-api-docs,
Interaction Object: "locale: Selected language of the invoking user"; the Message Object has
none). So a message is answered in the language of the member's latest command, button or form
this process saw, else in the server's `preferred_locale` (a Community server sets it; Guild
Object), else in English.
"""

from __future__ import annotations

import discord

REMEMBERED = 10_000  # members whose language is kept; beyond it the one seen longest ago is forgotten


class RecentLocales:
    def __init__(self, limit: int = REMEMBERED) -> None:
        self.limit = limit
        self._locales: dict[int, str] = {}

    def saw(self, user_id: int, locale: str) -> None:
        """The member's language, from one of their interactions."""
        self._locales.pop(user_id, None)  # moved to the end: the latest seen is forgotten last
        if len(self._locales) >= self.limit:
            self._locales.pop(next(iter(self._locales)))
        self._locales[user_id] = locale

    def of(self, message: discord.Message) -> str | None:
        """The language to answer `message` in (a Discord locale such as es-ES); None: English."""
        known = self._locales.get(message.author.id)
        if known is not None:
            return known
        guild = message.guild
        return guild.preferred_locale.value if guild is not None else None
