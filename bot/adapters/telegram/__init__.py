"""Telegram front end (python-telegram-bot 22), one module per concern.

adapter.py     TelegramAdapter: builds the Application, the command and button handlers, and the
               service's FrontEnd (job_updated, deliver_*), delegating to the modules below.
updates.py     how updates arrive: connecting and retrying, the command list, long polling,
               polling under the listener lease, the webhook, the inbox of leased updates.
webhook.py     the webhook's own small HTTP endpoint (the secret token checked).
statuses.py    each job's status message: opening it, the edit budget, editing and ending it.
delivery.py    sending a job's outcome (album, buttons, file, failure, sweep), Telegram's errors
               turned into retry or refused for good, the steps recorded in the job's reply.
surfaces.py    a command's chat, a restyle request, a pressed button, as bot/chat/ flows see them.
moved_chats.py groups that became supergroups (new chat ids).
texts.py       what it says: fixed answers, status and result texts, TELEGRAM_STYLE.
buttons.py     the inline keyboards and their callback data.
parsing.py     an update read for what we need: request or not, who posted, the picture.
connection.py  the rate limiter, token redaction in logs, the webhook checks.
pictures.py    downloading a member's picture and encoding one as a Telegram photo.
replies.py     answering a member's message; a call whose failure is only logged.
sweep.py       a strength sweep's one answer.
upgrades.py    the payments and entitlements sub-router (Stars, codes, /link, /grant...); it
               never imports the adapter, which installs its handlers.

Importers name the module they need (bot.adapters.telegram.adapter...); TelegramAdapter is
re-exported here as the package's entry point.
"""

from bot.adapters.telegram.adapter import TelegramAdapter

__all__ = ["TelegramAdapter"]
