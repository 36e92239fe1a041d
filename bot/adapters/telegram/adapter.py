"""Telegram front end (python-telegram-bot 22).

Members reply to a picture with `/restyle <prompt> [options]` (or put the command in a photo's
caption). The adapter downloads the picture, hands it to the service, answers at once with a
status message that it edits as the job moves, and delivers the result as an album (original +
result) followed by one message of buttons: Again, Subtler, Stronger and the file as PNG / WebP /
JPEG.

A strength sweep (`strength=sweep`, or "Try 3 strengths" under a result) has one status message
for its three jobs and is answered with one photo of the results side by side, with a "Keep"
button per strength and one for the files (bot/adapters/telegram/sweep.py).

Everything the adapter needs to answer later (chat, message to reply to, status message, the
original picture's file_id) lives in the job's `reply` dict, which the service keeps in SQLite:
a restart loses nothing. Delivery steps already done (album, buttons) are recorded there too, so
a retried delivery does not send the album twice.

This module builds the Application, holds the command and button handlers, and is the service's
FrontEnd; the rest has a module of its own: how updates arrive (updates.py), status messages
(statuses.py), delivery (delivery.py), what the bot/chat/ flows answer through (surfaces.py).
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Message, Update, User
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import BaseRequest

from bot.adapters.telegram.buttons import BUTTON_DATA, recipe_buttons
from bot.adapters.telegram.connection import LogRedaction, _Limiter, short_error
from bot.adapters.telegram.delivery import ReplyRecords, TelegramDelivery
from bot.adapters.telegram.moved_chats import MovedChats
from bot.adapters.telegram.parsing import CAPTION_COMMAND, _is_request, _posted_as_chat, _replied
from bot.adapters.telegram.replies import answer, quietly
from bot.adapters.telegram.statuses import TelegramStatuses
from bot.adapters.telegram.surfaces import ChatParts, CommandChat, PressChat, RestyleChat
from bot.adapters.telegram.texts import BAN_USAGE, DONE, POST_AS_YOURSELF, START_TEXT, addressed_commands, with_example
from bot.adapters.telegram.texts import FAILED as FAILED_TEXT
from bot.adapters.telegram.updates import RECONNECT_DELAYS_S, TelegramUpdates
from bot.adapters.telegram.upgrades import TelegramUpgrades
from bot.chat import account, texts
from bot.chat import admin as admin_commands
from bot.chat.presses import Press, handle_press
from bot.chat.restyle import RestyleRequest, handle_restyle
from bot.chat.statuses import status_key
from bot.clock import Clock, MonotonicClock
from bot.commands import MAX_PLATFORM_ID, usage, whole_number
from bot.config import Config
from bot.core.types import Delivery, JobView, Member, Refused, SweepDelivery
from bot.i18n import Translator, translator
from bot.listener import Listeners
from bot.moderation import Place, place_refusal
from bot.service import RestyleService

log = logging.getLogger("bot.telegram")

PHOTO_LIMIT_BYTES = 10_000_000  # Telegram's photo upload limit
EDIT_INTERVAL_S = 3.0  # one status edit per message per this many seconds (private chats)
GROUP_EDIT_INTERVAL_S = 10.0  # groups share 20 messages a minute across the whole chat
MEDIA_READ_TIMEOUT_S = 60.0  # Telegram answers an album only once it has processed every picture


class TelegramAdapter:
    platform = "telegram"

    def __init__(
        self,
        config: Config,
        service: RestyleService,
        *,
        request: BaseRequest | None = None,
        get_updates_request: BaseRequest | None = None,
        edit_interval_s: float = EDIT_INTERVAL_S,
        group_edit_interval_s: float = GROUP_EDIT_INTERVAL_S,
        photo_limit_bytes: int = PHOTO_LIMIT_BYTES,
        poll_timeout_s: float = 10.0,
        reconnect_delays_s: tuple[float, ...] = RECONNECT_DELAYS_S,
        ready_wait_s: float = 30.0,
        media_read_timeout_s: float = MEDIA_READ_TIMEOUT_S,
        status_clock: Clock | None = None,
    ) -> None:
        settings = config.telegram
        if not settings.token:
            raise ValueError("TelegramAdapter needs [telegram] token (or RESTYLE_TELEGRAM_TOKEN)")
        self.config = config
        self.service = service
        self.token = settings.token
        self.max_download_bytes = int(settings.max_download_mb * 1_000_000)
        self._moves = MovedChats(config.access.telegram_chats)
        self._replies = ReplyRecords(service.jobs.add_to_reply)
        self._told_post_as_self: set[int] = set()  # chats told once to post as a person
        # Several front ends on one database (set by the app): only the holder of this token's
        # lease calls getUpdates; None (one process) polls as python-telegram-bot does.
        self.listeners: Listeners | None = None
        self._log_redaction = LogRedaction(self.token)
        self._log_redaction.install()  # before building: the Bot logs its URLs as it is made
        self.application = self._build(request, get_updates_request)
        self._statuses = TelegramStatuses(
            self.application.bot, service, status_clock or MonotonicClock(), self._moves, self._replies,
            edit_interval_s=edit_interval_s, group_edit_interval_s=group_edit_interval_s,
        )  # fmt: skip
        self._updates = TelegramUpdates(
            self.application, settings, self.token, self._log_redaction, self._statuses.edits.tasks,
            poll_timeout_s=poll_timeout_s, reconnect_delays_s=reconnect_delays_s,
        )  # fmt: skip
        self._delivery = TelegramDelivery(
            self.application.bot, service, self._replies, self._moves, self._statuses.edits.sending,
            self._updates.connected_within, photo_limit_bytes=photo_limit_bytes,
            media_read_timeout_s=media_read_timeout_s, ready_wait_s=ready_wait_s,
        )  # fmt: skip
        self._parts = ChatParts(self.application.bot, self._statuses, self._delivery, self._place_refusal,
                                self.max_download_bytes)  # fmt: skip

    # Building ----------------------------------------------------------------------------------

    def _build(self, request: BaseRequest | None, get_updates_request: BaseRequest | None) -> Application:
        settings = self.config.telegram
        builder = (
            ApplicationBuilder()
            .token(self.token)
            # Waits out 429s (retry_after) and keeps under Telegram's flood limits.
            .rate_limiter(_Limiter(max_retries=3))
            # One member's slow download must not hold up everyone else's answer.
            .concurrent_updates(64)
        )
        if settings.base_url:
            builder = builder.base_url(settings.base_url)
        if settings.base_file_url:
            builder = builder.base_file_url(settings.base_file_url)
        if request is not None:
            builder = builder.request(request)
        else:
            builder = builder.connect_timeout(10).read_timeout(20).write_timeout(20).media_write_timeout(60)
        if get_updates_request is not None:
            builder = builder.get_updates_request(get_updates_request)
        else:
            builder = builder.get_updates_connect_timeout(10).get_updates_read_timeout(10)
        app = builder.build()

        only_new = filters.UpdateType.MESSAGE  # an edited message is not a new request
        # Before every other handler (group -1): the flood guard sees each command and button first.
        app.add_handler(TypeHandler(Update, self._admit), group=-1)
        app.add_handler(CommandHandler("restyle", self._on_restyle, filters=only_new))
        app.add_handler(MessageHandler(only_new & filters.CaptionRegex(CAPTION_COMMAND), self._on_restyle))
        app.add_handler(CommandHandler("start", self._on_start, filters=only_new))
        app.add_handler(CommandHandler("help", self._on_help, filters=only_new))
        app.add_handler(CommandHandler("styles", self._on_styles, filters=only_new))
        app.add_handler(CommandHandler("me", self._on_me, filters=only_new))
        app.add_handler(CommandHandler("cancel", self._on_cancel, filters=only_new))
        app.add_handler(CommandHandler("upgrade", self._on_upgrade, filters=only_new))
        # Admins only (not in COMMANDS: members are not shown them).
        app.add_handler(CommandHandler("ban", self._on_ban, filters=only_new))
        app.add_handler(CommandHandler("unban", self._on_unban, filters=only_new))
        app.add_handler(CommandHandler("queue", self._on_queue, filters=only_new))
        # Payments, codes, links, /grant /revoke /refund: bot/adapters/telegram/upgrades.py
        self.upgrades = TelegramUpgrades(self.service, self.config, app.bot, self._member)
        self.upgrades.install(app, only_new)
        app.add_handler(CallbackQueryHandler(self._on_button, pattern=BUTTON_DATA))
        # Last: any other button (an old keyboard, data we no longer make) still gets its answer,
        # or the member's button spins until Telegram gives up.
        app.add_handler(CallbackQueryHandler(self._on_unknown_button))
        app.add_error_handler(self._on_error)
        return app

    @property
    def bot(self) -> Any:
        return self.application.bot

    # Start and stop ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and take updates (bot/adapters/telegram/updates.py): returns while Telegram
        cannot be reached yet; raises AdapterStartError for what no retrying fixes."""
        await self._updates.start(self.listeners)

    async def stop(self) -> None:
        await self._updates.stop()

    @property
    def ready(self) -> bool:
        """Connected: getMe answered and updates are coming in."""
        return self._updates.ready

    # Answers to any update ---------------------------------------------------------------------

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("error while handling a Telegram update: %s", short_error(context.error), exc_info=context.error)
        query = update.callback_query if isinstance(update, Update) else None
        if query is not None:
            # The handler failed before (or after) answering: answer now. A second answer is
            # refused by Telegram and only logged.
            tr = translator(query.from_user.language_code if query.from_user else None)
            await quietly(
                query.answer(tr.gettext("Something went wrong on my side; try again in a minute."), show_alert=True)
            )

    async def _on_unknown_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.callback_query is not None:
            await quietly(
                update.callback_query.answer(
                    self._tr(update).gettext("That button is out of date; send /restyle again."), show_alert=True
                )
            )

    # Members' requests -------------------------------------------------------------------------

    @staticmethod
    def _member(user: User) -> Member:
        # language_code: the member's app language (an IETF tag, may be absent: English).
        return Member("telegram", str(user.id), user.full_name or user.username or "", lang=user.language_code)

    @staticmethod
    def _tr(update: Update) -> Translator:
        user = update.effective_user
        return translator(user.language_code if user is not None else None)

    async def _admit(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The flood guard, for every command and button press, before any handler parses it:
        past the limit the first one hears "too fast" and the rest get no answer at all.
        Payments are never held up (Telegram cancels a pre-checkout not answered in 10 s)."""
        message = update.message
        if message is not None and (message.migrate_to_chat_id or message.migrate_from_chat_id):
            old, new = (message.chat.id, message.migrate_to_chat_id) if message.migrate_to_chat_id else (
                message.migrate_from_chat_id, message.chat.id)  # fmt: skip
            self._moves.moved(int(old), int(new))  # type: ignore[arg-type]  # both set: see the if above
            raise ApplicationHandlerStop
        if message is not None and _posted_as_chat(message):
            # Never a member account (a shared quota for "Telegram", /ban banning a channel).
            if not message.is_automatic_forward and _is_request(update, self.bot.username or ""):
                chat_id = message.chat.id
                if chat_id not in self._told_post_as_self:
                    self._told_post_as_self.add(chat_id)
                    await answer(self.bot, message, self._tr(update).gettext(POST_AS_YOURSELF))
            raise ApplicationHandlerStop
        user = update.effective_user
        if user is None or user.is_bot or not _is_request(update, self.bot.username or ""):
            return
        refused = self.service.jobs.admit(self._member(user))
        if refused is None:
            return
        if update.callback_query is not None:
            # Even a quiet refusal answers the press (without text): an unanswered button spins.
            await quietly(
                update.callback_query.answer(None if refused.quiet else refused.text, show_alert=not refused.quiet)
            )
        elif not refused.quiet and update.message is not None:
            await answer(self.bot, update.message, refused.text)
        raise ApplicationHandlerStop

    async def _on_restyle(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or user.is_bot:
            return
        text = message.text or message.caption or ""
        caption_form = message.text is None
        if caption_form:
            match = CAPTION_COMMAND.match(text)
            addressed = match.group(1) if match else None
            if addressed and addressed.lower() != (self.bot.username or "").lower():
                return  # /restyle@SomeOtherBot: not ours
        # A chat and message id names the request: an update Telegram delivers again (a restart
        # before its offset was confirmed, a webhook retried) finds the job it queued.
        request = RestyleRequest(text, f"message:{message.chat.id}:{message.message_id}")
        where = RestyleChat(self._parts, message, caption_form, user.language_code)
        await handle_restyle(self.service, self._member(user), request, where)

    async def _on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.effective_message:
            await answer(self.bot, update.effective_message, with_example(START_TEXT, self._tr(update)))

    async def _on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Usage, and a button per ready-made style that copies its command: the member pastes
        it as a reply to their picture (a bot cannot type into the member's input box)."""
        message = update.effective_message
        if message is None:
            return
        group = message.chat.type != "private"

        def addressed(text: str) -> str:
            return addressed_commands(text, self.bot.username or "") if group else text

        tr = self._tr(update)
        markup = recipe_buttons(self.config.styles, addressed)
        note = "\n\n" + tr.gettext(texts.RECIPE_BUTTONS_NOTE) if markup else ""
        await answer(self.bot, message, usage(tr) + note, markup)

    async def _on_upgrade(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.upgrades.on_upgrade(update, context)

    async def _on_styles(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.effective_message is not None:
            user = update.effective_user
            lang = user.language_code if user is not None else None
            await account.styles(self.config.styles, CommandChat(self._parts, update.effective_message), lang)

    async def _on_me(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is not None and user is not None:
            await account.me(self.service, self._member(user), CommandChat(self._parts, message))

    async def _on_cancel(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is not None and user is not None:
            await account.cancel(self.service, self._member(user), CommandChat(self._parts, message))

    def _place_refusal(self, message: Message, lang: str | None) -> Refused | None:
        """[access] allow-lists: None where the bot works; elsewhere a refusal said once per chat.
        A supergroup made from an allowed group is allowed too (its id changed, not its members)."""
        chat = message.chat
        old = self._moves.was(chat.id)
        if old is not None and place_refusal(self.config.access, Place("telegram", chat_id=old)) is None:
            return None
        return self.service.admin.check_place(Place("telegram", chat_id=chat.id, private=chat.type == "private"), lang)

    # Admins ------------------------------------------------------------------------------------

    async def _on_ban(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._ban_command(update, context, banned=True)

    async def _on_unban(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._ban_command(update, context, banned=False)

    async def _ban_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE, *, banned: bool) -> None:
        """/ban [id] reason… or /unban [id] [reason…]: by Telegram id, or as a reply to the
        member's message. A ban cancels the member's waiting jobs."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or user.is_bot:
            return
        command = "ban" if banned else "unban"
        admin = self._member(user)
        tr = translator(user.language_code)
        if not self.service.admin.is_admin(admin):
            await answer(self.bot, message, tr.gettext(texts.NOT_ADMIN).format(command=command))
            return
        args = list(context.args or [])
        target: Member | None = None
        replied = _replied(message)
        author = getattr(replied, "from_user", None)  # an external reply has none
        if author is not None and not author.is_bot:
            target = self._member(author)  # every word after the command is the reason
        elif args and (user_id := whole_number(args[0], 1, MAX_PLATFORM_ID)) is not None:
            args.pop(0)
            target = Member("telegram", str(user_id))
        if target is None:
            example = tr.gettext("spamming the group") if banned else tr.gettext("appeal accepted")
            await answer(self.bot, message, tr.gettext(BAN_USAGE).format(command=command, example=example))
            return
        await admin_commands.ban(
            self.service, admin, target, " ".join(args).strip(), CommandChat(self._parts, message), banned=banned
        )

    async def _on_queue(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/queue: who is waiting, per tier. /queue log [n]: the latest jobs, for complaints."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or user.is_bot:
            return
        args = [a.lower() for a in context.args or []]
        log_asked = bool(args) and args[0] == "log"
        count = whole_number(args[1], 1, 1_000_000) if log_asked and len(args) > 1 else None
        await admin_commands.queue(
            self.service, self._member(user), CommandChat(self._parts, message), log=log_asked, count=count
        )

    # Buttons -----------------------------------------------------------------------------------

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or not query.data:
            return
        if query.message is None:  # an inline message's buttons: ours never are
            await quietly(query.answer())
            return
        action, _, rest = query.data.partition(":")
        fmt = ""
        if action == "file":
            fmt, _, rest = rest.partition(":")
        press = Press(action, rest, f"callback:{query.id}", fmt)
        member = self._member(query.from_user)
        # An InaccessibleMessage (too old for the bot to see) still names its chat and id.
        await handle_press(self.service, member, press, PressChat(self._parts, query, query.message, member, rest))  # type: ignore[arg-type]

    # The service's side (FrontEnd) -------------------------------------------------------------

    async def job_updated(self, job: JobView) -> None:
        """Show the job's state in its status message (bot/chat/statuses.py)."""
        await self._statuses.follower.updated(job)

    async def deliver_result(self, delivery: Delivery) -> None:
        await self._delivery.result(delivery)
        await self._statuses.finish(delivery.job.id, DONE)

    async def deliver_failure(self, job: JobView) -> None:
        await self._delivery.failure(job)
        await self._statuses.finish(status_key(job), FAILED_TEXT)

    async def deliver_sweep(self, sweep: SweepDelivery) -> None:
        await self._delivery.sweep(sweep)
        await self._statuses.finish(sweep.sweep_id, DONE)
