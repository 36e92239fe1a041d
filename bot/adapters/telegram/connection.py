"""Telegram's own connection rules: the rate limiter that lets answers and cosmetic edits past a
429, token redaction in logs, and the cloud Bot API's webhook checks."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from telegram.ext import AIORateLimiter

from bot.logs import RedactingFilter

# Answers Telegram waits for: a pre-checkout query not answered in 10 s cancels the payment, and
# an unanswered button keeps spinning. They never queue behind the limiter (see _Limiter).
ANSWER_ENDPOINTS = frozenset({"answerPreCheckoutQuery", "answerCallbackQuery"})


# Status edits are cosmetic: tried once, never retried (the status throttle honours retry_after).
COSMETIC_ENDPOINTS = frozenset({"editMessageText", "editMessageReplyMarkup", "deleteMessage"})


class _Limiter(AIORateLimiter):
    """AIORateLimiter, except that a 429 cannot hold up a payment or a button.

    PTB's AIORateLimiter halts *all* requests for retry_after + 0.1 s after one RetryAfter
    (telegram/ext/_aioratelimiter.py, process_request), and `rate_limit_args=0` cannot turn its
    retries off (`rate_limit_args or self._max_retries`)."""

    async def process_request(
        self,
        callback: Callable[..., Any],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        if endpoint in ANSWER_ENDPOINTS:
            return await callback(*args, **kwargs)
        if endpoint in COSMETIC_ENDPOINTS:
            chat_id = data.get("chat_id")
            try:
                group: int | str | bool = int(chat_id) if int(chat_id) < 0 else False  # type: ignore[arg-type]  # None: TypeError, below
            except (TypeError, ValueError):
                group = chat_id if isinstance(chat_id, str) else False
            # One try inside the per-group and overall budgets; a RetryAfter goes to the caller
            # without halting everyone else. (_run_request: PTB 22's private helper.)
            return await self._run_request(
                chat=chat_id is not None, group=group, allow_paid_broadcast=False,
                callback=callback, args=args, kwargs=kwargs,
            )  # fmt: skip
        return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)


class _TokenFilter(RedactingFilter):
    """bot.logs' filter, plus tracebacks: exception text can carry a URL too."""

    def filter(self, record: logging.LogRecord) -> bool:
        super().filter(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _redact(record.exc_text, self.secrets)
        return True


class LogRedaction:
    """The bot token kept out of the logs of the libraries that see it (telegram, httpx,
    httpcore, ours): one filter on each of their loggers while the adapter runs."""

    def __init__(self, token: str) -> None:
        # The file download URL carries the token with its colon escaped (%3A): hide that form
        # and the secret half on its own too.
        self._log_filter = _TokenFilter(_token_forms(token))
        self._filtered_loggers: list[logging.Logger] = []

    def install(self) -> None:
        # Logger filters see every record those libraries create, whatever handlers the host
        # set up; bot.logs.hide_secrets covers the handlers of `python -m bot` as well.
        names = [
            n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in ("telegram", "httpx", "httpcore")
        ]
        for name in ["telegram", "httpx", "httpcore", *names, "bot.telegram"]:
            logger = logging.getLogger(name)
            if self._log_filter not in logger.filters:
                logger.addFilter(self._log_filter)
                self._filtered_loggers.append(logger)

    def remove(self) -> None:
        for logger in self._filtered_loggers:
            logger.removeFilter(self._log_filter)
        self._filtered_loggers.clear()


def _token_forms(token: str) -> tuple[str, ...]:
    from urllib.parse import quote

    forms = [token, quote(token, safe="")]
    _, _, secret = token.partition(":")
    if len(secret) >= 16:
        forms.append(secret)
    return tuple(dict.fromkeys(forms))


WEBHOOK_PORTS = (443, 80, 88, 8443)  # Bot API, setWebhook: the only ports Telegram sends to


CLOUD_API_HOST = "api.telegram.org"


def webhook_problem(webhook_url: str | None, base_url: str | None) -> str | None:
    """Why Telegram's cloud Bot API would refuse this webhook URL (one sentence), or None. A
    self-hosted Bot API server (base_url elsewhere) takes http and any port."""
    if not webhook_url:
        return None
    if base_url and (urlsplit(base_url).hostname or "").lower() != CLOUD_API_HOST:
        return None
    url = urlsplit(webhook_url)
    if url.scheme != "https":
        return f"[telegram] webhook_url must start with https:// (Telegram sends updates only over HTTPS), not {webhook_url}."
    try:
        port = url.port or 443
    except ValueError:
        return f"[telegram] webhook_url {webhook_url} has no valid port."
    if port not in WEBHOOK_PORTS:
        return f"[telegram] webhook_url uses port {port}; Telegram sends webhooks only to ports 443, 80, 88 or 8443."
    return None


def webhook_secret(token: str) -> str:
    """The webhook's secret header. Derived from the bot token, so restarts and every front end
    agree."""
    return hashlib.sha256(("restyle-webhook:" + token).encode()).hexdigest()[:48]


def webhook_secret_matches(given: str | None, secret: str) -> bool:
    """The webhook's secret header, compared in constant time (as bytes: compare_digest refuses
    non-ASCII str, and a header may carry any byte)."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), secret.encode())


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    from bot.logs import redact

    return redact(text, secrets)


def short_error(exc: BaseException | None) -> str:
    """An error as a log line names it: its type and its first words (Telegram's own reason)."""
    if exc is None:
        return "unknown error"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
