"""Telegram front end (python-telegram-bot 22), one module per concern.

adapter.py     TelegramAdapter: the surface (commands, buttons, status edits, delivery) and its
               connection (polling or webhook, leased listening).
texts.py       what it says: fixed answers, status and result texts, TELEGRAM_STYLE.
buttons.py     the inline keyboards and their callback data.
parsing.py     an update read for what we need: request or not, who posted, the picture.
connection.py  the rate limiter, token redaction in logs, the webhook checks.
upgrades.py    the payments and entitlements sub-router (Stars, codes, /link, /grant...); it
               never imports the adapter, which installs its handlers.

Importers name the module they need (bot.adapters.telegram.adapter...); TelegramAdapter is
re-exported here as the package's entry point.
"""

from bot.adapters.telegram.adapter import TelegramAdapter

__all__ = ["TelegramAdapter"]
