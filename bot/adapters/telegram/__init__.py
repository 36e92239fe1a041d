"""Telegram front end (python-telegram-bot 22), one module per concern.

adapter.py   TelegramAdapter: the surface (commands, buttons, status edits, delivery) and its
             connection (polling or webhook, leased listening).
upgrades.py  the payments and entitlements sub-router (Stars, codes, /link, /grant...); it never
             imports the adapter, which installs its handlers.

Importers name the module they need (bot.adapters.telegram.adapter...); TelegramAdapter is
re-exported here as the package's entry point.
"""

from bot.adapters.telegram.adapter import TelegramAdapter

__all__ = ["TelegramAdapter"]
