"""Logging that never shows a bot token: httpx logs request URLs, and Telegram's URLs carry it."""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

# Telegram tokens look like 123456789:AAE...; Discord tokens are three dot-separated base64 parts.
_TOKEN_PATTERNS = [
    # No \b before the digits: in ".../bot123456:AAE..." there is no word boundary.
    re.compile(r"(?<![0-9])\d{5,}(?::|%3A)[A-Za-z0-9_-]{30,}"),
    re.compile(r"\b[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{20,}\b"),
]


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret:
            # URLs carry it percent-encoded too (Telegram's file URLs: 123%3AABC...).
            text = text.replace(secret, "<token>").replace(quote(secret, safe=""), "<token>")
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub("<token>", text)
    return text


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        # Tracebacks are formatted later by the handler; format and clean them here.
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True


def hide_secrets(secrets: tuple[str, ...] = ()) -> None:
    """Install the filter on every handler of the root logger (call after logging is set up);
    calling it again replaces the filter, with the secrets known by then."""
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(RedactingFilter(secrets))
    # httpx logs every request line at INFO, URL (and token) included; keep those at WARNING.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Pillow logs every EXIF tag and PNG chunk it reads at DEBUG: a crafted upload is hundreds of
    # lines. What matters about a picture is logged by engine.pictures.
    logging.getLogger("PIL").setLevel(logging.INFO)
