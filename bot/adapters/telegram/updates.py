"""How updates arrive from Telegram: the connection's lifecycle (getMe, retried in the background
while Telegram cannot be reached), the command list, and the three ways updates come in: plain
long polling (python-telegram-bot's updater), polling under the listener lease when several
front ends share a database, and our own webhook endpoint (leased or not).

Under the lease every update is written down in the database (the inbox) before it is handled
or confirmed, so a front end that stops between the two leaves it to the next holder: none is
lost, none is handled twice (bot/listener.py). The handlers themselves are the adapter's: an
update is handed to the Application built there."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.error import BadRequest, Conflict, InvalidToken, TelegramError
from telegram.ext import Application

from bot.adapters import AdapterStartError
from bot.adapters.telegram.connection import (
    LogRedaction,
    short_error,
    webhook_problem,
    webhook_secret,
)
from bot.adapters.telegram.texts import COMMANDS, commands_in
from bot.adapters.telegram.webhook import serve_webhook
from bot.config import TelegramSettings
from bot.i18n import LANGUAGES
from bot.listener import Listeners, keep_listening, stream_name

log = logging.getLogger("bot.telegram")

PLATFORM = "telegram"
ALLOWED_UPDATES = ["message", "callback_query", "pre_checkout_query"]
RECONNECT_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class TelegramUpdates:
    """The connection to Telegram and the updates it brings, handed to `application`."""

    def __init__(
        self,
        application: Application,
        settings: TelegramSettings,
        token: str,
        log_redaction: LogRedaction,
        status_tasks: Callable[[], list[asyncio.Task[None]]],
        *,
        poll_timeout_s: float,
        reconnect_delays_s: tuple[float, ...],
    ) -> None:
        self.application = application
        self.settings = settings
        self.token = token  # settings.token, checked to be there
        self._log_redaction = log_redaction
        self._status_tasks = status_tasks  # cancelled at stop, with the handling of updates
        self.poll_timeout_s = poll_timeout_s
        self.reconnect_delays_s = reconnect_delays_s
        self.ready = False  # connected: getMe answered and updates are coming in
        self._ready_event = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connect_task: asyncio.Task[None] | None = None
        self._webhook_runner: Any = None
        # Several front ends on one database (given at start): only the holder of this token's
        # lease calls getUpdates; None (one process) polls as python-telegram-bot does.
        self.listeners: Listeners | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self.in_hand: set[str] = set()  # update keys being handled in this process
        self._handling = asyncio.Semaphore(64)  # as concurrent_updates(64) in the adapter's builder
        self._initialized = False
        self._stopping = False

    @property
    def bot(self) -> Any:
        return self.application.bot

    async def connected_within(self, seconds: float) -> bool:
        """Whether Telegram is connected, or gets connected within `seconds`."""
        if self.ready:
            return True
        try:
            await asyncio.wait_for(self._ready_event.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def start(self, listeners: Listeners | None) -> None:
        """Connect and take updates. If Telegram cannot be reached, keep trying in the
        background and return anyway: the rest of the bot (and its queue) runs meanwhile.
        A refused token or a webhook port that can't be had raise AdapterStartError: no
        amount of retrying fixes those."""
        self.listeners = listeners
        self._stopping = False
        problem = webhook_problem(self.settings.webhook_url, self.settings.base_url)
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
        if self.settings.webhook_url and self.listeners is not None:
            await self._start_webhook(set_it=False)
            if self._lease_task is None or self._lease_task.done():
                self._lease_task = asyncio.create_task(self._keep_webhook_leases(), name="telegram-lease")
        elif self.settings.webhook_url:
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
                 "webhook" if self.settings.webhook_url else "long polling")  # fmt: skip
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
        status_tasks = self._status_tasks()
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
        inbox = self.listeners.inbox(PLATFORM)
        delays = iter(self.reconnect_delays_s)
        for key, body in await inbox.left_over():
            if key not in self.in_hand:
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
                    if key in self.in_hand or not await inbox.receive(key, json.dumps(update.to_dict())):
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
        inbox = self.listeners.inbox(PLATFORM)
        prefix = stream_name("telegram", self.token, "frontend:")
        while True:
            try:
                alive = {holder for _, holder in await self.listeners.holders(prefix)}
                for key, body in await inbox.left_over(received_by_not_in=alive):
                    if key not in self.in_hand:
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
        self.in_hand.add(key)

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
                self.in_hand.discard(key)

        self._spawn(handle())

    async def _start_webhook(self, set_it: bool = True) -> None:
        """Take Telegram's posts at the webhook URL (bot/adapters/telegram/webhook.py)."""
        if self._webhook_runner is None:
            inbox = self.listeners.inbox(PLATFORM) if self.listeners is not None else None
            take = functools.partial(self._take_posted, inbox)
            self._webhook_runner = await serve_webhook(self.settings, self.token, self.bot, take)
        if set_it:
            await self._set_webhook()

    async def _take_posted(self, inbox: Any, update: Update) -> int:
        """A webhook post's update: handled (without an inbox), or written down in the inbox and
        handled; the HTTP status is what Telegram is answered."""
        if inbox is None:
            await self.application.update_queue.put(update)
            return 200
        key = f"update:{update.update_id}"
        try:
            new = key not in self.in_hand and await inbox.receive(key, json.dumps(update.to_dict()))
        except Exception as exc:
            # Not written down: not 200, so Telegram sends it again (Bot API, setWebhook: "In
            # case of an unsuccessful request, we will give up after a reasonable amount of
            # attempts"), to this front end or another.
            log.warning(
                "could not write Telegram %s down (%s); asking Telegram to send it again", key, short_error(exc)
            )
            return 503
        if new:  # else a retry of one written down before: handled there, or by the holder
            self._spawn_handling(inbox, key, update)
        return 200

    async def _set_webhook(self) -> None:
        settings = self.settings
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

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
