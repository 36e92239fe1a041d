"""Telegram's webhook endpoint: our own small aiohttp server (no tornado needed). Telegram proves
each post with the secret token header (Bot API, setWebhook secret_token); what to do with an
update that passes is the caller's (bot/adapters/telegram/updates.py), which answers the status
Telegram gets back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from telegram import Bot, Update

from bot.adapters import AdapterStartError
from bot.adapters.telegram.connection import webhook_secret, webhook_secret_matches
from bot.config import TelegramSettings


async def serve_webhook(
    settings: TelegramSettings, token: str, bot: Bot, take: Callable[[Update], Awaitable[int]]
) -> Any:
    """Listen on [telegram] webhook_listen:webhook_port at the webhook URL's path; returns the
    aiohttp runner (cleanup() closes it). A port that cannot be had raises AdapterStartError."""
    from aiohttp import web

    assert settings.webhook_url
    secret = webhook_secret(token)
    path = urlsplit(settings.webhook_url).path or "/"

    async def receive(request: web.Request) -> web.Response:
        if not webhook_secret_matches(request.headers.get("X-Telegram-Bot-Api-Secret-Token"), secret):
            return web.Response(status=403)
        try:
            data = await request.json()
            update = Update.de_json(data, bot)
        except Exception:
            return web.Response(status=400)
        return web.Response(status=await take(update))

    server = web.Application()
    server.router.add_post(path, receive)
    runner = web.AppRunner(server, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.webhook_listen, settings.webhook_port).start()
    except OSError as exc:
        await runner.cleanup()
        raise AdapterStartError(
            f"The Telegram webhook cannot listen on {settings.webhook_listen}:{settings.webhook_port} "
            f"({exc.strerror or exc}); change [telegram] webhook_listen / webhook_port."
        ) from None
    return runner
