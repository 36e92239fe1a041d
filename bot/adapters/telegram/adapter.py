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
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

from telegram import (
    BotCommand,
    Message,
    Update,
    User,
)
from telegram.error import (
    BadRequest,
    Conflict,
    InvalidToken,
    TelegramError,
)
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

from bot.adapters import AdapterStartError
from bot.adapters.telegram.buttons import BUTTON_DATA, recipe_buttons
from bot.adapters.telegram.connection import (
    LogRedaction,
    _Limiter,
    short_error,
    webhook_problem,
    webhook_secret,
    webhook_secret_matches,
)
from bot.adapters.telegram.delivery import ReplyRecords, TelegramDelivery
from bot.adapters.telegram.moved_chats import MovedChats
from bot.adapters.telegram.parsing import (
    CAPTION_COMMAND,
    _is_request,
    _posted_as_chat,
    _replied,
)
from bot.adapters.telegram.replies import answer, quietly
from bot.adapters.telegram.statuses import TelegramStatuses
from bot.adapters.telegram.surfaces import ChatParts, CommandChat, PressChat, RestyleChat
from bot.adapters.telegram.texts import (
    BAN_USAGE,
    DONE,
    POST_AS_YOURSELF,
    START_TEXT,
    addressed_commands,
    with_example,
)
from bot.adapters.telegram.texts import (
    FAILED as FAILED_TEXT,
)
from bot.adapters.telegram.upgrades import TelegramUpgrades
from bot.chat import account, texts
from bot.chat import admin as admin_commands
from bot.chat.presses import Press, handle_press
from bot.chat.restyle import RestyleRequest, handle_restyle
from bot.chat.statuses import status_key
from bot.clock import Clock, MonotonicClock
from bot.commands import (
    MAX_PLATFORM_ID,
    usage,
    whole_number,
)
from bot.config import Config
from bot.core.types import Delivery, JobView, Member, Refused, SweepDelivery
from bot.i18n import LANGUAGES, N_, Translator, translator
from bot.listener import Listeners, keep_listening, stream_name
from bot.moderation import Place, place_refusal
from bot.service import RestyleService

log = logging.getLogger("bot.telegram")

PHOTO_LIMIT_BYTES = 10_000_000  # Telegram's photo upload limit
EDIT_INTERVAL_S = 3.0  # one status edit per message per this many seconds (private chats)
GROUP_EDIT_INTERVAL_S = 10.0  # groups share 20 messages a minute across the whole chat
MEDIA_READ_TIMEOUT_S = 60.0  # Telegram answers an album only once it has processed every picture
RECONNECT_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
ALLOWED_UPDATES = ["message", "callback_query", "pre_checkout_query"]

# (command, description): the names stay English in every language (they are what members type,
# and what /help, the README and shared recipes say); the descriptions are translated.
COMMAND_TEXTS = [
    ("restyle", N_("Reply to a picture: /restyle <new style>")),
    ("styles", N_("Ready-made styles: /restyle style=neon")),
    ("me", N_("Your tier and what is left today")),
    ("upgrade", N_("Skip the queue and get more restyles")),
    ("cancel", N_("Cancel your waiting jobs")),
    ("link", N_("Share your tier with the bot on Discord")),
    ("terms", N_("Terms of the paid plans")),
    ("paysupport", N_("Help with a payment")),
    ("help", N_("How to use the bot, with examples")),
]


def commands_in(lang: str | None) -> list[BotCommand]:
    """The command list with its descriptions in `lang` (None: English, the default list)."""
    tr = translator(lang)
    return [BotCommand(name, tr.gettext(description)) for name, description in COMMAND_TEXTS]


