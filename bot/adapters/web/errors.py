"""How the web API says no: {"error": "<text for the member>"} with an HTTP status, in the
language the browser asks for (Accept-Language). Shared by the adapter's rooms."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.i18n import N_, Translator, language, translator

# The HTTP status for each of the service's refusal reasons (Refused.reason).
REFUSAL_STATUS = {
    "command": 400,
    "picture": 400,
    "steps": 400,
    "quota": 429,
    "queue_limit": 429,
    "flood": 429,
    "storage": 503,
    "not_found": 404,
    "not_yours": 403,
    "rules": 400,
    "banned": 403,
    "place": 403,
    "not_admin": 403,
    "sweep": 403,
}
NOT_HERE = N_("There is nothing here.")
WRONG_METHOD = N_("That method is not allowed here.")
OUR_FAULT = N_("Something went wrong on the bot's side; try again in a moment.")


class ApiError(Exception):
    """Answered as {"error": text} with this HTTP status (text: a msgid, said in the browser's
    language by the adapter's error middleware)."""

    def __init__(self, status: int, text: str, *, close: bool = False) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.close = close  # hang up after the answer (the body was not read to its end)


def json_error(status: int, text: str, **extra: Any) -> web.Response:
    return web.json_response({"error": text, **extra}, status=status)


def request_translator(request: web.Request) -> Translator:
    return translator(language(request.headers.get("Accept-Language")))


def said(request: web.Request, text: str) -> str:
    """One of the page's own texts (a msgid) in the language the browser asks for."""
    return request_translator(request).gettext(text)
