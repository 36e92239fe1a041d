"""What the bot will not make, and where it works. Pure functions over config values."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bot.config import AccessSettings, ModerationSettings
from bot.i18n import N_

# English msgids: the core says them in the member's language (bot/i18n.py).
REFUSED_BY_RULES = N_("That request was refused by this server's rules. Try a different prompt.")
NOT_HERE = N_("I'm not enabled in this chat. Ask an admin of this server, or use me where I'm enabled.")
NO_DMS = N_("I don't take requests in private messages here; use me in the server or group instead.")
BANNED = N_("You can't use this bot here. If you think this is a mistake, ask an admin.")


def fold(text: str) -> str:
    """Lower case without accents, so "Café" and "CAFE" compare equal."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@dataclass(frozen=True)
class Blocklist:
    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def from_settings(cls, settings: ModerationSettings) -> Blocklist:
        compiled = [
            # Whole words: a blocked "cat" must not refuse "category" or "concatenate".
            re.compile(r"(?<!\w)" + r"\s+".join(re.escape(part) for part in fold(word).split()) + r"(?!\w)")
            for word in settings.blocked_words
        ]
        compiled += [re.compile(fold(pattern)) for pattern in settings.blocked_patterns]
        return cls(tuple(compiled))

    def blocks(self, *texts: str | None) -> bool:
        folded = [fold(text) for text in texts if text]
        return any(pattern.search(text) for pattern in self.patterns for text in folded)


@dataclass(frozen=True)
class Place:
    """Where a request came from, as far as the allow-lists care."""

    platform: str
    chat_id: int | None = None  # Telegram chat, or Discord channel
    guild_id: int | None = None  # Discord server
    private: bool = False  # a Telegram private chat or a Discord DM
    parent_id: int | None = None  # a Discord thread or forum post: the channel it is in


def place_refusal(access: AccessSettings, place: Place) -> str | None:
    """None where the bot works; otherwise the sentence to say (once) where it does not."""
    if place.private:
        return None if access.direct_messages else NO_DMS
    if place.platform == "telegram" and access.telegram_chats and place.chat_id not in access.telegram_chats:
        return NOT_HERE
    if place.platform == "discord":
        if access.discord_guilds and place.guild_id not in access.discord_guilds:
            return NOT_HERE
        if access.discord_channels and not {place.chat_id, place.parent_id} & set(access.discord_channels):
            return NOT_HERE  # a thread (or forum post) is allowed where its channel is
    return None