COMMANDS = commands_in(None)


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
        self.poll_timeout_s = poll_timeout_s
        self.reconnect_delays_s = reconnect_delays_s
        self.ready = False  # connected: getMe answered and updates are coming in
        self._ready_event = asyncio.Event()
        self._moves = MovedChats(config.access.telegram_chats)
        self._replies = ReplyRecords(service.jobs.update_reply)
        self._told_post_as_self: set[int] = set()  # chats told once to post as a person
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connect_task: asyncio.Task[None] | None = None
        self._webhook_runner: Any = None
        # Several front ends on one database (set by the app): only the holder of this token's
        # lease calls getUpdates; None (one process) polls as python-telegram-bot does.
        self.listeners: Listeners | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._in_hand: set[str] = set()  # update keys being handled in this process
        self._handling = asyncio.Semaphore(64)  # as concurrent_updates(64) below
        self._initialized = False
        self._stopping = False
        self._log_redaction = LogRedaction(self.token)
        self._log_redaction.install()  # before building: the Bot logs its URLs as it is made
        self.application = self._build(request, get_updates_request)
        self._statuses = TelegramStatuses(
            self.application.bot, service, status_clock or MonotonicClock(), self._moves, self._replies,
            edit_interval_s=edit_interval_s, group_edit_interval_s=group_edit_interval_s,
        )  # fmt: skip
        self._delivery = TelegramDelivery(
            self.application.bot, service, self._replies, self._moves, self._statuses.edits.sending,
            self._connected_within, photo_limit_bytes=photo_limit_bytes,
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
        """Connect and take updates. If Telegram cannot be reached, keep trying in the
        background and return anyway: the rest of the bot (and its queue) runs meanwhile.
        A refused token or a webhook port that can't be had raise AdapterStartError: no
        amount of retrying fixes those."""
        self._stopping = False
        problem = webhook_problem(self.config.telegram.webhook_url, self.config.telegram.base_url)
        if problem is not None:
            raise AdapterStartError(problem)
        self._log_redaction.install()
        try:
            await self._connect()
        except InvalidToken:
            await self.stop()
            raise AdapterStartError(
                "Telegram refused the bot token; check [telegram] token (or RESTYLE_TELEGRAM_TOKEN) "
                "against the one @BotFather gave you."
            ) from None
        except AdapterStartError:
            await self.stop()
            raise
        except (TelegramError, OSError) as exc:
            log.warning("Telegram is not reachable (%s); retrying in the background", short_error(exc))
            self._connect_task = asyncio.create_task(self._connect_forever(), name="telegram-connect")

    async def _connect(self) -> None:
        if not self._initialized:
            await self.application.initialize()  # getMe
            self._initialized = True
        if not self.application.running:
            await self.application.start()
        if self.config.telegram.webhook_url and self.listeners is not None:
            await self._start_webhook(set_it=False)
            if self._lease_task is None or self._lease_task.done():
                self._lease_task = asyncio.create_task(self._keep_webhook_leases(), name="telegram-lease")
        elif self.config.telegram.webhook_url:
            await self._start_webhook()
        elif self.listeners is not None:
            if self._lease_task is None or self._lease_task.done():
                lease = self.listeners.lease(stream_name("telegram", self.token))
                self._lease_task = asyncio.create_task(
                    keep_listening(lease, self._start_leased_polling, self._stop_leased_polling), name="telegram-lease"
                )
        elif not self.application.updater.running:  # type: ignore[union-attr]  # polling: built with an Updater
            await self.application.updater.start_polling(  # type: ignore[union-attr]  # as above
                poll_interval=0.0,
                timeout=int(self.poll_timeout_s),
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=False,  # requests sent while the bot was down still count
                error_callback=self._on_poll_error,
            )
        if not self.ready:
            self._log_privacy_mode()
        self.ready = True
        self._ready_event.set()
        log.info("Telegram connected as @%s (%s)", self.bot.username,
                 "webhook" if self.config.telegram.webhook_url else "long polling")  # fmt: skip
        self._spawn(self._register_commands())

    def _log_privacy_mode(self) -> None:
        if self.bot.bot.can_read_all_group_messages:
            log.info("Telegram privacy mode is off: the bot receives every group message (it answers only "
                     "its commands; @BotFather /setprivacy turns privacy mode back on)")  # fmt: skip
        else:
            log.info("Telegram privacy mode is on: in groups the bot receives only /commands meant for it "
                     "(/restyle@%s, or bare when it is the only bot), replies to its messages and service "
                     "messages. That is all it needs.", self.bot.username)  # fmt: skip

    async def _connect_forever(self) -> None:
        attempt = 0
        while not self._stopping:
            delay = self.reconnect_delays_s[min(attempt, len(self.reconnect_delays_s) - 1)]
            await asyncio.sleep(delay)
            attempt += 1
            try:
                await self._connect()
                return
            except InvalidToken:
                log.error("Telegram refused the bot token; the Telegram front end stays off until a restart.")
                return
            except AdapterStartError as exc:
                log.error("%s The Telegram front end stays off until a restart.", exc)
                return
            except (TelegramError, OSError) as exc:
                log.warning("Telegram still not reachable (%s); next try in %.0f s", short_error(exc),
                            self.reconnect_delays_s[min(attempt, len(self.reconnect_delays_s) - 1)])  # fmt: skip

    async def _register_commands(self) -> None:
        for delay in (0.0, *self.reconnect_delays_s):
            await asyncio.sleep(delay)
            try:
                # The default list (English) for everyone, then one per translated language:
                # Telegram shows a member the list of their app's language when there is one.
                await self.bot.set_my_commands(COMMANDS)
                for lang in LANGUAGES:
                    if lang != "en":
                        await self.bot.set_my_commands(commands_in(lang), language_code=lang)
                return
            except TelegramError as exc:
                log.warning("could not register the command list (%s); retrying", short_error(exc))

    async def stop(self) -> None:
        self._stopping = True
        self.ready = False
        self._ready_event.clear()
        if self._connect_task is not None:
            self._connect_task.cancel()
            await asyncio.gather(self._connect_task, return_exceptions=True)
        if self._webhook_runner is not None:
            await self._webhook_runner.cleanup()
            self._webhook_runner = None
        if self._lease_task is not None:
            self._lease_task.cancel()  # stops polling and gives the lease to another front end
            await asyncio.gather(self._lease_task, return_exceptions=True)
            self._lease_task = None
        updater = self.application.updater
        if updater is not None and updater.running:
            await updater.stop()
        if self.application.running:
            await self.application.stop()
        status_tasks = self._statuses.edits.tasks()
        for task in [*status_tasks, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *status_tasks, return_exceptions=True)
        if self._initialized:
            await self.application.shutdown()
            self._initialized = False
        self._log_redaction.remove()

    def _on_poll_error(self, exc: TelegramError) -> None:
        if isinstance(exc, Conflict):
            # PTB's network loop backs off (1 s, x1.5, up to 30 s) after each error it reports here.
            if "webhook" in str(exc).lower():
                cause = "a webhook is set for this bot token (another copy of the bot runs in webhook mode)"
            else:
                cause = ("another process is polling with this bot token (a second bot, or several "
                         "--role frontend processes); Telegram gives updates to one reader only")  # fmt: skip
            log.error("Telegram answered 409 Conflict: %s. Retrying with backoff until it stops.", cause)
            return
        log.warning("polling Telegram failed (%s); python-telegram-bot retries with backoff", short_error(exc))

    # Polling under the listener lease (several front ends) -------------------------------------

    async def _start_leased_polling(self) -> None:
        self._poll_task = asyncio.create_task(self._poll_leased(), name="telegram-poll")

    async def _stop_leased_polling(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            await asyncio.gather(self._poll_task, return_exceptions=True)
            self._poll_task = None

    async def _poll_leased(self) -> None:
        """getUpdates as python-telegram-bot's updater does, with one difference: each update is
        written down in the database (the inbox) before the next getUpdates confirms it. So a
        front end killed between the two leaves the update to the next holder, which fetches the
        unconfirmed updates again and skips what the inbox already holds: none is lost, none is
        handled twice."""
        assert self.listeners is not None
        inbox = self.listeners.inbox(self.platform)
        delays = iter(self.reconnect_delays_s)
        for key, body in await inbox.left_over():
            if key not in self._in_hand:
                log.info(
                    "Telegram %s was received by a front end that stopped before handling it; handling it here", key
                )
                self._spawn_handling(inbox, key, Update.de_json(json.loads(body), self.bot))
        offset: int | None = None
        while True:
            try:
                updates = await self.bot.get_updates(
                    offset=offset, timeout=int(self.poll_timeout_s), allowed_updates=ALLOWED_UPDATES
                )
                for update in updates:
                    key = f"update:{update.update_id}"
                    if key in self._in_hand or not await inbox.receive(key, json.dumps(update.to_dict())):
                        continue  # fetched again after a handover or a failed write: handled elsewhere
                    self._spawn_handling(inbox, key, update)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, TelegramError):
                    self._on_poll_error(exc)
                else:
                    log.warning("could not take Telegram updates (%s); trying again", short_error(exc))
                await asyncio.sleep(next(delays, self.reconnect_delays_s[-1]))
                continue  # the offset stays: what was not written down comes again
            delays = iter(self.reconnect_delays_s)
            if updates:
                offset = updates[-1].update_id + 1

    # The webhook under the listener lease (several front ends) --------------------------------

    async def _keep_webhook_leases(self) -> None:
        """Every front end takes webhook posts (Telegram sends to one URL; behind a load balancer
        any of them may get one) and writes each down before answering 200. The holder of the
        token's lease is the one that sets the webhook (one setWebhook, not one per front end)
        and handles what a front end that died wrote down and never handled: a front end proves
        it is alive with a presence lease of its own."""
        assert self.listeners is not None
        lease = self.listeners.lease(stream_name("telegram", self.token))
        present = self.listeners.lease(stream_name("telegram", self.token, f"frontend:{self.listeners.holder}"))

        async def nothing() -> None:
            return None

        await asyncio.gather(
            keep_listening(present, nothing, nothing),
            keep_listening(lease, self._start_webhook_holding, self._stop_webhook_holding),
        )

    async def _start_webhook_holding(self) -> None:
        await self._set_webhook()
        self._poll_task = asyncio.create_task(self._sweep_webhook_left_overs(), name="telegram-webhook-sweep")

    async def _stop_webhook_holding(self) -> None:
        # The webhook stays set: the other front ends go on taking posts.
        await self._stop_leased_polling()

    async def _sweep_webhook_left_overs(self) -> None:
        assert self.listeners is not None
        inbox = self.listeners.inbox(self.platform)
        prefix = stream_name("telegram", self.token, "frontend:")
        while True:
            try:
                alive = {holder for _, holder in await self.listeners.holders(prefix)}
                for key, body in await inbox.left_over(received_by_not_in=alive):
                    if key not in self._in_hand:
                        log.info(
                            "Telegram %s was received by a front end that stopped before handling it; handling it here",
                            key,
                        )
                        self._spawn_handling(inbox, key, Update.de_json(json.loads(body), self.bot))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "could not look for Telegram updates left by a stopped front end (%s); trying again",
                    short_error(exc),
                )
            await self.listeners.clock.sleep(self.listeners.lease_s / 3)

    def _spawn_handling(self, inbox: Any, key: str, update: Update) -> None:
        self._in_hand.add(key)

        async def handle() -> None:
            try:
                async with self._handling:
                    await self.application.process_update(update)
                await inbox.handled(key)
            except Exception:
                # Left unhandled in the inbox: the next holder handles it again, and a job it
                # asked for is found by its request key instead of being queued twice.
                log.exception("could not finish Telegram %s", key)
            finally:
                self._in_hand.discard(key)

        self._spawn(handle())

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

    # Webhook -----------------------------------------------------------------------------------

    async def _start_webhook(self, set_it: bool = True) -> None:
        """Our own small aiohttp endpoint (no tornado needed); Telegram proves itself with the
        secret token header."""
        from aiohttp import web

        settings = self.config.telegram
        assert settings.webhook_url
        secret = webhook_secret(self.token)
        path = urlsplit(settings.webhook_url).path or "/"
        inbox = self.listeners.inbox(self.platform) if self.listeners is not None else None

        async def receive(request: web.Request) -> web.Response:
            if not webhook_secret_matches(request.headers.get("X-Telegram-Bot-Api-Secret-Token"), secret):
                return web.Response(status=403)
            try:
                data = await request.json()
                update = Update.de_json(data, self.bot)
            except Exception:
                return web.Response(status=400)
            if inbox is None:
                await self.application.update_queue.put(update)
                return web.Response(status=200)
            key = f"update:{update.update_id}"
            try:
                new = key not in self._in_hand and await inbox.receive(key, json.dumps(update.to_dict()))
            except Exception as exc:
                # Not written down: not 200, so Telegram sends it again (Bot API, setWebhook: "In
                # case of an unsuccessful request, we will give up after a reasonable amount of
                # attempts"), to this front end or another.
                log.warning(
                    "could not write Telegram %s down (%s); asking Telegram to send it again", key, short_error(exc)
                )
                return web.Response(status=503)
            if new:  # else a retry of one written down before: handled there, or by the holder
                self._spawn_handling(inbox, key, update)
            return web.Response(status=200)

        if self._webhook_runner is None:
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
            self._webhook_runner = runner
        if set_it:
            await self._set_webhook()

    async def _set_webhook(self) -> None:
        settings = self.config.telegram
        assert settings.webhook_url
        try:
            await self.bot.set_webhook(
                settings.webhook_url, secret_token=webhook_secret(self.token), allowed_updates=ALLOWED_UPDATES
            )
        except BadRequest as exc:
            # Not a network problem: Telegram will refuse this URL every time.
            raise AdapterStartError(
                f"Telegram refused the webhook URL {settings.webhook_url} ({exc.message}); fix [telegram] webhook_url."
            ) from None

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

    async def _connected_within(self, seconds: float) -> bool:
        """Whether Telegram is connected, or gets connected within `seconds`."""
        if self.ready:
            return True
        try:
            await asyncio.wait_for(self._ready_event.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
