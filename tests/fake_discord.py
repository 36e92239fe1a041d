"""A fake Discord: REST API + gateway on 127.0.0.1, enough for discord.py 2.7 to run a bot.

The bot under test is the real discord.py client, pointed here with `api_base` and
`gateway_url`. The fake records every REST call (`calls`) and every gateway frame the bot sent
(`gateway_frames`) so tests assert on what the bot did; tests drive it by dispatching gateway
events (`slash`, `context_menu`, `modal_submit`, `click`, `message_create`), injecting errors
into any route (`fail`), expiring interaction tokens after 15 minutes on a clock the test owns,
and forcing the gateway to reconnect (`force_reconnect`, which resumes at READY's own
`resume_gateway_url`). Rate limits are off unless a test asks: per-route buckets with
`X-RateLimit-*` headers (`rate_limit`) and the global limit (`global_rate_limit`), both
answering 429s as Discord does. `RecordingProxy` is an HTTP proxy that records what went
through it.

Wire facts discord.py depends on (see /work/shared/NOTES.md): JSON answers carry exactly
`Content-Type: application/json`; the interaction callback answers
`{"interaction": ..., "resource": ...}`; a 429 needs a `Via` header and `retry_after` in the body.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import WSMsgType, web

API = "/api/v10"
TOKEN_TTL_S = 15 * 60
# "Interaction tokens are valid for 15 minutes ... you must send an initial response within 3
# seconds of receiving the event. If the 3 second deadline is exceeded, the token will be
# invalidated." (discord-api-docs, Receiving and Responding): past it the callback is 10062.
RESPONSE_DEADLINE_S = 3.0
DEFAULT_SIZE_LIMIT = 10 * 1024 * 1024
DISCORD_EPOCH_MS = 1420070400000  # the first millisecond of 2015: snowflake time 0 (discord-api-docs, Snowflakes)

MAX_CONTENT_CHARS = 2000  # discord-api-docs, Create Message: content "up to 2000 characters"
MAX_FILES = 10  # discord-api-docs, Create Message / Create Followup Message: "files[n]" up to 10 per message
# discord-api-docs, Message Components (legacy layout): at most 5 action rows a message, at most
# 5 buttons a row; Button: "custom_id: max 100 characters", "label: max 80 characters".
MAX_ROWS = 5
MAX_ROW_BUTTONS = 5
MAX_CUSTOM_ID = 100
MAX_LABEL = 80
DM_SIZE_LIMIT = 10 * 1024 * 1024  # a bot's uploads in DMs: the default 10 MiB (no server boost applies)

# Gateway intents (discord-api-docs, Gateway Intents)
GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12
MESSAGE_CONTENT = 1 << 15

# Message flags
EPHEMERAL = 64
LOADING = 128


@dataclass
class Call:
    method: str
    path: str  # without the /api/v10 prefix
    json: Any = None  # the JSON body, or the multipart "payload_json"
    files: list[tuple[str, bytes, str]] = field(default_factory=list)  # (filename, bytes, content type)
    query: dict[str, str] = field(default_factory=dict)
    status: int = 200  # what the fake answered
    headers: dict[str, str] = field(default_factory=dict)  # the rate-limit headers of the answer
    at: float = 0.0  # loop time it arrived

    @property
    def content(self) -> str | None:
        return (self.json or {}).get("content") if isinstance(self.json, dict) else None

    @property
    def flags(self) -> int:
        if not isinstance(self.json, dict):
            return 0
        return int(self.json.get("flags") or (self.json.get("data") or {}).get("flags") or 0)

    @property
    def custom_ids(self) -> list[str]:
        """The custom_id of every component in the body (buttons of a message, inputs of a modal)."""
        body = self.json if isinstance(self.json, dict) else {}
        if "data" in body and isinstance(body["data"], dict) and "components" in body["data"]:
            body = body["data"]
        return [c["custom_id"] for c in _walk_components(body.get("components") or []) if "custom_id" in c]


@dataclass
class Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: dict[str, Any]
    times: int  # how many matching calls fail; -1 = all
    headers: dict[str, str]
    when: Callable[[Call], bool] | None = None


@dataclass
class RateBucket:
    """A per-route rate limit as Discord keeps it (discord-api-docs, Topics > Rate Limits): `limit`
    requests per `window_s` for each top-level resource (channel id, guild id, webhook id +
    token) of the routes it covers; several routes may share one bucket, which the
    `X-RateLimit-Bucket` header names. A window starts with its first request."""

    name: str
    routes: list[tuple[str, re.Pattern[str]]]  # (method, path pattern)
    limit: int
    window_s: float
    # What X-RateLimit-Limit says when it is more than `limit`: a sub-limit, where Discord answers
    # 429 although the headers still show requests remaining (discord-api-docs issue 2190, cited
    # in discord.py's http.py: "Remaining > 0 and 429 means that a sub ratelimit was hit").
    shown_limit: int | None = None
    windows: dict[str, list[float]] = field(default_factory=dict)  # top-level resource -> [start, count]


def _top_level(path: str) -> str:
    """The top-level resource of a path, which rate limits count separately ("Top-level resources
    are currently limited to channels (channel_id), guilds (guild_id), and webhooks (webhook_id or
    webhook_id + webhook_token)": discord-api-docs, Rate Limits)."""
    parts = path.strip("/").split("/")
    if parts[0] in ("channels", "guilds") and len(parts) > 1:
        return "/".join(parts[:2])
    if parts[0] in ("webhooks", "interactions") and len(parts) > 2:
        return "/".join(parts[:3])
    return ""


def _walk_components(components: list[dict[str, Any]]):
    for component in components:
        yield component
        yield from _walk_components(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            yield from _walk_components([component["component"]])


# Discord's snowflakes never repeat; a second FakeDiscord in one test (a restart) must not hand
# out the first one's ids again, or the bot would take a new interaction for an old one.
_SNOWFLAKES = itertools.count(900_000_000_000_000_001)


class FakeDiscord:
    def __init__(self, *, clock: Any = None, app_id: int = 4242, bot_id: int = 4242, size_limit: int = DEFAULT_SIZE_LIMIT):
        self.user_entitlements: dict[int, list[dict[str, Any]]] = {}  # sent with each interaction of that user
        # Each user's Discord language, sent as the interaction's `locale` (discord-api-docs,
        # Interaction Object: "locale: Selected language of the invoking user"); default en-US.
        self.user_locales: dict[int, str] = {}
        self.entitlements: dict[int, dict[str, Any]] = {}  # the application's, as GET .../entitlements lists them
        self.skus: dict[int, dict[str, Any]] = {}  # the application's SKUs (GET .../skus)
        self.clock = clock  # with now(): interaction tokens expire TOKEN_TTL_S after they were dispatched
        self.app_id = app_id
        self.app_flags = 0  # oauth2/applications/@me flags: 1 << 18 / 1 << 19 grant the message-content intent
        self.guild_permissions: dict[int, int] = {}  # servers the bot is in -> its permission bits there
        self.bot_user = {"id": str(bot_id), "username": "restyle", "discriminator": "0", "avatar": None, "bot": True,
                         "global_name": "Restyle"}  # fmt: skip
        self.size_limit = size_limit
        self.response_deadline_s = RESPONSE_DEADLINE_S  # real (loop) seconds; a test may shorten it
        self.calls: list[Call] = []
        self.failures: list[Failure] = []
        self.slow: list[list[Any]] = []  # [method, pattern, seconds, times]: done at once, answered late
        self.buckets: list[RateBucket] = []  # per-route rate limits (rate_limit()); none unless a test asks
        self.global_limit: RateBucket | None = None  # the bot's global rate limit (global_rate_limit())
        self.files: dict[str, tuple[bytes, str]] = {}  # served at /files/<name>
        self.messages: dict[int, dict[str, Any]] = {}
        self.deleted_channels: set[int] = set()
        self.archived_threads: set[int] = set()  # posting there: 400 50083
        self.bot_absent_channels: set[int] = set()  # channels of servers the bot is not in: 403 50001
        self.threads: dict[int, dict[str, Any]] = {}  # thread id -> its channel payload (see thread())
        self.denied: dict[int, set[str]] = {}  # channel id -> permissions the bot lacks there
        self.closed_dms: set[int] = set()  # users who do not accept DMs from the bot: 50007
        self.channel_size_limits: dict[int, int] = {}  # upload limit per channel (default size_limit)
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "global" or guild id -> synced commands
        self.gateway_frames: list[dict[str, Any]] = []  # what the bot sent on the gateway
        self.identifies = 0
        self.intents = 0  # what the bot's last IDENTIFY asked for
        self.message_content_allowed = True  # the Developer Portal switch for the privileged intent
        self.resumes = 0
        self.gateway_paths: list[str] = []  # the path of every gateway connection: "/" first, "/resume" after
        # The callback's answer may lack response_message_id (optional in discord-api-docs,
        # Interaction Callback Object): the bot then knows its response only as @original.
        self.hide_response_message_id = False
        self._ids = _SNOWFLAKES  # shared: Discord's ids are unique across restarts, so are the fakes'
        self._tokens: dict[str, dict[str, Any]] = {}  # interaction token -> {created, original message id, ...}
        self._ws: web.WebSocketResponse | None = None  # the newest session
        self._connected = asyncio.Event()
        # Every identified session and its [shard_id, shard_count]: Discord sends each event to
        # every session of the shard it belongs to (so two front ends on one token and shard both
        # get everything); a guild's shard is (guild_id >> 22) % shard_count, and DMs come on
        # shard 0 (discord-api-docs, Gateway: Sharding).
        self._live: dict[web.WebSocketResponse, tuple[int, int]] = {}
        self.sessions_identified: list[tuple[int, int]] = []  # the shard of each IDENTIFY
        self.identified_at: list[float] = []  # time.monotonic() of each, in the same order
        self.unheard: list[dict[str, Any]] = []  # events dispatched while no session had their shard
        # Servers the bot is in: a session may carry at most 2,500 (close code 4011 "Sharding
        # required"), and GET /gateway/bot recommends one shard per 1,000 (discord-api-docs,
        # Gateway: Sharding, and Opcodes and Status Codes).
        self.guild_count = 1
        self._seq = 0
        self._session_id = "fake-session"
        self._sent: list[tuple[int, dict[str, Any]]] = []  # (seq, frame) for RESUME replays
        self._runner: web.AppRunner | None = None
        self.port = 0

    # Life --------------------------------------------------------------------------------------

    async def start(self) -> "FakeDiscord":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/", self._gateway)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/resume", self._gateway)  # READY's resume_gateway_url: not where the bot first connected
        app.router.add_get("/files/{name}", self._file)
        app.router.add_route("*", API + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        for ws in [self._ws, *self._live]:
            if ws is not None and not ws.closed:
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.url + API

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/resume"

    def new_id(self) -> int:
        return next(self._ids)

    def _snowflake_at(self, t: float) -> int:
        """A unique snowflake whose timestamp is `t` (the low 22 bits, worker/process/increment, from the shared counter)."""
        return ((int(t * 1000) - DISCORD_EPOCH_MS) << 22) | (next(self._ids) & 0x3FFFFF)

    def now(self) -> float:
        return self.clock.now() if self.clock is not None else 0.0

    # Test controls -----------------------------------------------------------------------------

    def fail(self, method: str, path_regex: str, status: int, *, times: int = 1, retry_after: float = 0.05,
             code: int = 0, message: str = "", when: Callable[[Call], bool] | None = None) -> None:  # fmt: skip
        """The next `times` calls of `method` whose path matches `path_regex` (and `when`, given the
        call) get `status`."""
        headers: dict[str, str] = {}
        body: dict[str, Any] = {"message": message or {403: "Missing Permissions", 404: "Unknown Channel",
                                                        429: "You are being rate limited."}.get(status, "error"),
                                "code": code or {403: 50013, 404: 10003}.get(status, 0)}  # fmt: skip
        if status == 429:
            body = {"message": body["message"], "retry_after": retry_after, "global": False}
            headers = {"Retry-After": str(retry_after), "X-RateLimit-Scope": "user"}
        self.failures.append(Failure(method.upper(), re.compile(path_regex), status, body, times, headers, when))

    def rate_limit(self, bucket: str, routes: list[tuple[str, str]], *, limit: int, window_s: float,
                   shown_limit: int | None = None) -> RateBucket:  # fmt: skip
        """A per-route bucket named `bucket` over `routes` ((method, path regex) pairs, sharing it):
        each answer there carries `X-RateLimit-Limit / -Remaining / -Reset / -Reset-After / -Bucket`,
        and a request past `limit` within `window_s` of its resource's first one gets a 429 with
        `retry_after` (the rest of the window), `global: false`, `X-RateLimit-Scope: user`, and
        is not carried out (discord-api-docs, Rate Limits: Header Format, Exceeding A Rate Limit)."""
        made = RateBucket(bucket, [(m.upper(), re.compile(r)) for m, r in routes], limit, window_s, shown_limit=shown_limit)
        self.buckets.append(made)
        return made

    def global_rate_limit(self, *, limit: int, window_s: float) -> RateBucket:
        """The bot's global limit: `limit` requests per `window_s` over every route of the bot
        token (Discord's is 50 per second); past it a 429 with `global: true`,
        `X-RateLimit-Global: true` and `X-RateLimit-Scope: global`. "Interaction endpoints are not
        bound to the bot's Global Rate Limit" (discord-api-docs, Rate Limits: Global Rate Limit),
        so interaction callbacks and the interaction webhooks do not count."""
        self.global_limit = RateBucket("global", [("*", re.compile(""))], limit, window_s)
        return self.global_limit

    def answer_late(self, method: str, path_regex: str, seconds: float, *, times: int = 1) -> None:
        """The next `times` matching calls take effect at once but are answered after `seconds`:
        a client that gives up first cannot tell whether its message was posted."""
        self.slow.append([method.upper(), re.compile(path_regex), seconds, times])

    def serve_file(self, name: str, data: bytes, content_type: str = "image/png") -> str:
        self.files[name] = (data, content_type)
        return f"{self.url}/files/{name}"

    def thread(self, parent_id: int, *, guild_id: int = 777, forum: bool = False, archived: bool = False) -> int:
        """A thread under `parent_id` (a forum post when `forum`: a thread in a forum channel, type 15);
        interactions in it carry the thread as their channel, with its `parent_id` (discord-api-docs,
        Channel Object: threads). Posting in an archived one is 50083."""
        thread_id = self.new_id()
        self.threads[thread_id] = {
            "id": str(thread_id), "type": 11, "guild_id": str(guild_id), "parent_id": str(parent_id),
            "owner_id": "1001", "name": "a post" if forum else "a thread", "message_count": 1, "member_count": 1,
            "rate_limit_per_user": 0, "flags": 0, "applied_tags": [],
            "thread_metadata": {"archived": archived, "auto_archive_duration": 1440, "locked": False,
                                "archive_timestamp": "2027-01-15T12:00:00.000000+00:00"},
        }  # fmt: skip
        if archived:
            self.archived_threads.add(thread_id)
        return thread_id

    def delete_channel(self, channel_id: int) -> None:
        self.deleted_channels.add(int(channel_id))

    def delete_message(self, message_id: int) -> None:
        self.messages.pop(int(message_id), None)

    def expire_token(self, token: str) -> None:
        self._tokens[token]["expired"] = True

    async def force_reconnect(self, *, op7: bool = True) -> None:
        """Tell the bot to reconnect (op 7 RECONNECT), or drop the socket (close code 4000)."""
        ws = self._ws
        assert ws is not None
        self._live.pop(ws, None)
        self._connected.clear()
        if op7:
            await ws.send_str(json.dumps({"op": 7, "d": None, "s": None, "t": None}))
        else:
            await ws.close(code=4000, message=b"fake reset")

    async def wait_connected(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
        """Poll until predicate() is truthy; returns its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}; calls: {self.summary()}")
            await asyncio.sleep(0.01)

    def summary(self) -> list[str]:
        return [f"{c.method} {c.path} -> {c.status}" for c in self.calls]

    def find(self, method: str, path_regex: str, *, ok: bool = True) -> list[Call]:
        pattern = re.compile(path_regex)
        return [c for c in self.calls if c.method == method and pattern.search(c.path) and (not ok or c.status < 300)]

    # Gateway -------------------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        frame = {"op": 0, "t": event, "s": self._seq, "d": data}
        self._sent.append((self._seq, frame))
        guild_id = data.get("guild_id") if isinstance(data, dict) else None
        heard = 0
        for ws, (shard_id, shard_count) in list(self._live.items()):
            wanted = (int(guild_id) >> 22) % shard_count if guild_id else 0
            if not ws.closed and shard_id == wanted:
                await ws.send_str(json.dumps(frame))
                heard += 1
        if not heard:
            self.unheard.append(frame)
        # else (no session): it is replayed when the bot RESUMEs, like the real gateway

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.gateway_paths.append(request.path)
        self._ws = ws  # older sessions stay open: Discord runs every session a token opens (see dispatch)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            self.gateway_frames.append(frame)
            op = frame.get("op")
            if op == 1:
                await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
            elif op == 2:
                self.identifies += 1
                self.intents = int(frame["d"].get("intents") or 0)
                if self.intents & MESSAGE_CONTENT and not self.message_content_allowed:
                    # "Disallowed intent(s)": a privileged intent not enabled for the app (Gateway close codes)
                    await ws.close(code=4014, message=b"Disallowed intent(s).")
                    break
                shard = [int(x) for x in frame["d"].get("shard") or (0, 1)]
                if self.guild_count / shard[1] > 2500:
                    await ws.close(code=4011, message=b"Sharding required.")
                    break
                self.sessions_identified.append((shard[0], shard[1]))
                self.identified_at.append(time.monotonic())
                self._seq = 0
                self._sent.clear()
                self._live = {w: sh for w, sh in self._live.items() if not w.closed}
                self._connected.set()
                # READY to this session only (not a dispatch: the other sessions have theirs)
                ready = {"op": 0, "t": "READY", "s": 1, "d": {
                    "v": 10,
                    "user": self.bot_user,
                    "guilds": [],
                    "session_id": self._session_id,
                    # Discord names another host to resume at (discord-api-docs, Gateway: Ready
                    # "resume_gateway_url"); discord.py reconnects there after a drop or op 7.
                    "resume_gateway_url": self.resume_gateway_url,
                    "shard": shard,
                    "application": {"id": str(self.app_id), "flags": 0},
                }}  # fmt: skip
                self._seq = 1
                self._sent.append((1, ready))
                await ws.send_str(json.dumps(ready))
                self._live[ws] = (shard[0], shard[1])
            elif op == 6:
                if request.path != "/resume":
                    # a RESUME belongs at resume_gateway_url; elsewhere the session is unknown
                    await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
                    continue
                self.resumes += 1
                last = frame["d"].get("seq") or 0
                self._live[ws] = self._live.get(ws) or (0, 1)
                self._connected.set()
                for seq, sent in list(self._sent):
                    if seq > last:
                        await ws.send_str(json.dumps(sent))
                await self.dispatch("RESUMED", {})
        self._live.pop(ws, None)
        if self._ws is ws:
            self._connected.clear()
        return ws

    # Payloads ------------------------------------------------------------------------------

    def user(self, user_id: int, name: str = "member") -> dict[str, Any]:
        return {"id": str(user_id), "username": name, "discriminator": "0", "avatar": None, "global_name": name}

    def attachment(self, data: bytes, *, filename: str = "photo.png", content_type: str | None = "image/png",
                   size: int | None = None) -> dict[str, Any]:  # fmt: skip
        att_id = self.new_id()
        url = self.serve_file(f"{att_id}-{filename}", data, content_type or "application/octet-stream")
        payload = {"id": str(att_id), "filename": filename, "size": len(data) if size is None else size,
                   "url": url, "proxy_url": url}  # fmt: skip
        if content_type:
            payload["content_type"] = content_type
        return payload

    def message(self, channel_id: int, *, content: str = "", author: dict[str, Any] | None = None,
                attachments: list[dict[str, Any]] | None = None, embeds: list[dict[str, Any]] | None = None,
                guild_id: int | None = None, components: list[dict[str, Any]] | None = None,
                message_id: int | None = None, flags: int = 0, store: bool = True,
                reply_to: dict[str, Any] | None = None, reply_ping: bool = True) -> dict[str, Any]:  # fmt: skip
        """A message. `mentions` is filled as Discord does: every `<@id>` in the content, and, for a
        reply (`reply_to`) that keeps its ping (the client's default), the replied-to author too,
        although the text never names them (discord-api-docs, Message Object: "mentions";
        Message Reference: a reply with the ping on notifies the referenced author)."""
        mentioned = [self.user(int(i)) if str(i) != self.bot_user["id"] else self.bot_user
                     for i in dict.fromkeys(re.findall(r"<@!?(\d+)>", content))]  # fmt: skip
        if reply_to is not None and reply_ping and all(u["id"] != reply_to["author"]["id"] for u in mentioned):
            mentioned.append(reply_to["author"])
        msg = {
            "id": str(message_id or self.new_id()),
            "channel_id": str(channel_id),
            "type": 0,
            "content": content,
            "author": author or self.bot_user,
            "embeds": embeds or [],
            "attachments": attachments or [],
            "mentions": mentioned,
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": "2027-01-15T12:00:00.000000+00:00",
            "edited_timestamp": None,
            "flags": flags,
            "components": components or [],
        }
        if guild_id:
            msg["guild_id"] = str(guild_id)
        if reply_to is not None:
            msg["type"] = 19  # REPLY
            msg["message_reference"] = {"message_id": reply_to["id"], "channel_id": reply_to["channel_id"],
                                        **({"guild_id": str(guild_id)} if guild_id else {})}  # fmt: skip
            msg["referenced_message"] = reply_to
        if store:
            self.messages[int(msg["id"])] = msg
        return msg

    def _interaction(self, itype: int, data: dict[str, Any], *, user_id: int, guild_id: int | None,
                     channel_id: int, message: dict[str, Any] | None = None, name: str = "member",
                     size_limit: int | None = None, user_installed: bool = False,
                     created_ago_s: float = 0.0) -> dict[str, Any]:  # fmt: skip
        # The id is a snowflake of the moment Discord created the interaction, which its token's
        # 15 minutes count from (discord-api-docs, Snowflakes: ms since 2015 << 22); the event may
        # reach the bot a little later (`created_ago_s`, below the 3 s it has to answer).
        assert 0 <= created_ago_s < RESPONSE_DEADLINE_S
        created = self.now() - created_ago_s
        # without a test clock the bot runs on the real one: the snowflake says real time then
        interaction_id = self._snowflake_at(created if self.clock is not None else time.time() - created_ago_s)
        token = f"itoken-{interaction_id}"
        self._tokens[token] = {"created": created, "original": None, "channel_id": channel_id, "guild_id": guild_id,
                               "received": asyncio.get_running_loop().time(), "answered": None, "made": set(),
                               "size_limit": size_limit or self.size_limit}  # fmt: skip
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.app_id),
            "type": itype,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "channel": {"id": str(channel_id), "type": 0 if guild_id else 1, "name": "pictures", "position": 0,
                        "permission_overwrites": [], "nsfw": False},  # fmt: skip
            "app_permissions": "562949953421311",
            "locale": self.user_locales.get(user_id, "en-US"),
            # the invoking user's entitlements in force (discord-api-docs, Interaction Object: entitlements)
            "entitlements": list(self.user_entitlements[user_id] if user_id in self.user_entitlements
                                 else self._list_entitlements({"user_id": str(user_id), "exclude_ended": "1"})),
            "authorizing_integration_owners": ({"1": str(user_id)} if user_installed or not guild_id
                                               else {"0": str(guild_id)}),
            "context": 0 if guild_id else 1,
            "attachment_size_limit": size_limit or self.size_limit,
        }
        user = self.user(user_id, name)
        if channel_id in self.threads:
            payload["channel"] = dict(self.threads[channel_id])
        if user_installed and guild_id:
            # a user-installed app in a server without its bot: only the interaction's webhook
            # reaches the channel; the bot token gets 50001 there (discord-api-docs, Installation
            # Context: "user-installed apps ... can't send messages as the bot")
            self.bot_absent_channels.add(channel_id)
            payload["app_permissions"] = str((1 << 15) | (1 << 14))  # attach files, embed links: via the webhook
        if guild_id:
            payload["guild_id"] = str(guild_id)
            payload["channel"]["guild_id"] = str(guild_id)
            payload["guild_locale"] = "en-US"
            payload["member"] = {"user": user, "roles": [], "joined_at": "2026-01-01T00:00:00+00:00", "deaf": False,
                                 "mute": False, "flags": 0, "permissions": "562949953421311"}  # fmt: skip
        else:
            payload["user"] = user
        if message is not None:
            payload["message"] = message
            self._tokens[token]["message"] = int(message["id"])
        return payload

    async def slash(self, name: str, options: dict[str, Any] | None = None, *, user_id: int = 1001,
                    guild_id: int | None = 777, channel_id: int = 555, attachment: dict[str, Any] | None = None,
                    size_limit: int | None = None, user_installed: bool = False,
                    created_ago_s: float = 0.0) -> dict[str, Any]:  # fmt: skip
        """A slash command. Option types are guessed: a user dict (`user()`) → 6, an attachment dict → 11,
        float → 10, int → 4, str → 3."""
        opts = []
        resolved: dict[str, Any] = {}
        for key, value in (options or {}).items():
            if isinstance(value, dict) and "username" in value:  # a user payload
                opts.append({"name": key, "type": 6, "value": value["id"]})
                resolved.setdefault("users", {})[value["id"]] = value
            elif isinstance(value, dict):  # an attachment payload
                opts.append({"name": key, "type": 11, "value": value["id"]})
                resolved.setdefault("attachments", {})[value["id"]] = value
            elif isinstance(value, bool):
                opts.append({"name": key, "type": 5, "value": value})
            elif isinstance(value, float):
                opts.append({"name": key, "type": 10, "value": value})
            elif isinstance(value, int):
                opts.append({"name": key, "type": 4, "value": value})
            else:
                opts.append({"name": key, "type": 3, "value": value})
        data: dict[str, Any] = {"id": str(self._command_id(name, guild_id)), "name": name, "type": 1, "options": opts}
        if resolved:
            data["resolved"] = resolved
        payload = self._interaction(2, data, user_id=user_id, guild_id=guild_id, channel_id=channel_id,
                                    size_limit=size_limit, user_installed=user_installed, created_ago_s=created_ago_s)  # fmt: skip
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def autocomplete(self, name: str, options: dict[str, Any], focused: str, *, user_id: int = 1001,
                           guild_id: int | None = 777, channel_id: int = 555) -> dict[str, Any]:  # fmt: skip
        opts = []
        for key, value in options.items():
            kind = 10 if isinstance(value, float) else 4 if isinstance(value, int) else 3
            opt = {"name": key, "type": kind, "value": value}
            if key == focused:
                opt["focused"] = True
            opts.append(opt)
        data = {"id": str(self._command_id(name, guild_id)), "name": name, "type": 1, "options": opts}
        payload = self._interaction(4, data, user_id=user_id, guild_id=guild_id, channel_id=channel_id)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def context_menu(self, target: dict[str, Any], *, name: str = "Restyle image", user_id: int = 1001,
                           guild_id: int | None = 777) -> dict[str, Any]:  # fmt: skip
        channel_id = int(target["channel_id"])
        data = {"id": str(self._command_id(name, guild_id)), "name": name, "type": 3, "target_id": target["id"],
                "resolved": {"messages": {target["id"]: target}}}  # fmt: skip
        payload = self._interaction(2, data, user_id=user_id, guild_id=guild_id, channel_id=channel_id)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def modal_submit(self, modal_call: Call, values: dict[str, str], *, user_id: int = 1001,
                           guild_id: int | None = 777, channel_id: int = 555) -> dict[str, Any]:  # fmt: skip
        """Submit the modal the bot opened in `modal_call` (its interaction callback, type 9): each
        Label comes back with its input's value (discord-api-docs, Label: "Modal Submit Interaction
        ... the component it contains")."""
        modal = modal_call.json["data"]
        labels = []
        for component in modal["components"]:
            inner = component.get("component") or {}
            if component.get("type") == 18 and inner.get("type") == 4:
                labels.append({"type": 18, "id": component.get("id", 0), "component": {
                    "type": 4, "id": inner.get("id", 0), "custom_id": inner["custom_id"],
                    "value": values.get(inner["custom_id"], "")}})  # fmt: skip
        data = {"custom_id": modal["custom_id"], "components": labels}
        payload = self._interaction(5, data, user_id=user_id, guild_id=guild_id, channel_id=channel_id)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def click(self, message: dict[str, Any], custom_id: str, *, user_id: int = 1001,
                    guild_id: int | None = 777) -> dict[str, Any]:  # fmt: skip
        """Click the button `custom_id` on `message` (a message dict as the fake stored it)."""
        ids = [c.get("custom_id") for c in _walk_components(message.get("components") or [])]
        assert custom_id in ids, f"{custom_id} is not on the message; it has {ids}"
        data = {"custom_id": custom_id, "component_type": 2}
        payload = self._interaction(3, data, user_id=user_id, guild_id=guild_id, channel_id=int(message["channel_id"]),
                                    message=message)  # fmt: skip
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    def sku(self, sku_id: int, *, kind: int = 5, published: bool = True, name: str = "Pro") -> dict[str, Any]:
        """An SKU of this application, as `GET /applications/{id}/skus` lists it (type 5:
        subscription, 6: its group, 2: durable, 3: consumable; flag 1 << 2: AVAILABLE, i.e.
        published; discord-api-docs SKU Object)."""
        payload = {"id": str(sku_id), "type": kind, "application_id": str(self.app_id), "name": name,
                   "slug": name.lower(), "flags": (1 << 2) if published else 0}  # fmt: skip
        self.skus[int(sku_id)] = payload
        return payload

    def entitlement(self, user_id: int, sku_id: int, *, ends_at: float | None = None, starts_at: float | None = None,
                    deleted: bool = False, entitlement_id: int | None = None, kind: int = 8) -> dict[str, Any]:  # fmt: skip
        """An entitlement, as Discord keeps it after a purchase, and registered so that
        `GET /applications/{id}/entitlements` lists it. Type 8: application subscription, 1: a
        one-time purchase, 4: a test entitlement (no starts_at / ends_at: "Not present when using
        test entitlements", discord.py Entitlement). Since the 2024 entitlement migration a live
        subscription entitlement has `ends_at` null ("granted indefinitely",
        discord-api-docs Entitlement Object / change log 2024-10); `end_subscription` sets it."""
        def iso(t: float) -> str:
            return datetime.fromtimestamp(t, timezone.utc).isoformat()

        payload: dict[str, Any] = {"id": str(entitlement_id or self.new_id()), "sku_id": str(sku_id),
                                   "application_id": str(self.app_id), "user_id": str(user_id), "type": kind,
                                   "deleted": deleted, "consumed": False}  # fmt: skip
        if starts_at is not None and kind != 4:
            payload["starts_at"] = iso(starts_at)
        if ends_at is not None and kind != 4:
            payload["ends_at"] = iso(ends_at)
        self.entitlements[int(payload["id"])] = payload
        return payload

    async def entitlement_event(self, kind: str, entitlement: dict[str, Any]) -> None:
        """ENTITLEMENT_CREATE / _UPDATE / _DELETE on the gateway (kind: create, update, delete).
        An UPDATE comes only when a subscription ends, with its `ends_at` (discord-api-docs Gateway
        Events, Entitlement Update: "when a user's subscription ends"); a renewal sends nothing."""
        if kind == "update":
            assert entitlement.get("ends_at"), "Discord sends ENTITLEMENT_UPDATE only with the subscription's end"
        if kind == "delete":
            entitlement = {**entitlement, "deleted": True}
        self.entitlements[int(entitlement["id"])] = entitlement
        await self.dispatch(f"ENTITLEMENT_{kind.upper()}", entitlement)

    async def end_subscription(self, entitlement: dict[str, Any], at: float, *, send: bool = True) -> dict[str, Any]:
        """The subscription ran out at `at` (cancelled, then its period passed): `ends_at` is set and
        an ENTITLEMENT_UPDATE is sent (`send=False`: the bot was not connected to get it)."""
        ended = {**entitlement, "ends_at": datetime.fromtimestamp(at, timezone.utc).isoformat()}
        self.entitlements[int(ended["id"])] = ended
        if send:
            await self.entitlement_event("update", ended)
        return ended

    async def message_create(self, msg: dict[str, Any]) -> bool:
        """MESSAGE_CREATE as this bot would get it: only with GUILD_MESSAGES (server channels) or
        DIRECT_MESSAGES (DMs), and without MESSAGE_CONTENT its content, embeds, attachments and
        components are empty unless it is a DM, mentions the bot or is the bot's own (discord-api-docs,
        Message Content Intent); the same goes for the message it replies to. False: not sent."""
        dm = "guild_id" not in msg
        if not self.intents & (DIRECT_MESSAGES if dm else GUILD_MESSAGES):
            return False
        await self.dispatch("MESSAGE_CREATE", self._as_seen(msg))
        return True

    def _as_seen(self, msg: dict[str, Any]) -> dict[str, Any]:
        readable = (self.intents & MESSAGE_CONTENT or "guild_id" not in msg or msg["author"]["id"] == self.bot_user["id"]
                    or any(u["id"] == self.bot_user["id"] for u in msg.get("mentions") or []))  # fmt: skip
        seen = dict(msg) if readable else {**msg, "content": "", "embeds": [], "attachments": [], "components": []}
        if isinstance(msg.get("referenced_message"), dict):
            seen["referenced_message"] = self._as_seen(msg["referenced_message"])
        return seen

    def original(self, interaction: dict[str, Any]) -> dict[str, Any] | None:
        """The stored original response of an interaction (as last edited)."""
        message_id = self._tokens[interaction["token"]]["original"]
        return self.messages.get(message_id) if message_id else None

    def keep_message(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Store a message made elsewhere (one a restarted test's first fake posted): Discord keeps it."""
        self.messages[int(msg["id"])] = msg
        return msg

    def made_by(self, interaction: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages the interaction's token can reach and that still exist, oldest first: its
        response (after a type-6/7 answer, the message the component is on) and its follow-ups."""
        made = self._tokens[interaction["token"]]["made"]
        return [self.messages[i] for i in sorted(made) if i in self.messages]

    def _command_id(self, name: str, guild_id: int | None = None, context: int | None = None) -> int:
        """The id of the command a member can pick here. Guild commands exist only in their server
        (no DMs); a global one only in the contexts it allows (discord-api-docs, Application
        Commands: contexts, 0 guild, 1 bot DM, 2 private channel). Anything else the member
        cannot even send, so a test asking for it is wrong."""
        context = (0 if guild_id else 1) if context is None else context
        for command in self.commands.get("global", []):
            if command["name"] == name and context in (command.get("contexts") or [0, 1, 2]):
                return int(command["id"])
        for command in self.commands.get(str(guild_id), []) if guild_id else []:
            if command["name"] == name:
                return int(command["id"])
        raise AssertionError(f"Discord offers no command {name!r} here (guild {guild_id}, context {context});"
                             f" registered: { {k: [c['name'] for c in v] for k, v in self.commands.items()} }")

    # REST --------------------------------------------------------------------------------------

    async def _file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.calls.append(Call("GET", f"/files/{name}"))
        if name not in self.files:
            return web.Response(status=404)
        data, content_type = self.files[name]
        return web.Response(body=data, content_type=content_type)

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body, files = await self._read_body(request)
        call = Call(request.method, path, body, files, dict(request.query), at=asyncio.get_running_loop().time())
        self.calls.append(call)
        limited = self._over_rate_limit(request.method, path)
        if limited is not None:
            call.status, call.headers = 429, limited[2]
            return self._json(*limited)
        for failure in self.failures:
            if (failure.times and failure.method == request.method and failure.pattern.search(path)
                    and (failure.when is None or failure.when(call))):  # fmt: skip
                if failure.times > 0:
                    failure.times -= 1
                call.status = failure.status
                return self._json(failure.body, failure.status, failure.headers)
        try:
            status, answer = self._handle(request.method, path, body, files, dict(request.query))
        except _Error as exc:
            status, answer = exc.status, {"message": exc.message, "code": exc.code}
        call.status = status
        for slow in self.slow:
            if slow[3] and slow[0] == request.method and slow[1].search(path):
                slow[3] -= 1
                await asyncio.sleep(slow[2])
                break
        headers = call.headers = self._rate_limit_headers(request.method, path)
        if status == 204:
            return web.Response(status=204, headers=headers)
        return self._json(answer, status, headers)

    def _buckets_of(self, method: str, path: str) -> list[RateBucket]:
        return [b for b in self.buckets if any(m in ("*", method) and r.search(path) for m, r in b.routes)]

    @staticmethod
    def _window(bucket: RateBucket, resource: str) -> list[float]:
        now = asyncio.get_running_loop().time()
        window = bucket.windows.get(resource)
        if window is None or now - window[0] >= bucket.window_s:
            window = bucket.windows[resource] = [now, 0]
        return window

    def _over_rate_limit(self, method: str, path: str) -> tuple[dict[str, Any], int, dict[str, str]] | None:
        """The 429 for a request past a limit (which is then not carried out), else None; a request
        within every limit is counted in each."""
        now = asyncio.get_running_loop().time()
        counted: list[list[float]] = []
        interaction_route = path.startswith("/interactions/") or path.startswith(f"/webhooks/{self.app_id}/")
        if self.global_limit is not None and not interaction_route:
            window = self._window(self.global_limit, "")
            if window[1] >= self.global_limit.limit:
                retry = round(self.global_limit.window_s - (now - window[0]), 3)
                return ({"message": "You are being rate limited.", "retry_after": retry, "global": True}, 429,
                        {"Retry-After": str(retry), "X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"})  # fmt: skip
            counted.append(window)
        resource = _top_level(path)
        for bucket in self._buckets_of(method, path):
            window = self._window(bucket, resource)
            if window[1] >= bucket.limit:
                retry = round(bucket.window_s - (now - window[0]), 3)
                headers = {**self._bucket_headers(bucket, window), "Retry-After": str(retry), "X-RateLimit-Scope": "user"}
                return {"message": "You are being rate limited.", "retry_after": retry, "global": False}, 429, headers
            counted.append(window)
        for window in counted:
            window[1] += 1
        return None

    def _rate_limit_headers(self, method: str, path: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        for bucket in self._buckets_of(method, path):
            headers = self._bucket_headers(bucket, self._window(bucket, _top_level(path)))
        return headers

    @staticmethod
    def _bucket_headers(bucket: RateBucket, window: list[float]) -> dict[str, str]:
        reset_after = max(0.0, bucket.window_s - (asyncio.get_running_loop().time() - window[0]))
        shown = max(bucket.limit, bucket.shown_limit or 0)
        return {"X-RateLimit-Limit": str(shown), "X-RateLimit-Remaining": str(max(0, shown - int(window[1]))),
                "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}", "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": bucket.name}  # fmt: skip

    @staticmethod
    def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        # Exactly application/json: discord.py reads anything else as text.
        response = web.Response(body=json.dumps(data).encode(), status=status, headers={"Via": "1.1 fake", **(headers or {})})
        response.headers["Content-Type"] = "application/json"
        return response

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, bytes, str]]]:
        files: list[tuple[str, bytes, str]] = []
        if request.content_type.startswith("multipart/"):
            body: Any = None
            reader = await request.multipart()
            async for part in reader:
                data = await part.read()  # type: ignore[union-attr]
                if part.name == "payload_json":  # type: ignore[union-attr]
                    body = json.loads(data)
                else:
                    files.append((part.filename or "", bytes(data), part.headers.get("Content-Type", "")))  # type: ignore[union-attr]
            return body, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), files

    def _handle(self, method: str, path: str, body: Any, files: list[tuple[str, bytes, str]],
                query: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
        query = query or {}
        parts = path.strip("/").split("/")
        route = (method, *parts)
        if route == ("GET", "users", "@me"):
            return 200, self.bot_user
        if route == ("GET", "oauth2", "applications", "@me"):
            return 200, {"id": str(self.app_id), "name": "restyle", "description": "", "icon": None, "bot_public": True,
                         "bot_require_code_grant": False, "verify_key": "00", "owner": self.user(1, "owner"),
                         "flags": self.app_flags}  # fmt: skip
        if route == ("GET", "gateway", "bot"):
            return 200, {"url": self.gateway_url, "shards": max(1, -(-self.guild_count // 1000)),
                         "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}}  # fmt: skip
        if method == "PUT" and parts[0] == "applications" and parts[-1] == "commands":
            scope = parts[3] if len(parts) == 5 else "global"
            problem = _command_schema_problem(body or [])
            if problem:
                raise _Error(400, f"Invalid Form Body ({problem})", 50035)
            synced = [{"description": "", **c, "id": str(self.new_id()), "application_id": str(self.app_id), "version": "1",
                       "default_member_permissions": None, **({"guild_id": scope} if scope != "global" else {})}
                      for c in body or []]  # fmt: skip
            self.commands[scope] = synced
            return 200, synced
        if method == "GET" and parts[0] == "applications" and parts[-1] == "commands":
            return 200, self.commands.get(parts[3] if len(parts) == 5 else "global", [])
        if route == ("GET", "applications", str(self.app_id), "skus"):
            return 200, list(self.skus.values())
        if route == ("GET", "applications", str(self.app_id), "entitlements"):
            return 200, self._list_entitlements(query)
        if method == "POST" and parts[:3] == ["applications", str(self.app_id), "entitlements"] and parts[-1] == "consume":
            return self._consume(int(parts[3]))
        if method == "POST" and parts[0] == "interactions" and parts[-1] == "callback":
            return self._callback(parts[2], body, files)
        if parts[0] == "webhooks":
            return self._webhook(method, parts, body, files)
        if parts[0] == "channels":
            return self._channel(method, parts, body, files)
        if route == ("POST", "users", "@me", "channels"):
            user_id = int(body["recipient_id"])
            channel_id = self.dm_channels.setdefault(user_id, self.new_id())
            return 200, {"id": str(channel_id), "type": 1, "recipients": [self.user(user_id)], "last_message_id": None}
        if route == ("GET", "users", "@me", "guilds"):  # partial guilds, with the bot's permissions as a string
            return 200, [{"id": str(g), "name": f"server {g}", "icon": None, "owner": False, "permissions": str(p),
                          "features": []} for g, p in self.guild_permissions.items()]  # fmt: skip
        if method == "GET" and parts[0] == "users":
            return 200, self.user(int(parts[1]))
        raise _Error(404, f"the fake has no route {method} {path}", 0)

    def _list_entitlements(self, query: dict[str, str]) -> list[dict[str, Any]]:
        """GET /applications/{id}/entitlements (discord-api-docs, List Entitlements): ascending by
        id after `after`, at most `limit` (1-100); `exclude_ended` drops those whose ends_at has
        passed, `exclude_deleted` (default true) the deleted ones."""
        limit = int(query.get("limit", 100))
        if not 1 <= limit <= 100:
            raise _Error(400, "Invalid Form Body (limit)", 50035)
        if "after" in query and "before" in query:
            raise _Error(400, "Invalid Form Body (before and after)", 50035)
        users = {query["user_id"]} if "user_id" in query else None
        skus = set(query["sku_ids"].split(",")) if query.get("sku_ids") else None
        out = []
        for eid in sorted(self.entitlements):
            e = self.entitlements[eid]
            if "after" in query and eid <= int(query["after"]) or "before" in query and eid >= int(query["before"]):
                continue
            if users is not None and e.get("user_id") not in users or skus is not None and e["sku_id"] not in skus:
                continue
            if query.get("exclude_deleted", "1") in ("1", "true") and e.get("deleted"):
                continue
            ends = e.get("ends_at")
            if query.get("exclude_ended") in ("1", "true") and ends and datetime.fromisoformat(ends).timestamp() <= self.now():
                continue
            out.append(e)
        return out[-limit:] if "before" in query else out[:limit]

    def _consume(self, entitlement_id: int) -> tuple[int, Any]:
        """POST .../entitlements/{id}/consume: only for an entitlement of a consumable SKU
        (discord-api-docs, Consume an Entitlement: "For One-Time Purchase consumable SKUs")."""
        entitlement = self.entitlements.get(entitlement_id)
        if entitlement is None or entitlement.get("deleted"):
            raise _Error(404, "Unknown Entitlement", 10069)
        if (self.skus.get(int(entitlement["sku_id"])) or {}).get("type") != 3:
            raise _Error(400, "Only consumable SKU entitlements can be consumed", 50035)
        self.entitlements[entitlement_id] = {**entitlement, "consumed": True}
        return 204, None

    def _callback(self, token: str, body: Any, files: list[tuple[str, bytes, str]]) -> tuple[int, Any]:
        info = self._token(token)
        ctype = body["type"]
        if info["answered"] is not None:
            # one initial response per interaction (discord-api-docs, JSON Error Codes 40060)
            raise _Error(400, "Interaction has already been acknowledged.", 40060)
        if asyncio.get_running_loop().time() - info["received"] > self.response_deadline_s:
            raise _Error(404, "Unknown interaction", 10062)
        data = body.get("data") or {}
        self._check_components(data)
        if ctype in (4, 7):
            self._check_interaction_message(info, data, files)
        if ctype == 9:
            _check_modal(data)
        if ctype == 8:
            # discord-api-docs, Interaction Response (autocomplete: "up to 25 choices") and
            # Application Command Option Choice (name 1-100 characters; a string value up to 100).
            choices = data.get("choices") or []
            if len(choices) > 25 or any(
                not 1 <= len(c.get("name", "")) <= 100 or (isinstance(c.get("value"), str) and len(c["value"]) > 100)
                for c in choices
            ):
                raise _Error(400, "Invalid Form Body (data.choices)", 50035)
        info["answered"] = ctype
        interaction: dict[str, Any] = {"id": "0", "type": ctype}
        resource: dict[str, Any] = {"type": ctype}
        if ctype in (4, 5):  # a new message: the original response
            flags = int(data.get("flags") or 0) | (LOADING if ctype == 5 else 0)
            msg = self.message(info["channel_id"], content=data.get("content") or "", guild_id=info["guild_id"],
                               components=data.get("components"), flags=flags,
                               attachments=self._attachments(files))  # fmt: skip
            info["original"] = int(msg["id"])
            info["made"].add(int(msg["id"]))
            if not self.hide_response_message_id:
                interaction.update(response_message_id=msg["id"], response_message_loading=ctype == 5,
                                   response_message_ephemeral=bool(flags & EPHEMERAL))  # fmt: skip
            resource["message"] = msg
        elif ctype in (6, 7):  # (defer an) update of the message the component is on: it is @original now
            msg = self.messages.get(info.get("message") or 0)
            if msg is None:
                raise _Error(404, "Unknown Message", 10008)
            info["original"] = int(msg["id"])
            info["made"].add(int(msg["id"]))
            resource["message"] = self._edit(msg, data, files) if ctype == 7 else msg
        return 200, {"interaction": interaction, "resource": resource}

    def _token(self, token: str) -> dict[str, Any]:
        info = self._tokens.get(token)
        if info is None or info.get("expired") or self.now() - info["created"] > TOKEN_TTL_S:
            raise _Error(401, "Invalid Webhook Token", 50027)
        return info

    def _attachments(self, files: list[tuple[str, bytes, str]]) -> list[dict[str, Any]]:
        out = []
        for name, data, ctype in files:
            out.append({"id": str(self.new_id()), "filename": name, "size": len(data), "url": f"{self.url}/files/x",
                        "proxy_url": f"{self.url}/files/x", "content_type": ctype})  # fmt: skip
        return out

    def _webhook(self, method: str, parts: list[str], body: Any, files: list[tuple[str, bytes, str]]) -> tuple[int, Any]:
        # /webhooks/{app}/{token}[/messages/{id|@original}]
        info = self._token(parts[2])
        if len(parts) == 3 and method == "POST":  # follow-up
            body = body or {}
            self._check_components(body)
            self._check_interaction_message(info, body, files)
            if info["answered"] is None:
                raise _Error(404, "Unknown Webhook", 10015)  # a follow-up needs an initial response first
            original = self.messages.get(info["original"] or 0)
            if info["answered"] == 5 and original is not None and original["flags"] & LOADING:
                # "the first follow-up after a deferred response edits the loading message" and keeps
                # that message's flags: an ephemeral flag here does not make a public one private
                # (discord-api-docs, Create Followup Message; see NOTES.md)
                return 200, self._edit(original, body, files)
            msg = self.message(info["channel_id"], content=body.get("content") or "", guild_id=info["guild_id"],
                               components=body.get("components"), flags=int(body.get("flags") or 0),
                               attachments=self._attachments(files))  # fmt: skip
            info["made"].add(int(msg["id"]))
            return 200, msg
        if len(parts) == 5 and parts[3] == "messages":
            message_id = info["original"] if parts[4] in ("@original", "%40original") else int(parts[4])
            msg = self.messages.get(message_id) if message_id else None
            if msg is None or message_id not in info["made"]:
                # a webhook token reaches only the messages it created (its response and follow-ups)
                raise _Error(404, "Unknown Message", 10008)
            if method == "GET":
                return 200, msg
            if method == "DELETE":
                self.messages.pop(message_id, None)
                return 204, None
            if method == "PATCH":
                self._check_components(body)
                self._check_interaction_message(info, body or {}, files)
                return 200, self._edit(msg, body or {}, files)
        raise _Error(405, "method not allowed", 0)

    @staticmethod
    def _check_interaction_message(info: dict[str, Any], body: dict[str, Any], files: list[tuple[str, bytes, str]]) -> None:
        """A message made or edited through an interaction (its response, a follow-up, an edit):
        content up to 2000 characters (Create Followup Message / Edit Original Interaction
        Response: "content ... up to 2000 characters"), at most 10 files, and the files within the
        interaction's `attachment_size_limit` (Interaction Object: "Attachment size limit in
        bytes"; over it Discord answers 413, 40005 "Request entity too large"). Discord counts
        that limit per file; the fake counts all of a message's files together, stricter, as
        the bot's own budget (a third of it per picture of a result) does."""
        if len(body.get("content") or "") > MAX_CONTENT_CHARS:
            raise _Error(400, "Invalid Form Body (content: Must be 2000 or fewer in length.)", 50035)
        _check_file_count(files)
        if sum(len(data) for _, data, _ in files) > info["size_limit"]:
            raise _Error(413, "Request entity too large", 40005)

    def _check_components(self, body: dict[str, Any] | None) -> None:
        """A premium button (style 6) must name a published SKU of this application (discord-api-docs,
        Button Object: "sku_id: Identifier for a purchasable SKU, only available when using premium-style
        buttons"); anything else is refused as an invalid form body (50035)."""
        top = (body or {}).get("components") or []
        rows = [c for c in top if c.get("type") == 1]
        if len(rows) > MAX_ROWS:
            raise _Error(400, f"Invalid Form Body (components: at most {MAX_ROWS} action rows)", 50035)
        for row in rows:
            if sum(1 for c in row.get("components") or [] if c.get("type") == 2) > MAX_ROW_BUTTONS:
                raise _Error(400, f"Invalid Form Body (components: at most {MAX_ROW_BUTTONS} buttons a row)", 50035)
        for component in _walk_components(top):
            if "custom_id" in component and not 1 <= len(str(component["custom_id"])) <= MAX_CUSTOM_ID:
                raise _Error(400, "Invalid Form Body (custom_id: Must be between 1 and 100 in length.)", 50035)
            if component.get("type") == 2 and len(component.get("label") or "") > MAX_LABEL:
                raise _Error(400, "Invalid Form Body (label: Must be 80 or fewer in length.)", 50035)
            # Button Object: a link button (style 5) has a url and no custom_id; the others a
            # custom_id and no url; "url: max 512 characters" (discord-api-docs).
            if component.get("type") == 2 and component.get("style") == 5:
                url = component.get("url") or ""
                if component.get("custom_id") or not url.startswith(("http://", "https://")) or len(url) > 512:
                    raise _Error(400, "Invalid Form Body (components.0.components.0.url: Not a well formed URL.)", 50035)
            elif component.get("type") == 2 and component.get("url"):
                raise _Error(400, "Invalid Form Body (components.0.components.0.url: only link buttons have one)", 50035)
            if component.get("type") == 2 and component.get("style") == 6:
                sku = self.skus.get(int(component.get("sku_id") or 0))
                if sku is None or not sku["flags"] & (1 << 2):
                    raise _Error(400, "Invalid Form Body (components.0.components.0.sku_id: Unknown SKU)", 50035)

    def _edit(self, msg: dict[str, Any], body: dict[str, Any], files: list[tuple[str, bytes, str]]) -> dict[str, Any]:
        if "content" in body:
            msg["content"] = body["content"] or ""
        if "components" in body:
            msg["components"] = body["components"] or []
        if "attachments" in body or files:
            msg["attachments"] = self._attachments(files)
        msg["flags"] = msg["flags"] & ~LOADING
        msg["edited_timestamp"] = "2027-01-15T12:00:01.000000+00:00"
        return msg

    def _check_create(self, channel_id: int, body: dict[str, Any], files: list[tuple[str, bytes, str]]) -> None:
        """What Discord checks when a message is created (discord-api-docs, Create Message and
        JSON Error Codes): the bot's permissions in the channel (SEND_MESSAGES, ATTACH_FILES for
        files, READ_MESSAGE_HISTORY for a reply: 50013), an archived thread (50083), a member who
        takes no DMs (50007, as a 403), content over 2000 characters (50035), files over the
        channel's upload limit (413, 40005; in a DM the bot's limit is 10 MiB)."""
        denied = self.denied.get(channel_id, set())
        dm_user = next((u for u, c in self.dm_channels.items() if c == channel_id), None)
        if "VIEW_CHANNEL" in denied:
            raise _Error(403, "Missing Access", 50001)
        if "SEND_MESSAGES" in denied or files and "ATTACH_FILES" in denied:
            raise _Error(403, "Missing Permissions", 50013)
        if body.get("message_reference") and "READ_MESSAGE_HISTORY" in denied:
            raise _Error(403, "Missing Permissions", 50013)
        if channel_id in self.archived_threads:
            raise _Error(400, "Thread is archived", 50083)
        if dm_user is not None and dm_user in self.closed_dms:
            raise _Error(403, "Cannot send messages to this user", 50007)
        if len(body.get("content") or "") > MAX_CONTENT_CHARS:
            raise _Error(400, "Invalid Form Body (content: Must be 2000 or fewer in length.)", 50035)
        _check_file_count(files)
        limit = DM_SIZE_LIMIT if dm_user is not None else self.channel_size_limits.get(channel_id, self.size_limit)
        if any(len(data) > limit for _, data, _ in files):
            raise _Error(413, "Request entity too large", 40005)

    def _channel(self, method: str, parts: list[str], body: Any, files: list[tuple[str, bytes, str]]) -> tuple[int, Any]:
        channel_id = int(parts[1])
        if channel_id in self.deleted_channels:
            raise _Error(404, "Unknown Channel", 10003)
        if channel_id in self.bot_absent_channels:
            raise _Error(403, "Missing Access", 50001)
        if len(parts) == 3 and parts[2] == "messages" and method == "POST":
            body = body or {}
            self._check_create(channel_id, body, files)
            self._check_components(body)
            if body.get("nonce") and body.get("enforce_nonce"):
                # "If another message was created by the same author with the same nonce, that
                # message will be returned and no new message will be created" (Create Message)
                for msg in self.messages.values():
                    if msg.get("nonce") == body["nonce"] and int(msg["channel_id"]) == channel_id:
                        return 200, msg
            msg = self.message(channel_id, content=body.get("content") or "", components=body.get("components"),
                               attachments=self._attachments(files))  # fmt: skip
            if body.get("nonce"):
                msg["nonce"] = body["nonce"]
            if body.get("message_reference"):
                msg["message_reference"] = body["message_reference"]
            return 200, msg
        if len(parts) == 4 and parts[2] == "messages":
            msg = self.messages.get(int(parts[3]))
            if method == "GET" and {"READ_MESSAGE_HISTORY", "VIEW_CHANNEL"} & self.denied.get(channel_id, set()):
                raise _Error(403, "Missing Access", 50001)  # fetching a message needs the history
            if msg is None or int(msg["channel_id"]) != channel_id:
                raise _Error(404, "Unknown Message", 10008)
            if method == "GET":
                return 200, msg
            if method == "PATCH":
                body = body or {}
                self._check_components(body)
                if len(body.get("content") or "") > MAX_CONTENT_CHARS:  # Edit Message: as Create Message
                    raise _Error(400, "Invalid Form Body (content: Must be 2000 or fewer in length.)", 50035)
                _check_file_count(files)
                return 200, self._edit(msg, body, files)
            if method == "DELETE":
                self.messages.pop(int(parts[3]), None)
                return 204, None
        if len(parts) == 3 and parts[2] == "typing":
            return 204, None
        raise _Error(405, "method not allowed", 0)


def _check_file_count(files: list[tuple[str, bytes, str]]) -> None:
    if len(files) > MAX_FILES:
        raise _Error(400, f"Invalid Form Body (files: at most {MAX_FILES} a message)", 50035)


def _check_modal(modal: dict[str, Any]) -> None:
    """A modal (callback type 9): a title of 1-45 characters, 1-5 top-level components, each a Label
    (type 18: its label 1-45 characters, a description up to 100, one component inside) or a Text
    Display (type 10); a text input's own `label` is deprecated there (discord-api-docs, Modal,
    Label, Text Input). Discord still takes an Action Row around a text input (deprecated): the fake
    refuses it, stricter than Discord, so the bot keeps to the current layout."""
    components = modal.get("components") or []
    if not 1 <= len(modal.get("title") or "") <= 45 or not 1 <= len(components) <= 5:
        raise _Error(400, "Invalid Form Body (modal title or number of components)", 50035)
    for component in components:
        kind = component.get("type")
        if kind == 18:
            inner = component.get("component") or {}
            if not 1 <= len(component.get("label") or "") <= 45 or len(component.get("description") or "") > 100:
                raise _Error(400, "Invalid Form Body (label: 1-45 characters, description up to 100)", 50035)
            if inner.get("type") == 4 and inner.get("label"):
                raise _Error(400, "Invalid Form Body (a text input in a label has no label of its own)", 50035)
        elif kind != 10:
            raise _Error(400, f"Invalid Form Body (component type {kind} in a modal: use a Label)", 50035)


_NAME = re.compile(r"^[-_\w]{1,32}$")
# discord-api-docs, Reference > Locales: the only keys a localization dictionary may have.
LOCALES = frozenset({
    "id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl", "no", "pl", "pt-BR",
    "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi", "th", "zh-CN", "ja", "zh-TW", "ko",
})  # fmt: skip


def _localization_problem(where: str, item: dict[str, Any], *, chat_input: bool) -> str | None:
    """discord-api-docs, Application Commands > Localization: name_localizations and
    description_localizations are keyed by Locales, and each value follows the restrictions of
    the field it localizes (a chat-input name: lower case 1-32 word characters and dashes; a
    description 1-100 characters; a choice's name 1-100)."""
    for field in ("name_localizations", "description_localizations"):
        localized = item.get(field)
        if localized is None:
            continue
        if not isinstance(localized, dict):
            return f"{where}.{field}: not a dictionary"
        for locale, value in localized.items():
            if locale not in LOCALES:
                return f"{where}.{field}: {locale!r} is not a valid locale"
            if field == "description_localizations" and not (isinstance(value, str) and 1 <= len(value) <= 100):
                return f"{where}.{field}.{locale}: must be 1-100 characters"
            if field == "name_localizations" and chat_input and not (
                isinstance(value, str) and _NAME.match(value) and value == value.lower()
            ):
                return f"{where}.{field}.{locale}: not a valid name"
            if field == "name_localizations" and not (isinstance(value, str) and 1 <= len(value) <= 100):
                return f"{where}.{field}.{locale}: must be 1-100 characters"
    return None


def _command_schema_problem(commands: list[dict[str, Any]]) -> str | None:
    """What Discord checks when commands are registered (discord-api-docs, Application Command
    Object: naming, descriptions, options): chat-input names lower case 1-32 of word characters
    and dashes, descriptions 1-100 characters (none for context menus), at most 25 options,
    required before optional, at most 25 choices; names unique per type; at most 100 chat commands."""
    seen: set[tuple[int, str]] = set()
    for command in commands:
        kind, name = command.get("type", 1), command.get("name", "")
        if (kind, name) in seen:
            return f"{name}: registered twice"
        seen.add((kind, name))
        if kind == 1:
            if not _NAME.match(name) or name != name.lower():
                return f"{name}: not a valid command name"
            if not 1 <= len(command.get("description") or "") <= 100:
                return f"{name}: description must be 1-100 characters"
        else:
            if not 1 <= len(name) <= 32 or command.get("description"):
                return f"{name}: a context menu has a 1-32 character name and no description"
        problem = _localization_problem(name, command, chat_input=kind == 1)
        if problem:
            return problem
        options = command.get("options") or []
        if len(options) > 25:
            return f"{name}: more than 25 options"
        required = [bool(o.get("required")) for o in options]
        if required != sorted(required, reverse=True):
            return f"{name}: required options must come first"
        for option in options:
            if not _NAME.match(option.get("name", "")) or not 1 <= len(option.get("description") or "") <= 100:
                return f"{name}.{option.get('name')}: bad option name or description"
            if len(option.get("choices") or []) > 25:
                return f"{name}.{option['name']}: more than 25 choices"
            problem = _localization_problem(f"{name}.{option.get('name')}", option, chat_input=True)
            for choice in option.get("choices") or []:
                problem = problem or _localization_problem(f"{name}.{option.get('name')}.choice", choice, chat_input=False)
            if problem:
                return problem
    if sum(1 for c in commands if c.get("type", 1) == 1) > 100:
        return "more than 100 chat commands"
    return None


class _Error(Exception):
    def __init__(self, status: int, message: str, code: int) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class RecordingProxy:
    """A plain HTTP proxy on 127.0.0.1 that records every request sent through it (the
    absolute-form URL aiohttp sends a proxy). Each client connection is tied to the host and port
    of its first request; requests on it are read one by one (Content-Length or chunked bodies)
    and passed on as they are; after a websocket upgrade the bytes are piped both ways."""

    def __init__(self) -> None:
        self.targets: list[str] = []  # the URL of every request, in order
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> "RecordingProxy":
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        back: asyncio.Task[None] | None = None
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                self.targets.append(target)
                if upstream is None:
                    url = re.match(r"^[a-z]+://([^/:]+):(\d+)", target)
                    assert url, f"not an absolute-form request: {target}"
                    up_reader, upstream = await asyncio.open_connection(url[1], int(url[2]))
                    back = asyncio.create_task(self._pipe(up_reader, writer))
                    self._tasks.add(back)
                upstream.write(head)
                headers = head.decode("latin-1").lower()
                if "\r\nupgrade: websocket" in headers:
                    await self._pipe(reader, upstream)
                    break
                length = re.search(r"\r\ncontent-length: *(\d+)", headers)
                if length:
                    upstream.write(await reader.readexactly(int(length[1])))
                elif "\r\ntransfer-encoding: chunked" in headers:
                    while True:
                        size_line = await reader.readuntil(b"\r\n")
                        upstream.write(size_line)
                        size = int(size_line.split(b";")[0], 16)
                        upstream.write(await reader.readexactly(size + 2))
                        if size == 0:
                            break
                await upstream.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError, AssertionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            if upstream is not None:
                upstream.close()
            if back is not None:
                back.cancel()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()
