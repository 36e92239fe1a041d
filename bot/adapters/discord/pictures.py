"""A request's picture in: found in a message (or the one it replies to), checked against the
download limit, and fetched from Discord's CDN while its signed link still works."""

from __future__ import annotations

import logging

import aiohttp
import discord

from bot.adapters.discord.parsing import _on_discord, _Picture, _pictures_in, _Unusable
from bot.adapters.discord.texts import EXAMPLE
from bot.i18n import Text

log = logging.getLogger("bot.discord")


def too_big(size: int, limit: int) -> Text:
    return Text("That picture is {size:.1f} MB; the limit is {limit:g} MB. Send a smaller one, for example a "
                "screenshot of it:\n`{example}`",
                {"size": size / 1_000_000, "limit": limit / 1_000_000, "example": EXAMPLE})  # fmt: skip


async def pictures_for(message: discord.Message) -> list[_Picture]:
    """The pictures of an @mention: its own, else those of the message it replies to (fetched
    where Discord did not resolve it: an older message, or the cache missing it)."""
    pictures = _pictures_in(message)
    if not pictures and message.reference and message.reference.message_id:
        source = message.reference.resolved
        if not isinstance(source, discord.Message):
            try:
                source = await message.channel.fetch_message(message.reference.message_id)
            except discord.HTTPException:
                source = None
        if source is not None:
            pictures = _pictures_in(source)
    return pictures


async def download_picture(
    session: aiohttp.ClientSession, picture: _Picture, limit: int, api_base: str | None, proxy: str | None
) -> bytes:
    """The picture's bytes, at most `limit`; raises _Unusable with what went wrong, in plain words."""
    try:
        if not _on_discord(picture.url, api_base):
            raise _Unusable(
                Text("I only take pictures from Discord itself: attach the picture, or use one posted on Discord.")
            )
        async with session.get(picture.url, proxy=proxy) as response:
            if response.status != 200:
                raise _Unusable(Text("I could not download the picture (HTTP {status}); the link may have expired."
                                     " Please send it again.", {"status": response.status}))  # fmt: skip
            ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype and not ctype.startswith("image/") and ctype != "application/octet-stream":
                raise _Unusable(Text("That link is not a picture ({type}). Attach a PNG, JPEG, WebP or GIF, for "
                                     "example:\n`{example}`", {"type": ctype, "example": EXAMPLE}))  # fmt: skip
            data = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                data.extend(chunk)
                if len(data) > limit:
                    raise _Unusable(Text("That picture is over the {limit:g} MB limit. Send a smaller one.",
                                         {"limit": limit / 1_000_000}))  # fmt: skip
            return bytes(data)
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.warning("download of %s failed: %r", picture.filename, exc)
        raise _Unusable(Text("I could not download the picture in time. Please try again.")) from None
