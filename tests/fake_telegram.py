"""A fake Telegram Bot API server on 127.0.0.1, for driving the real bot (python-telegram-bot)
in tests.

It speaks the wire format python-telegram-bot uses: `POST /bot<TOKEN>/<method>` with form or
multipart bodies (each non-string value JSON-encoded, uploads referred to by `attach://name` in
sendMediaGroup), answers `{"ok": true, "result": ...}` or `{"ok": false, "error_code": N,
"description": ..., "parameters": {"retry_after": S}}`, and serves files at
`/file/bot<TOKEN>/<path>`. `getUpdates` is a real long poll: it holds the request until an update
arrives or its timeout passes.

Tests push what members do (`message`, `press`), read what the bot did (`calls`, `sent`,
`wait_for`), and inject faults (`fail_next`, `blocked`).

The fake is at least as strict as Telegram: every rule it enforces names its source, the Bot API
page (https://core.telegram.org/bots/api, .../bots/faq, .../bots/features) or python-telegram-bot's
source. A rule the fake does not enforce is a rule the bot is free to break in production.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import itertools
import json
import re
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from aiohttp import web

# Values python-telegram-bot sends as plain strings (everything else is JSON-encoded).
_STRING_KEYS = {
    "text", "caption", "callback_query_id", "file_id", "url", "secret_token", "parse_mode",
    "description", "short_description", "language_code", "filename", "photo", "document",
    "emoji", "name", "title", "payload", "currency", "provider_token", "start_parameter", "pre_checkout_query_id",
    "error_message", "telegram_payment_charge_id", "subscription_id",
}  # fmt: skip

SEND_METHODS = {"sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup", "sendInvoice"}
EDIT_METHODS = {"editMessageText", "editMessageReplyMarkup"}
# Bot API, setWebhook: "Ports currently supported for webhooks: 443, 80, 88, 8443."
WEBHOOK_PORTS = {443, 80, 88, 8443}
TEXT_LIMIT = 4096  # Bot API, sendMessage: "Text of the message to be sent, 1-4096 characters"
CAPTION_LIMIT = 1024  # Bot API, sendPhoto: "Photo caption ... 0-1024 characters"
CALLBACK_ANSWER_LIMIT = 200  # Bot API, answerCallbackQuery: "text ... 0-200 characters"
CALLBACK_QUERY_TTL_S = 15 * 60  # PTB CallbackQuery.answer docs / Bot API FAQ: answers expire (~15 min)
PRE_CHECKOUT_DEADLINE_S = 10.0  # Bot API, answerPreCheckoutQuery: "within 10 seconds"
ANSWER_EXPIRED = "Bad Request: query is too old and response timeout expired or query ID is invalid"
TELEGRAM_SERVICE_USER = 777000  # "Telegram": the sender of automatic forwards from a linked channel
ANONYMOUS_ADMIN_BOT = 1087968824  # GroupAnonymousBot: the `from` of an anonymous admin's message


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes]  # multipart uploads by part name
    at: float  # time.monotonic() when it arrived
    failed: bool = False
    done: bool = False  # answered (a long poll is in progress until then)


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None = None
    drop: bool = False  # close the connection without an answer


@dataclass
class StoredFile:
    file_id: str
    data: bytes
    size: int  # what getFile / the message report (may exceed len(data) to fake a big file)
    path: str
    kind: str = "photo"  # "photo" | "document" | "sticker": what the file_id may be sent as


@dataclass
class FakeTelegram:
    token: str
    bot_id: int = 777000111
    bot_username: str = "RestyleTestBot"
    download_limit: int = 20_000_000  # getFile refuses bigger files, like the cloud Bot API
    photo_upload_limit: int = 10_000_000
    # Bot API, sendDocument: "Bots can currently send files of any type of up to 50 MB in size"
    # (the cloud Bot API; a local server takes up to 2000 MB).
    document_upload_limit: int = 50_000_000
    calls: list[Call] = field(default_factory=list)
    blocked: set[int] = field(default_factory=set)  # chats whose member blocked the bot
    files: dict[str, StoredFile] = field(default_factory=dict)
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    deleted: set[tuple[int, int]] = field(default_factory=set)
    webhook: dict[str, Any] | None = None
    # setMyCommands: (scope as JSON, language_code or "") -> the commands set for it
    my_commands: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    webhook_error: str | None = None  # getWebhookInfo's last_error_message (Telegram could not deliver)
    charges: dict[str, int] = field(default_factory=dict)  # Stars charge id -> payer
    refunded: set[str] = field(default_factory=set)
    cancelled_subscriptions: set[str] = field(default_factory=set)  # charge ids whose renewal was cancelled
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)  # charge id -> successful_payment
    invoice_links: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Privacy mode (Bot API, "Privacy mode", core.telegram.org/bots/features#privacy-mode): on
    # by default; getMe reports it as can_read_all_group_messages.
    can_read_all_group_messages: bool = False
    other_bot_spoke_last: set[int] = field(default_factory=set)  # groups where a bare /cmd goes elsewhere
    withheld: list[dict[str, Any]] = field(default_factory=list)  # group messages privacy mode kept back
    # Flood control (Bot API FAQ, "My bot is hitting limits, how do I avoid this?"): 20 messages
    # a minute per group and 30 a second overall, on by default; about one a second per private
    # chat only with private_flood_control (Telegram tolerates short bursts there, which this
    # fake cannot model, so tests about it turn it on). Edits count.
    flood_control: bool = True
    private_flood_control: bool = False
    forum_topics: dict[int, set[int]] = field(default_factory=dict)  # chat -> open message_thread_ids
    closed_topics: set[tuple[int, int]] = field(default_factory=set)
    no_media_rights: set[int] = field(default_factory=set)  # chats where the bot may not send photos/files
    migrated: dict[int, int] = field(default_factory=dict)  # old group id -> supergroup id
    cancelled_payments: list[str] = field(default_factory=list)  # pre-checkouts answered too late
    # A self-hosted Bot API server (telegram-bot-api --local) takes http webhooks on any port;
    # the cloud one does not.
    local_mode: bool = False

    def __post_init__(self) -> None:
        self._updates: list[dict[str, Any]] = []
        self.pushed: list[dict[str, Any]] = []  # every update ever queued, confirmed or not
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self._file_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._group_ids = itertools.count(1)
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._slow: dict[str, deque[float]] = defaultdict(deque)
        self._changed = asyncio.Condition()
        self.last_update_id = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.closed = False
        self._queries: dict[str, dict[str, Any]] = {}  # callback query id -> pressed_at, answered
        self._pre_checkouts: dict[str, dict[str, Any]] = {}
        self._polls: list[dict[str, Any]] = []  # getUpdates requests being held: {"terminated": bool}
        self._sent_at: dict[Any, deque[float]] = defaultdict(deque)  # flood windows
        self._known_users: set[int] = set()
        self._started: set[int] = set()  # users who opened a private chat with the bot

    # Running ---------------------------------------------------------------------------------

    async def start(self) -> "FakeTelegram":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        self.closed = True
        async with self._changed:
            self._changed.notify_all()
        if self._runner:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    @property
    def bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Restyle", "username": self.bot_username}

    # Faults ----------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 500,
        *,
        retry_after: int | None = None,
        description: str | None = None,
        drop: bool = False,
        times: int = 1,
    ) -> None:
        """The next `times` calls of `method` fail: an HTTP error (429 with retry_after, 403...)
        or, with drop=True, a connection closed without an answer."""
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {retry_after}",
                403: "Forbidden: bot was blocked by the user",
                400: "Bad Request: something is wrong",
                502: "Bad Gateway",
            }.get(status, "Internal Server Error")
        for _ in range(times):
            self._failures[method].append(_Failure(status, description, retry_after, drop))

    def slow_next(self, method: str, seconds: float) -> None:
        """The next call of `method` is carried out at once but answered `seconds` later: a
        client that times out meanwhile does not know that Telegram took it."""
        self._slow[method].append(seconds)

    # What members do -------------------------------------------------------------------------

    @staticmethod
    def user(user_id: int = 1001, first_name: str = "Ana", language_code: str = "en") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": language_code}

    @staticmethod
    def private_chat(user: dict[str, Any]) -> dict[str, Any]:
        return {"id": user["id"], "type": "private", "first_name": user["first_name"]}

    @staticmethod
    def group_chat(chat_id: int = -1001234567890, title: str = "Painters") -> dict[str, Any]:
        return {"id": chat_id, "type": "supergroup", "title": title}

    def add_file(self, data: bytes, *, size: int | None = None, suffix: str = "jpg", kind: str = "photo") -> str:
        n = next(self._file_ids)
        file_id = f"FILE{n:04d}" + "x" * 20
        self.files[file_id] = StoredFile(file_id, data, len(data) if size is None else size, f"files/file_{n}.{suffix}", kind)
        return file_id

    def _photo_sizes(self, data: bytes, size: int | None = None) -> list[dict[str, Any]]:
        """A thumbnail and the full picture, smallest first, as Telegram lists them."""
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            thumb = img.convert("RGB")
            thumb.thumbnail((16, 16))
            buffer = io.BytesIO()
            thumb.save(buffer, format="JPEG")
        small_id = self.add_file(buffer.getvalue())
        big_id = self.add_file(data, size=size)
        return [
            {"file_id": small_id, "file_unique_id": "u" + small_id, "width": thumb.width, "height": thumb.height,
             "file_size": len(buffer.getvalue())},
            {"file_id": big_id, "file_unique_id": "u" + big_id, "width": width, "height": height,
             "file_size": self.files[big_id].size},
        ]  # fmt: skip

    def message(
        self,
        user: dict[str, Any],
        chat: dict[str, Any] | None = None,
        *,
        text: str | None = None,
        caption: str | None = None,
        photo: bytes | None = None,
        document: bytes | None = None,
        mime_type: str = "image/png",
        file_size: int | None = None,
        reply_to: dict[str, Any] | None = None,
        push: bool = True,
        thread_id: int | None = None,
        sticker: bytes | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A member sends a message (pushed as an update unless push=False, or unless privacy
        mode keeps it from the bot); returns it. `extra` adds fields as they are (sender_chat,
        is_automatic_forward...)."""
        chat = chat or self.private_chat(user)
        self._known_users.add(user["id"])
        if chat["type"] == "private":
            self._started.add(user["id"])
        msg: dict[str, Any] = {
            "message_id": next(self._message_ids[chat["id"]]),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
            **extra,
        }
        if thread_id is not None:
            msg["message_thread_id"] = thread_id
            msg["is_topic_message"] = True
        if sticker is not None:
            file_id = self.add_file(sticker, suffix="webp", kind="sticker")
            msg["sticker"] = {"file_id": file_id, "file_unique_id": "u" + file_id, "type": "regular", "width": 512,
                              "height": 512, "is_animated": False, "is_video": False, "file_size": len(sticker)}  # fmt: skip
        if text is not None:
            msg["text"] = text
            entities = _command_entities(text)
            if entities:
                msg["entities"] = entities
        if caption is not None:
            msg["caption"] = caption
            entities = _command_entities(caption)
            if entities:
                msg["caption_entities"] = entities
        if photo is not None:
            msg["photo"] = self._photo_sizes(photo, file_size)
        if document is not None:
            file_id = self.add_file(document, size=file_size, suffix=mime_type.rpartition("/")[2], kind="document")
            msg["document"] = {"file_id": file_id, "file_unique_id": "u" + file_id, "file_name": "picture." + mime_type.rpartition("/")[2],
                               "mime_type": mime_type, "file_size": self.files[file_id].size}  # fmt: skip
        if reply_to is not None:
            msg["reply_to_message"] = _shallow(reply_to)
        self.messages[(chat["id"], msg["message_id"])] = msg
        if push:
            if self._privacy_lets_through(msg):
                self.push({"message": msg})
            else:
                self.withheld.append(msg)
        return msg

    def _privacy_lets_through(self, msg: dict[str, Any]) -> bool:
        """Bot API, Privacy mode: in groups a bot in privacy mode receives only commands meant
        for it (/cmd@ThisBot, or a bare /cmd when it is the only or last bot), replies to its
        own messages and service messages; private chats deliver everything."""
        if msg["chat"]["type"] == "private" or self.can_read_all_group_messages:
            return True
        replied = msg.get("reply_to_message") or {}
        if (replied.get("from") or {}).get("id") == self.bot_id:
            return True
        text = msg.get("text") or msg.get("caption") or ""
        entities = msg.get("entities") or msg.get("caption_entities") or []
        if any(e["type"] == "bot_command" and e["offset"] == 0 for e in entities):
            word = text.split(None, 1)[0]
            _, at, addressed = word.partition("@")
            if at:
                return addressed.lower() == self.bot_username.lower()
            return msg["chat"]["id"] not in self.other_bot_spoke_last
        return False

    def press(self, user: dict[str, Any], message: dict[str, Any], data: str) -> str:
        """A member presses an inline button with `data` on a bot message; returns the query id."""
        query_id = f"Q{next(self._query_ids)}"
        self._queries[query_id] = {"pressed_at": time.monotonic(), "answered": None, "data": data}
        self.push({"callback_query": {"id": query_id, "from": user, "message": _shallow(message),
                                      "chat_instance": "ci" + str(message["chat"]["id"]), "data": data}})  # fmt: skip
        return query_id

    def pre_checkout(self, user: dict[str, Any], payload: str, amount: int, currency: str = "XTR") -> str:
        """A member presses Pay on an invoice: Telegram asks the bot first; returns the query id."""
        query_id = f"PCQ{next(self._query_ids)}"
        self._pre_checkouts[query_id] = {"pushed_at": time.monotonic(), "answered": None}
        self.push({"pre_checkout_query": {"id": query_id, "from": user, "currency": currency,
                                          "total_amount": amount, "invoice_payload": payload}})  # fmt: skip
        return query_id

    def successful_payment(
        self,
        user: dict[str, Any],
        payload: str,
        amount: int,
        charge_id: str,
        *,
        currency: str = "XTR",
        subscription_expiration_date: int | None = None,
        is_recurring: bool = False,
        is_first_recurring: bool = False,
        push: bool = True,
    ) -> dict[str, Any]:
        """The service message Telegram sends once the Stars are taken; returns the message."""
        paid: dict[str, Any] = {"currency": currency, "total_amount": amount, "invoice_payload": payload,
                                "telegram_payment_charge_id": charge_id, "provider_payment_charge_id": ""}  # fmt: skip
        if subscription_expiration_date is not None:
            paid["subscription_expiration_date"] = subscription_expiration_date
        if is_recurring:
            paid["is_recurring"] = True
        if is_first_recurring:
            paid["is_first_recurring"] = True
        self.charges[charge_id] = user["id"]
        self.payments[charge_id] = paid
        msg = self.message(user, push=False)
        msg["successful_payment"] = paid
        if push:
            self.push({"message": msg})
        return msg

    def refund_outside(self, charge_id: str) -> dict[str, Any]:
        """A payment is refunded (by Telegram support, or by the bot): the member's chat gets a
        refunded_payment service message (Bot API, Message.refunded_payment). Returns it."""
        self.refunded.add(charge_id)
        paid = self.payments[charge_id]
        user = self.user(self.charges[charge_id])
        msg = self.message(user, push=False)
        msg["refunded_payment"] = {"currency": paid["currency"], "total_amount": paid["total_amount"],
                                   "invoice_payload": paid["invoice_payload"], "telegram_payment_charge_id": charge_id}  # fmt: skip
        self.push({"message": msg})
        return msg

    def unanswered_queries(self) -> list[str]:
        """Callback queries nobody answered: the member's button keeps spinning (Bot API,
        answerCallbackQuery: "the answer will be displayed ... it is necessary to call
        answerCallbackQuery")."""
        return [q for q, state in self._queries.items() if state["answered"] is None]

    def age_query(self, query_id: str, seconds: float) -> None:
        """Make a callback or pre-checkout query `seconds` older than it is."""
        for book, key in ((self._queries, "pressed_at"), (self._pre_checkouts, "pushed_at")):
            if query_id in book:
                book[query_id][key] -= seconds

    def pre_checkout_answer(self, query_id: str) -> dict[str, Any] | None:
        """{"ok": ..., "after_s": ...} once the bot answered the pre-checkout query in time."""
        return self._pre_checkouts[query_id]["answered"]

    def migrate(self, chat: dict[str, Any], new_id: int) -> dict[str, Any]:
        """A group becomes a supergroup: the old chat answers 400 with migrate_to_chat_id
        (PTB raises ChatMigrated) and both chats get a service message (Bot API, Message:
        migrate_to_chat_id / migrate_from_chat_id). Returns the new chat."""
        new_chat = {**chat, "id": new_id, "type": "supergroup"}
        self.migrated[chat["id"]] = new_id
        for where, key, value in ((chat, "migrate_to_chat_id", new_id), (new_chat, "migrate_from_chat_id", chat["id"])):
            msg = {"message_id": next(self._message_ids[where["id"]]), "date": int(time.time()), "chat": where,
                   "from": self.user(TELEGRAM_SERVICE_USER, "Telegram"), key: value}  # fmt: skip
            self.messages[(where["id"], msg["message_id"])] = msg
            self.push({"message": msg})
        return new_chat

    def add_topic(self, chat_id: int, thread_id: int, *, closed: bool = False) -> None:
        self.forum_topics.setdefault(chat_id, set()).add(thread_id)
        if closed:
            self.closed_topics.add((chat_id, thread_id))

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """A member (or an admin) deletes a message."""
        self.deleted.add((chat_id, message_id))

    def redeliver(self, message: dict[str, Any]) -> int:
        """The same message comes again in a new update, as after a webhook retry or a restart
        before the offset was confirmed (python-telegram-bot does not skip known update ids
        either); returns the new update's id."""
        return self.push({"message": message})

    def serve_again(self, update_id: int) -> None:
        """An update already fetched comes again with the same id: what a new getUpdates reader
        gets for updates whose offset was not confirmed yet (Bot API, getUpdates: an update is
        confirmed only by a later call with a higher offset; until then every call returns it)."""
        update = next(u for u in self.pushed if u["update_id"] == update_id)
        self._updates = sorted([*self._updates, update], key=lambda u: u["update_id"])
        asyncio.get_running_loop().create_task(self._notify())

    def push(self, update: dict[str, Any]) -> int:
        update = {"update_id": next(self._update_ids), **update}
        self.last_update_id = update["update_id"]
        self._updates.append(update)
        self.pushed.append(update)
        asyncio.get_running_loop().create_task(self._notify())
        return update["update_id"]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # What the bot did ------------------------------------------------------------------------

    def calls_to(self, method: str, *, ok_only: bool = False) -> list[Call]:
        """Calls of `method`; ok_only: answered successfully."""
        return [c for c in self.calls if c.method == method and not (ok_only and (c.failed or not c.done))]

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Messages the bot sent (in order), optionally in one chat, deleted ones included."""
        return [m for m in self.messages.values() if m["from"].get("id") == self.bot_id
                and (chat_id is None or m["chat"]["id"] == chat_id)]  # fmt: skip

    def live(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The current state of a message (after edits), or None when deleted."""
        key = (message["chat"]["id"], message["message_id"])
        return None if key in self.deleted else self.messages.get(key)

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        *,
        timeout: float = 5.0,
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Wait until `count` successful calls of `method` (matching `where`) were answered;
        for getUpdates, until that many long polls began."""

        def matching() -> list[Call]:
            calls = self.calls_to(method) if method == "getUpdates" else self.calls_to(method, ok_only=True)
            return [c for c in calls if where is None or where(c)]

        async def waiter() -> list[Call]:
            async with self._changed:
                await self._changed.wait_for(lambda: len(matching()) >= count)
            return matching()

        try:
            return await asyncio.wait_for(waiter(), timeout)
        except asyncio.TimeoutError:
            seen = [(c.method, c.failed) for c in self.calls[-15:]]
            raise AssertionError(f"waited {timeout} s for {count} x {method}; got {len(matching())}. Last calls: {seen}") from None

    def fetched_through(self) -> int:
        """The last update id the bot has confirmed: a getUpdates with offset N confirms every
        update below N (the Bot API's getUpdates), and python-telegram-bot puts each update it
        fetched in its update queue before it asks again."""
        offsets = [int(c.params.get("offset") or 0) for c in self.calls_to("getUpdates")]
        return max(offsets, default=0) - 1

    async def wait_fetched(self, *, timeout: float = 5.0) -> None:
        """Until the bot has taken every update pushed so far."""
        last = self.last_update_id
        await self.wait_until(lambda: self.fetched_through() >= last, timeout=timeout)

    async def wait_until(self, predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
        async def waiter() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        try:
            await asyncio.wait_for(waiter(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"condition not met in {timeout} s; last calls: {[c.method for c in self.calls[-15:]]}") from None

    # The HTTP side ---------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params, files = await _read_params(request)
        call = Call(method, params, files, time.monotonic())
        self.calls.append(call)
        if request.match_info["token"] != self.token:
            call.failed = call.done = True
            return _error(401, "Unauthorized")
        try:
            return await self._answer(call, request)
        finally:
            call.done = True
            await self._notify()

    async def _answer(self, call: Call, request: web.Request) -> web.StreamResponse:
        method, params, files = call.method, call.params, call.files
        if method == "getUpdates":
            await self._notify()  # a long poll began
        failure = self._failures[method].popleft() if self._failures[method] else None
        if failure is None and method in SEND_METHODS | EDIT_METHODS and _chat_id(params) in self.blocked:
            failure = _Failure(403, "Forbidden: bot was blocked by the user")
        if failure is not None:
            call.failed = True
            if failure.drop:
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError("dropped by the fake")
            return _error(failure.status, failure.description, failure.retry_after)
        handler = getattr(self, "_m_" + method, None)
        if handler is None:
            call.failed = True
            return _error(404, "Not Found: method not found")
        try:
            if method in SEND_METHODS | EDIT_METHODS:
                self._check_chat_rules(method, params)
            if method == "getUpdates":
                # Bot API, getUpdates: one reader per token; a new request ends the one being
                # held with 409 "terminated by other getUpdates request".
                for other in self._polls:
                    other["terminated"] = True
                poll = {"terminated": False}
                self._polls.append(poll)
                await self._notify()
                try:
                    params["_poll"] = poll
                    result = await handler(params, files)
                finally:
                    params.pop("_poll", None)
                    self._polls.remove(poll)
            else:
                result = await handler(params, files)
            if self._slow[method]:
                await asyncio.sleep(self._slow[method].popleft())
        except _ApiError as exc:
            call.failed = True
            return _error(exc.status, exc.description, exc.retry_after, exc.migrate_to)
        return web.json_response({"ok": True, "result": result})

    def _check_chat_rules(self, method: str, params: dict[str, Any]) -> None:
        """What Telegram checks about the chat before it takes a message or an edit."""
        chat_id = _chat_id(params)
        if chat_id in self.migrated:
            # Bot API, ResponseParameters.migrate_to_chat_id: "The group has been migrated to a
            # supergroup with the specified identifier"; PTB raises ChatMigrated.
            raise _ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to=self.migrated[chat_id])
        if chat_id > 0 and chat_id not in self._started and chat_id not in self.blocked and chat_id in self._known_users:
            # A member who never opened a private chat with the bot: 403, not 400.
            raise _ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        thread = params.get("message_thread_id")
        if thread is not None and method in SEND_METHODS:
            if int(thread) not in self.forum_topics.get(chat_id, set()):
                raise _ApiError(400, "Bad Request: message thread not found")
            if (chat_id, int(thread)) in self.closed_topics:
                raise _ApiError(400, "Bad Request: TOPIC_CLOSED")
        if method in ("sendPhoto", "sendMediaGroup") and chat_id in self.no_media_rights:
            raise _ApiError(400, "Bad Request: not enough rights to send photos to the chat")
        if method == "sendDocument" and chat_id in self.no_media_rights:
            raise _ApiError(400, "Bad Request: not enough rights to send documents to the chat")
        if "text" in params and len(str(params["text"])) > TEXT_LIMIT:
            raise _ApiError(400, "Bad Request: message is too long")
        _check_inline_keyboard(params.get("reply_markup"))
        captions = [params.get("caption")] + [m.get("caption") for m in params.get("media") or [] if isinstance(m, dict)]
        if any(c is not None and len(str(c)) > CAPTION_LIMIT for c in captions):
            raise _ApiError(400, "Bad Request: message caption is too long")
        if self.flood_control:
            self._count_flood(chat_id)

    def _count_flood(self, chat_id: int) -> None:
        """Bot API FAQ: "avoid sending more than one message per second" in a chat, "no more
        than 20 messages per minute" in a group, "about 30 messages per second" overall; past
        that a 429 with parameters.retry_after. An album counts once here (lenient: Telegram
        may count its items)."""
        now = time.monotonic()
        windows: list[tuple[tuple[Any, ...], float, int]] = [(("all",), 1.0, 30)]
        if chat_id < 0:
            windows.append(((chat_id,), 60.0, 20))
        elif self.private_flood_control:
            windows.append(((chat_id,), 1.0, 1))
        for key, span, most in windows:
            stamps = self._sent_at[key]
            while stamps and stamps[0] <= now - span:
                stamps.popleft()
            if len(stamps) >= most:
                retry = max(1, int(stamps[0] + span - now + 0.999))
                raise _ApiError(429, f"Too Many Requests: retry after {retry}", retry_after=retry)
        for key, _, _ in windows:
            self._sent_at[key].append(now)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        for stored in self.files.values():
            if stored.path == path:
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return web.Response(status=404)

    # Methods ---------------------------------------------------------------------------------

    async def _m_getMe(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": self.can_read_all_group_messages,
                "supports_inline_queries": False}  # fmt: skip

    async def _m_deleteWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.webhook = None
        return True

    async def _m_setWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        from urllib.parse import urlsplit

        url = urlsplit(str(params.get("url") or ""))
        if self.local_mode and url.scheme in ("http", "https"):
            self.webhook = params
            return True
        # Bot API, setWebhook: "HTTPS URL to send updates to"; "Ports currently supported for
        # webhooks: 443, 80, 88, 8443".
        if url.scheme != "https":
            raise _ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if (url.port or 443) not in WEBHOOK_PORTS:
            raise _ApiError(400, "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        self.webhook = params
        return True

    async def _m_getWebhookInfo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        # Bot API WebhookInfo: url is "" while polling; last_error_* only after a failed delivery.
        info: dict[str, Any] = {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                                "pending_update_count": 0}  # fmt: skip
        if self.webhook and self.webhook_error:
            info.update(last_error_date=int(time.time()), last_error_message=self.webhook_error)
        return info

    async def _m_setMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        # Bot API, setMyCommands: "commands: A JSON-serialized list of bot commands ... At most 100
        # commands can be specified"; BotCommand.command: "Text of the command; 1-32 characters.
        # Can contain only lowercase English letters, digits and underscores", description:
        # "1-256 characters"; language_code: "A two-letter ISO 639-1 language code. If empty,
        # commands will be applied to all users from the given scope, for whose language there
        # are no dedicated commands". (The error texts are this fake's; Telegram's name the field.)
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _ApiError(400, "Bad Request: commands must be a list of at most 100 commands")
        for command in commands:
            name, description = command.get("command"), command.get("description")
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        language = params.get("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise _ApiError(400, "Bad Request: LANG_CODE_INVALID")
        self.my_commands[(json.dumps(params.get("scope") or {"type": "default"}, sort_keys=True), language)] = commands
        return True

    async def _m_getUpdates(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if self.webhook:
            raise _ApiError(409, "Conflict: can't use getUpdates method while webhook is active")
        poll = params.get("_poll") or {"terminated": False}
        conflict = _ApiError(409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running")
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates and timeout > 0 and not self.closed:
            try:
                async with self._changed:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self._updates) or self.closed or poll["terminated"]), timeout
                    )
            except asyncio.TimeoutError:
                pass
        if poll["terminated"]:
            raise conflict
        return self._updates[:limit]

    async def _m_getFile(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        stored = self.files.get(str(params.get("file_id")))
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        if stored.size > self.download_limit:
            raise _ApiError(400, "Bad Request: file is too big")
        return {"file_id": stored.file_id, "file_unique_id": "u" + stored.file_id, "file_size": stored.size,
                "file_path": stored.path}  # fmt: skip

    async def _m_sendMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self._bot_message(params, text=str(params["text"]))

    async def _m_sendPhoto(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self._bot_message(params, photo=self._media(params.get("photo"), files, "photo", photo=True))

    async def _m_sendDocument(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        file_id = self._media(params.get("document"), files, "document", photo=False)
        stored = self.files[file_id]
        name = _filename(files, "document") or "file"
        if _is_webp(stored.data) and not params.get("disable_content_type_detection"):
            # Telegram detects a WebP document and sends it as a sticker (Bot API, sendDocument:
            # disable_content_type_detection "Disables automatic server-side content type detection").
            return self._bot_message(params, sticker={"file_id": file_id, "file_unique_id": "u" + file_id, "type": "regular",
                                                      "width": 512, "height": 512, "is_animated": False, "is_video": False})  # fmt: skip
        return self._bot_message(params, document={"file_id": file_id, "file_unique_id": "u" + file_id,
                                                   "file_name": name, "file_size": stored.size})  # fmt: skip

    async def _m_sendMediaGroup(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _ApiError(400, "Bad Request: wrong number of media in the album")
        self._reply_target(params)  # fail before anything is "sent"
        group_id = str(next(self._group_ids))
        kinds = {item.get("type") for item in media}
        if not kinds <= {"photo", "document"}:
            raise _ApiError(400, "Bad Request: this fake only takes photo and document albums")
        if len(kinds) > 1:
            # Bot API, sendMediaGroup / InputMediaDocument: "Documents and audio files can be
            # only grouped in an album with messages of the same type."
            raise _ApiError(400, "Bad Request: MEDIA_INVALID: documents can be grouped only with documents")
        prepared: list[tuple[dict[str, Any], Any]] = []
        for item in media:
            if item["type"] == "photo":
                content: dict[str, Any] = {"photo": self._media(item["media"], files, None, photo=True)}
            else:
                file_id = self._media(item["media"], files, None, photo=False)
                ref = str(item["media"])
                name = _filename(files, ref[len("attach://"):]) if ref.startswith("attach://") else None
                content = {"document": {"file_id": file_id, "file_unique_id": "u" + file_id,
                                        "file_name": name or "file", "file_size": self.files[file_id].size}}  # fmt: skip
            prepared.append((content, item.get("caption")))
        out = []
        for content, caption in prepared:
            extra: dict[str, Any] = {**content, "media_group_id": group_id}
            if caption is not None:
                extra["caption"] = caption
            out.append(self._bot_message(params, **extra))
        return out

    async def _m_editMessageText(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        msg = self._bot_owned(params, "edit")
        markup = params.get("reply_markup")
        if msg.get("text") == params["text"] and msg.get("reply_markup") == markup:
            raise _ApiError(400, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message")
        msg["text"] = str(params["text"])
        msg["edit_date"] = int(time.time())
        _set_markup(msg, markup)
        return msg

    async def _m_editMessageReplyMarkup(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        msg = self._bot_owned(params, "edit")
        _set_markup(msg, params.get("reply_markup"))
        return msg

    async def _m_deleteMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        msg = self._bot_owned(params, "delete")
        self.deleted.add((msg["chat"]["id"], msg["message_id"]))
        return True

    async def _m_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        query = self._queries.get(str(params.get("callback_query_id")))
        # Bot API, answerCallbackQuery: one answer per query, and only while it is fresh.
        if query is None or query["answered"] is not None:
            raise _ApiError(400, ANSWER_EXPIRED)
        if time.monotonic() - query["pressed_at"] > CALLBACK_QUERY_TTL_S:
            raise _ApiError(400, ANSWER_EXPIRED)
        if len(str(params.get("text") or "")) > CALLBACK_ANSWER_LIMIT:
            raise _ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        query["answered"] = {"text": params.get("text"), "show_alert": bool(params.get("show_alert"))}
        return True

    async def _m_sendInvoice(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        _check_invoice(params)
        prices = params.get("prices") or []
        if params.get("currency") == "XTR" and (len(prices) != 1 or params.get("provider_token") not in ("", None)):
            raise _ApiError(400, "Bad Request: Stars invoices take one price and an empty provider_token")
        invoice = {"title": params["title"], "description": params["description"], "start_parameter": "",
                   "currency": params["currency"], "total_amount": sum(p["amount"] for p in prices)}  # fmt: skip
        return self._bot_message(params, invoice=invoice)

    async def _m_createInvoiceLink(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        _check_invoice(params)
        prices = params.get("prices") or []
        if params.get("subscription_period") not in (None, 2592000):
            raise _ApiError(400, "Bad Request: SUBSCRIPTION_PERIOD_INVALID")
        if params.get("currency") == "XTR" and len(prices) != 1:
            raise _ApiError(400, "Bad Request: Stars invoices take one price")
        link = f"https://t.me/$invoice{len(self.invoice_links) + 1}"
        self.invoice_links[link] = params
        return link

    async def _m_answerPreCheckoutQuery(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if not params.get("ok") and not params.get("error_message"):
            raise _ApiError(400, "Bad Request: error_message is required when ok is false")
        query_id = str(params.get("pre_checkout_query_id"))
        query = self._pre_checkouts.get(query_id)
        if query is None or query["answered"] is not None:
            raise _ApiError(400, ANSWER_EXPIRED)
        after = time.monotonic() - query["pushed_at"]
        if after > PRE_CHECKOUT_DEADLINE_S:
            # Bot API, answerPreCheckoutQuery: "must receive an answer within 10 seconds after
            # the pre-checkout query was sent"; past that Telegram has cancelled the payment.
            self.cancelled_payments.append(query_id)
            raise _ApiError(400, ANSWER_EXPIRED)
        query["answered"] = {"ok": bool(params.get("ok")), "after_s": after}
        return True

    async def _m_refundStarPayment(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        charge = str(params.get("telegram_payment_charge_id"))
        if self.charges.get(charge) != int(params.get("user_id", 0)):
            raise _ApiError(400, "Bad Request: CHARGE_NOT_FOUND")
        if charge in self.refunded:
            raise _ApiError(400, "Bad Request: CHARGE_ALREADY_REFUNDED")
        self.refunded.add(charge)
        self.refund_outside(charge)  # Telegram tells the bot of every refund, its own included
        return True

    async def _m_editUserStarSubscription(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        charge = str(params.get("telegram_payment_charge_id"))
        paid = self.payments.get(charge)
        if self.charges.get(charge) != int(params.get("user_id", 0)) or paid is None:
            raise _ApiError(400, "Bad Request: CHARGE_NOT_FOUND")
        if paid.get("subscription_expiration_date") is None:
            raise _ApiError(400, "Bad Request: SUBSCRIPTION_NOT_FOUND")  # not a subscription payment
        if params.get("is_canceled"):
            self.cancelled_subscriptions.add(charge)
        else:
            self.cancelled_subscriptions.discard(charge)
        return True

    # Helpers ---------------------------------------------------------------------------------

    def _bot_owned(self, params: dict[str, Any], verb: str) -> dict[str, Any]:
        key = (_chat_id(params), int(params.get("message_id", 0)))
        msg = self.messages.get(key)
        if msg is None or key in self.deleted:
            raise _ApiError(400, f"Bad Request: message to {verb} not found")
        if msg["from"].get("id") != self.bot_id and verb == "edit":
            raise _ApiError(400, "Bad Request: message can't be edited")
        return msg

    def _reply_target(self, params: dict[str, Any]) -> dict[str, Any] | None:
        chat_id = _chat_id(params)
        reply = params.get("reply_parameters") or {}
        message_id = reply.get("message_id") or params.get("reply_to_message_id")
        if not message_id:
            return None
        target = self.messages.get((chat_id, int(message_id)))
        if target is None or (chat_id, int(message_id)) in self.deleted:
            allow = reply.get("allow_sending_without_reply", params.get("allow_sending_without_reply", False))
            if allow:
                return None
            raise _ApiError(400, "Bad Request: message to be replied not found")
        return target

    def _bot_message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = _chat_id(params)
        chat = next((m["chat"] for (c, _), m in self.messages.items() if c == chat_id), None)
        if chat is None:
            raise _ApiError(400, "Bad Request: chat not found")
        self.other_bot_spoke_last.discard(chat_id)
        target = self._reply_target(params)
        msg: dict[str, Any] = {"message_id": next(self._message_ids[chat_id]), "date": int(time.time()),
                               "chat": chat, "from": self.bot_user, **content}  # fmt: skip
        if target is not None:
            msg["reply_to_message"] = _shallow(target)
        _set_markup(msg, params.get("reply_markup"))
        if "caption" in params and "caption" not in msg:
            msg["caption"] = params["caption"]
        if params.get("message_thread_id") is not None:
            msg["message_thread_id"] = int(params["message_thread_id"])
            msg["is_topic_message"] = True
        self.messages[(chat_id, msg["message_id"])] = msg
        return msg

    def _media(self, value: Any, files: dict[str, bytes], part: str | None, *, photo: bool) -> Any:
        """Resolve a file_id, an attach://name or an uploaded part; photos get sizes."""
        data: bytes | None = None
        if isinstance(value, str) and value.startswith("attach://"):
            data = files.get(value[len("attach://"):])
            if data is None:
                raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        elif isinstance(value, str) and value:
            stored = self.files.get(value)
            if stored is None:
                raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
            if photo and stored.kind != "photo":
                # A file_id keeps its type: a document's cannot be sent as InputMediaPhoto.
                raise _ApiError(400, "Bad Request: can't use file of type Document as Photo")
            if photo:
                return self._photo_sizes(stored.data, stored.size)
            return value
        elif part is not None and part in files:
            data = files[part]
        if data is None:
            raise _ApiError(400, "Bad Request: there is no file in the request")
        if photo:
            if len(data) > self.photo_upload_limit:
                raise _ApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
            try:
                sizes = self._photo_sizes(data)
            except Exception:
                raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from None
            # Bot API, sendPhoto: "The photo's width and height must not exceed 10000 in total.
            # Width and height ratio must be at most 20."
            width, height = sizes[-1]["width"], sizes[-1]["height"]
            if width + height > 10_000 or max(width, height) > 20 * min(width, height):
                raise _ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
            return sizes
        if len(data) > self.document_upload_limit:
            # Bot API, sendDocument: at most 50 MB a file for bots; bigger is 413 from the server.
            raise _ApiError(413, "Request Entity Too Large")
        return self.add_file(data, kind="document")


class _ApiError(Exception):
    def __init__(self, status: int, description: str, *, retry_after: int | None = None, migrate_to: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after
        self.migrate_to = migrate_to


def _error(status: int, description: str, retry_after: int | None = None, migrate_to: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    parameters: dict[str, Any] = {}
    if retry_after is not None:
        parameters["retry_after"] = retry_after
    if migrate_to is not None:
        parameters["migrate_to_chat_id"] = migrate_to
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


def _is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _check_invoice(params: dict[str, Any]) -> None:
    """Bot API, sendInvoice / createInvoiceLink: title 1-32 characters, description 1-255,
    payload 1-128 bytes; subscription_period only for Stars (XTR), at most 10000 Stars."""
    if not 1 <= len(str(params.get("title") or "")) <= 32:
        raise _ApiError(400, "Bad Request: INVOICE_TITLE_INVALID")
    if not 1 <= len(str(params.get("description") or "")) <= 255:
        raise _ApiError(400, "Bad Request: INVOICE_DESCRIPTION_INVALID")
    if not 1 <= len(str(params.get("payload") or "").encode()) <= 128:
        raise _ApiError(400, "Bad Request: INVOICE_PAYLOAD_INVALID")
    if params.get("subscription_period") is not None:
        amount = sum(p["amount"] for p in params.get("prices") or [])
        if params.get("currency") != "XTR" or amount > 10000:
            raise _ApiError(400, "Bad Request: SUBSCRIPTION_PERIOD_INVALID")


def _decode(key: str, value: str) -> Any:
    if key in _STRING_KEYS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    params: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    ctype = request.content_type
    if ctype.startswith("multipart/"):
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            data = await part.read()  # type: ignore[union-attr]
            if part.filename is not None:  # type: ignore[union-attr]
                files[part.name] = bytes(data)  # type: ignore[union-attr,index]
                files.setdefault(f"{part.name}#filename", part.filename.encode())  # type: ignore[union-attr,index]
            else:
                params[part.name] = _decode(part.name, data.decode())  # type: ignore[union-attr,arg-type]
    elif ctype == "application/json":
        params = await request.json()
    else:
        form = await request.post()
        params = {k: _decode(k, str(v)) for k, v in form.items()}
        params.update({k: _decode(k, v) for k, v in request.query.items()})
    return params, files


def _filename(files: dict[str, bytes], part: str) -> str | None:
    raw = files.get(f"{part}#filename")
    return raw.decode() if raw else None


def _chat_id(params: dict[str, Any]) -> int:
    try:
        return int(params.get("chat_id", 0))
    except (TypeError, ValueError):
        return 0


def _check_inline_keyboard(markup: Any) -> None:
    """Bot API, InlineKeyboardButton: exactly one optional field per button; callback_data is
    1-64 bytes; url is an HTTP(S) or tg:// address. Telegram refuses a link it will not open
    (BUTTON_URL_INVALID); this fake refuses loopback and private addresses too, which a member's
    phone could never open (stricter than Telegram, never more lenient)."""
    if isinstance(markup, str):
        markup = json.loads(markup)
    for row in (markup or {}).get("inline_keyboard", []) if isinstance(markup, dict) else []:
        for button in row:
            kinds = [k for k in button if k != "text"]
            if len(kinds) != 1:
                raise _ApiError(400, "Bad Request: can't parse inline keyboard button: exactly one field is expected")
            copy = button.get("copy_text")
            if copy is not None and not (isinstance(copy, dict) and 1 <= len(str(copy.get("text") or "")) <= 256):
                raise _ApiError(400, "Bad Request: BUTTON_COPY_TEXT_INVALID")  # CopyTextButton: 1-256 characters
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            url = button.get("url")
            if url is not None:
                parts = urlsplit(str(url))
                host = (parts.hostname or "").lower()
                private = host == "localhost" or _is_private_ip(host)
                if parts.scheme not in ("http", "https", "tg") or (parts.scheme != "tg" and (not host or private)):
                    raise _ApiError(400, "Bad Request: BUTTON_URL_INVALID")


def _is_private_ip(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def _set_markup(msg: dict[str, Any], markup: Any) -> None:
    if markup:
        msg["reply_markup"] = markup
    else:
        msg.pop("reply_markup", None)


def _shallow(msg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if k != "reply_to_message"}


def _command_entities(text: str) -> list[dict[str, Any]]:
    if not text.startswith("/"):
        return []
    length = len(text.split(None, 1)[0]) if text.strip() else 1
    return [{"type": "bot_command", "offset": 0, "length": length}]


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The inline buttons of a message, flattened."""
    markup = message.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]
