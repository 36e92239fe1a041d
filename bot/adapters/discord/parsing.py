"""From a Discord event to what a request needs: the pictures in a message (and whether their
links may be fetched), whether a message addresses the bot, and a command from slash options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import discord
import yarl

from bot.adapters.discord.texts import EXAMPLE, PLATFORM
from bot.commands import MAX_PROMPT_CHARS, MAX_STRENGTH, MIN_STRENGTH, SWEEP_STRENGTHS, RestyleCommand
from bot.i18n import Text, Translator
from bot.moderation import Place

STRENGTH_WORDS = {"subtle": 0.25, "low": 0.25, "clear": 0.5, "medium": 0.5, "heavy": 0.8, "high": 0.8}
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


class _Unusable(Exception):
    """A request we refuse before it reaches the service; `said(tr)` is for the member, in their
    language (`text` holds the English msgid and its values)."""

    def __init__(self, text: Text) -> None:
        super().__init__(text.render())
        self.text = text

    def said(self, tr: Translator) -> str:
        return self.text.render(tr)


@dataclass(frozen=True)
class _Picture:
    url: str
    filename: str
    size: int | None  # bytes, when Discord told us
    content_type: str | None


DISCORD_MEDIA_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})  # attachments and the media proxy


def _on_discord(url: str, api_base: str | None) -> bool:
    """Whether a picture's link is on Discord's CDN (or where [discord] api_base points: a test's
    fake, a self-hosted proxy). An embed's own URL can name any host; downloading from there
    would let a message make the bot fetch arbitrary addresses."""
    host = (yarl.URL(url).host or "").lower()
    return host in DISCORD_MEDIA_HOSTS or (api_base is not None and host == (yarl.URL(api_base).host or "").lower())


def _command_from_options(
    prompt: str,
    strength: float | None,
    seed: int | None,
    steps: int | None,
    style: str | None = None,
    *,
    sweep: bool = False,
) -> RestyleCommand:
    """`sweep`: the boolean option (the strength option is a number, so it cannot say "sweep")."""
    prompt = " ".join(prompt.split())
    style = style.strip().lower() if style and style.strip() else None
    if not prompt and style is None:
        raise _Unusable(
            Text(
                "Please describe the new style (or pick one in `style`), for example:\n`{example}`",
                {"example": EXAMPLE},
            )
        )
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _Unusable(
            Text(
                "Your prompt is {length} characters long; the limit is {limit}. Please shorten it.",
                {"length": len(prompt), "limit": MAX_PROMPT_CHARS},
            )
        )
    if strength is not None and not MIN_STRENGTH <= strength <= MAX_STRENGTH:
        raise _Unusable(
            Text(
                "strength must be a number from {low} to {high}, for example:\n`{example}`",
                {"low": MIN_STRENGTH, "high": MAX_STRENGTH, "example": EXAMPLE},
            )
        )
    if sweep and strength is not None:
        raise _Unusable(
            Text(
                "Pick either a strength or sweep, not both: a sweep tries {strengths} by itself.",
                {"strengths": ", ".join(f"{s:g}" for s in SWEEP_STRENGTHS)},
            )
        )
    return RestyleCommand(prompt=prompt, strength=None if strength is None else round(float(strength), 3), seed=seed,
                          steps=steps, style=style, sweep=sweep)  # fmt: skip


def _not_a_picture(picture: _Picture) -> Text | None:
    """What is wrong with a picture from what Discord declared of it (before any download)."""
    ctype = (picture.content_type or "").split(";")[0].strip().lower()
    named = {"name": picture.filename, "type": ctype, "example": EXAMPLE}
    if ctype and not ctype.startswith("image/"):
        return Text("**{name}** is not a picture ({type}). Attach a PNG, JPEG, WebP or GIF, for example:"
                    "\n`{example}`", named)  # fmt: skip
    if not ctype and not picture.filename.lower().endswith(PICTURE_SUFFIXES) and picture.size is not None:
        return Text("**{name}** does not look like a picture. Attach a PNG, JPEG, WebP or GIF, for "
                    "example:\n`{example}`", named)  # fmt: skip
    return None


def _addresses_bot(message: discord.Message, bot_id: int) -> bool:
    """Only a mention written in the text is a request: `message.mentions` also holds the
    replied-to author when a reply keeps its ping (the default), so "thanks!" under a result
    would otherwise start a paid job. The bot's managed role counts too (a role mention in the
    text is how members pick it from the @ menu in some servers)."""
    if re.search(rf"<@!?{bot_id}>", message.content):  # what raw_mentions reads, for any id length
        return True
    role = message.guild.self_role if message.guild is not None else None
    return role is not None and role.id in message.raw_role_mentions


def _pictures_in(message: discord.Message) -> list[_Picture]:
    found = []
    for attachment in message.attachments:
        ctype = attachment.content_type or ""
        if ctype.startswith("image/") or (not ctype and attachment.filename.lower().endswith(PICTURE_SUFFIXES)):
            found.append(_Picture(attachment.url, attachment.filename, attachment.size, attachment.content_type))
    for embed in message.embeds:
        for media in (embed.image, embed.thumbnail):
            url = media.proxy_url or media.url  # proxy_url: Discord's copy on media.discordapp.net
            if url:
                found.append(_Picture(url, url.rsplit("/", 1)[-1].split("?")[0] or "picture", None, None))
                break
    return found


def _place(interaction: discord.Interaction) -> Place:
    guild_id = interaction.guild_id
    return Place(PLATFORM, chat_id=interaction.channel_id, guild_id=guild_id, private=guild_id is None,
                 parent_id=getattr(interaction.channel, "parent_id", None))  # fmt: skip


def _int(value: Any) -> int | None:
    return int(value) if value else None
