"""Logging that never shows a bot token: httpx logs request URLs, and Telegram's URLs carry it."""

from __future__ import annotations

import logging
import re

# Telegram tokens look like 123456789:AAE...; Discord tokens are three dot-separated base64 parts.
_TOKEN_PATTERNS = [
    re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}\b"),
    re.compile(r"\b[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{20,}\b"),
]


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<token>")
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
        return True


def hide_secrets(secrets: tuple[str, ...] = ()) -> None:
    """Install the filter on every handler of the root logger (call after logging is set up)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(secrets))
    # httpx logs every request line at INFO, URL (and token) included; keep those at WARNING.
    logging.getLogger("httpx").setLevel(logging.WARNING)
