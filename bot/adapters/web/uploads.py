"""Reading what the page sends: a request's body within its time limit (a client that trickles
bytes to hold a connection open is dropped), the picture within the size limit, and the form's
fields as a restyle command (command_from_form: the same grammar and words as in chat)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from bot.adapters.web.errors import ApiError
from bot.commands import RestyleCommand, check_command_length, parse_restyle
from bot.i18n import N_, Translator

log = logging.getLogger("bot.web")

# Room for the form's text fields and multipart framing above the picture itself.
FORM_SLACK_BYTES = 64 * 1024
NO_PICTURE = N_("Pick or drop a picture first.")
NOT_MULTIPART = N_("Send the picture as multipart/form-data, with the file in a field named picture.")
SLOW_UPLOAD = N_(
    "The upload took too long, so it was dropped; try again on a faster connection or with a smaller picture."
)
BROKEN_UPLOAD = N_("The upload arrived cut short or garbled; pick the picture again and press Run.")


def too_big_message(size_bytes: int | None, limit_mb: float, tr: Translator) -> str:
    # (The page says the first one too, before uploading: the same words, page_texts.py.)
    if size_bytes:
        return tr.gettext("That picture is {size} MB; the most the bot takes is {mb} MB.").format(
            size=f"{size_bytes / 1_000_000:.1f}", mb=f"{limit_mb:g}"
        )
    return tr.gettext("That picture is too big; the most the bot takes is {mb} MB.").format(mb=f"{limit_mb:g}")


def is_form(request: web.Request) -> bool:
    """Whether the body is a form (the picture comes as multipart/form-data)."""
    return request.content_type.startswith("multipart/") or request.content_type == "application/x-www-form-urlencoded"


async def read_body(request: web.Request, read: Callable[[], Awaitable[Any]], timeout_s: float) -> Any:
    """`read()` the request's body within timeout_s. A body that is too slow, cut short or
    garbled is answered with one sentence (ApiError); an upload the client gave up on is one
    INFO line (there is nobody left to answer)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await read()
    except TimeoutError:
        log.info("web request %s %s dropped: its body took over %g s", request.method, request.path, timeout_s)
        raise ApiError(408, SLOW_UPLOAD, close=True) from None
    except ConnectionResetError:
        log.info("web request %s %s: the client went away during the upload", request.method, request.path)
        raise ApiError(400, BROKEN_UPLOAD, close=True) from None
    except (ValueError, AssertionError, LookupError) as exc:
        # aiohttp's multipart reader: "Reading after EOF", a missing boundary, a bad header.
        log.info("web request %s %s: unreadable body (%s)", request.method, request.path, exc)
        raise ApiError(400, BROKEN_UPLOAD, close=True) from None


def picture_of(form: Any) -> bytes:
    """The picture field's bytes (empty when the form has no file in it)."""
    picture = form.get("picture")
    if not isinstance(picture, web.FileField):
        return b""
    try:
        return picture.file.read()
    finally:
        picture.file.close()


def command_from_form(fields: dict[str, str]) -> RestyleCommand:
    """The prompt box goes through the chat grammar, so it may carry options too (a typed
    strength=0.8 wins over the slider); the form's own fields are checked with the same words."""
    for key in ("prompt", "strength", "seed", "steps", "no", "style"):
        check_command_length(str(fields.get(key, "")))  # each as typed, before any pattern sees it
    prompt, style = str(fields.get("prompt", "")), " ".join(str(fields.get("style", "")).split())
    # The style list's pick reads as style= in the prompt (one given in both is refused as twice).
    text = f"{prompt} style={style}" if style else prompt
    command = parse_restyle(text)
    if str(fields.get("sweep", "")).strip().lower() in ("1", "on", "true") and not command.sweep:
        # The "Try 3 strengths" box reads as strength=sweep (a strength also typed is refused as twice).
        command = parse_restyle(f"{text} strength=sweep")
    options: dict[str, Any] = {}
    for key, field in (("strength", "strength"), ("seed", "seed"), ("steps", "steps"), ("no", "negative_prompt")):
        raw = " ".join(str(fields.get(key, "")).split())
        if not raw or getattr(command, field) is not None or (key == "strength" and command.sweep):
            continue  # (a sweep tries its own strengths: the slider's is not one of them)
        if key == "no":
            raw = "“" + raw.replace("”", "'") + "”"
        options[field] = getattr(parse_restyle(f"x {key}={raw}"), field)
    return replace(command, **options)
