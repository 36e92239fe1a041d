"""A request's picture in: fetched through getFile, within the bot's download limit (the cloud
Bot API gives a bot files of up to 20 MB; a local Bot API server allows more). A picture out:
made one Telegram takes as a photo."""

from __future__ import annotations

import io
import logging
from typing import Any

from telegram.error import BadRequest, TelegramError

from bot.adapters.telegram.connection import short_error
from bot.adapters.telegram.parsing import _Picture
from bot.commands import EXAMPLE
from bot.i18n import Translator

log = logging.getLogger("bot.telegram")

PHOTO_MAX_SIDES = 10_000  # width + height of an uploaded photo
PHOTO_MAX_RATIO = 20  # Bot API, sendPhoto: "Width and height ratio must be at most 20"


def too_big(size: int | None, limit: int, tr: Translator) -> str:
    """`size`: the picture's bytes where Telegram said them."""
    megabytes = f"{limit / 1_000_000:g}"
    if size:
        template = tr.gettext(
            "That picture is {size:.1f} MB; I can download up to {limit} MB. Send it as a photo (Telegram "
            "makes photos smaller) or a smaller file, then reply to it with /restyle. For example:\n{example}"
        )
    else:
        template = tr.gettext(
            "That picture is too big; I can download up to {limit} MB. Send it as a photo (Telegram "
            "makes photos smaller) or a smaller file, then reply to it with /restyle. For example:\n{example}"
        )
    return template.format(size=(size or 0) / 1_000_000, limit=megabytes, example=EXAMPLE)


async def fetch_picture(bot: Any, picture: _Picture, limit: int, tr: Translator) -> bytes | str:
    """The picture's bytes, or what went wrong in plain words. getFile's answer says the size
    again: a photo's size is not always in the message."""
    try:
        tg_file = await bot.get_file(picture.file_id)
        if tg_file.file_size and tg_file.file_size > limit:
            return too_big(tg_file.file_size, limit, tr)
        return bytes(await tg_file.download_as_bytearray())
    except BadRequest as exc:
        if "too big" in str(exc).lower():
            return too_big(picture.size, limit, tr)
        return tr.gettext("Telegram would not give me that picture; send it again.")
    except TelegramError as exc:
        log.warning("download failed: %s", short_error(exc))
        return tr.gettext("I could not download that picture from Telegram; try again in a minute.")


def photo_payload(data: bytes, limit: int) -> bytes:
    """The picture as Telegram will take it as a photo: JPEG (Telegram turns every photo into
    one anyway; the lossless PNG is one button away) under `limit` bytes, within its sides (a
    sweep's three wide pictures side by side get a margin to a ratio it takes)."""
    from PIL import Image

    from engine.pictures import LIGHT_GREY, encode_picture

    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        picture = img.convert("RGB")
    if max(width, height) > PHOTO_MAX_RATIO * min(width, height):
        # Rounded up, one short of the limit: the shrinking below rounds each side down.
        short = -(-max(width, height) // (PHOTO_MAX_RATIO - 1))
        padded = Image.new("RGB", (width, short) if width > height else (short, height), LIGHT_GREY)
        padded.paste(picture, (0, (short - height) // 2) if width > height else ((short - width) // 2, 0))
        picture, (width, height) = padded, padded.size
    if width + height > PHOTO_MAX_SIDES:
        scale = (PHOTO_MAX_SIDES - 8) / (width + height)
        picture = picture.resize((max(1, int(width * scale)), max(1, int(height * scale))), Image.Resampling.LANCZOS)
    return encode_picture(picture, "jpeg", limit)
