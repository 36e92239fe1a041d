"""Discord's gateway lifecycle: connecting (one client for every shard in this process, or, where
several front ends share the database, one gateway session per shard whose listener lease this
front end holds), knowing whether the connection is up (`ready`), and closing it. The clients
themselves are connection.py's; the adapter's start() and stop() run this."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

import discord

from bot.adapters import AdapterStartError
from bot.adapters.discord.connection import EventHandler, LibraryUrls, RestyleClient, ShardClient, _intents
from bot.adapters.discord.markup import JobButton
from bot.config import Config
from bot.core.types import DeliveryFailed
from bot.listener import Listeners, keep_listening, stream_name

log = logging.getLogger("bot.discord")


class DiscordStartError(AdapterStartError):
    """The bot could not connect; the message says what to check."""


class Gateway:
    """The connection's state: the client, whether READY came (and the connection still holds),
    and the shard sessions held here under their leases."""

    def __init__(
        self,
        config: Config,
        handler: EventHandler,
        install: Callable[[Any], None],
        *,
        ready_timeout_s: float,
        max_ratelimit_wait_s: float,
    ) -> None:
        self._config = config
        self._handler = handler  # what each client hands its events to
        self._install = install  # the commands and the upgrades' handlers, on each new client
        self.ready_timeout_s = ready_timeout_s
        self._max_ratelimit_wait_s = max_ratelimit_wait_s
        self.client: RestyleClient | None = None
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._library_urls = LibraryUrls()
        self._intents = discord.Intents.none()
        self._listeners: Listeners | None = None
        self._lease_tasks: list[asyncio.Task[None]] = []
        self._shard_clients: dict[int, tuple[Any, asyncio.Task[None]]] = {}
        self._shard_base = ""

    async def start(self, token: str, listeners: Listeners | None) -> RestyleClient:
        """Connected once this returns: READY from the gateway (every shard here), or logged in
        for REST with the shards' leases contended for (`listeners`: several front ends). Raises
        DiscordStartError saying what to check; the caller then stops what was started."""
        settings = self._config.discord
        self._library_urls.point_at(settings.api_base, settings.gateway_url)
        # The bot never joins voice: silence discord.py's warnings about voice libraries.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        self._intents = _intents(settings.message_replies, settings.reply_pictures)
        if settings.message_replies:
            log.info(
                "mention replies on: receiving messages%s",
                " and the Message Content intent, to read pictures in replied-to messages" if settings.reply_pictures
                else " without the Message Content intent (reply_pictures = false: pictures must be attached)",
            )  # fmt: skip
        client = self._new_client(RestyleClient, shard_count=None if settings.shards == "auto" else settings.shards)
        self.client = client
        if listeners is not None:
            await self._start_leased(listeners, client, token, settings.shards)
            return client
        self._task = asyncio.create_task(client.start(token), name="discord-client")
        waiter = asyncio.create_task(client.connected.wait())
        try:
            done, _ = await asyncio.wait(
                {self._task, waiter}, timeout=self.ready_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if self._task in done:
                raise start_error(self._task.exception())
            if waiter not in done:
                raise DiscordStartError(
                    f"Discord did not answer within {self.ready_timeout_s:g} s (no READY from the gateway"
                    f"{' at ' + settings.gateway_url if settings.gateway_url else ''}). Check the network,"
                    " or [discord] api_base / gateway_url if you use a proxy."
                )
        except BaseException:
            waiter.cancel()
            # It never connected: nothing to let finish. (Left running, discord.py's shard
            # launcher retries every 5 s and stop() would wait its 10 s for it.)
            self._task.cancel()
            raise
        self.ready.set()
        self._task.add_done_callback(self._connection_ended)
        log.info("connected to Discord as %s", client.user)
        return client

    def _new_client(self, cls: type, **shards: Any) -> Any:
        client = cls(
            self._handler,
            intents=self._intents,
            max_ratelimit_timeout=self._max_ratelimit_wait_s,
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            allowed_mentions=discord.AllowedMentions.none(),
            proxy=self._config.discord.proxy,  # REST and every gateway connection, the resume URL's too
            **shards,
        )
        client.add_dynamic_items(JobButton)
        self._install(client)
        return client

    def live_client(self) -> RestyleClient:
        """The client, for a request that needs the connection up."""
        if self.client is None or not self.ready.is_set():
            raise DeliveryFailed("the Discord connection is not up yet")
        return self.client

    async def wait_ready(self) -> None:
        # Deliveries left from the last run start before the connection is up.
        try:
            await asyncio.wait_for(self.ready.wait(), self.ready_timeout_s)
        except TimeoutError:
            raise DeliveryFailed("the Discord connection is not up") from None

    # Several front ends on one database: each shard's gateway session under a listener lease --

    async def _start_leased(self, listeners: Listeners, client: Any, token: str, shards: Any) -> None:
        """Log in for REST only (results, status edits and follow-ups need no gateway), then
        contend for each shard's listener lease (bot/listener.py): a front end holds about
        shards / front ends of them and runs one gateway session per shard it holds. Discord sends
        every event of a shard to every session of that shard, so without the lease two front
        ends would each handle every mention, command and button."""
        self._listeners = listeners
        try:
            await asyncio.wait_for(client.login(token), self.ready_timeout_s)
            count = shards if isinstance(shards, int) else (await client.http.get_bot_gateway())[0]
        except BaseException as exc:
            raise start_error(exc) from None
        self.ready.set()
        base = stream_name("discord", token)
        self._shard_base = base
        self._shard_clients = {}

        async def nothing() -> None:
            return None

        present = listeners.lease(f"{base}:frontend:{listeners.holder}")
        self._lease_tasks = [asyncio.create_task(keep_listening(present, nothing, nothing), name="discord-present")]
        for shard in range(count):
            lease = listeners.lease(f"{base}:shard:{shard}/{count}")
            self._lease_tasks.append(asyncio.create_task(keep_listening(
                lease,
                functools.partial(self._connect_shard, token, shard, count),
                functools.partial(self._disconnect_shard, shard),
                functools.partial(self._wants_shard, shard, count),
            ), name=f"discord-shard-{shard}"))  # fmt: skip
        log.info("logged in to Discord as %s; %d shard(s), each taken by one front end", client.user, count)

    async def _wants_shard(self, shard: int, count: int, listening: bool) -> bool:
        """A fair share: at most ceil(shards / front ends alive); the one over its share gives
        up its highest shard, which a front end below its share then takes."""
        assert self._listeners is not None
        alive = await self._listeners.holders(f"{self._shard_base}:frontend:")
        share = -(-count // max(1, len(alive)))
        held = set(self._shard_clients)
        if listening:
            session = self._shard_clients.get(shard)
            if session is not None and session[1].done():
                # discord.py gave this session up for good (a refused intent, say): let another
                # front end try rather than hold a shard nobody listens to.
                log.error("Discord shard %d: the gateway session ended; giving the shard up", shard)
                return False
            return not (len(held) > share and shard == max(held))
        return len(held) < share

    async def _connect_shard(self, token: str, shard: int, count: int) -> None:
        client = self._new_client(ShardClient, shard_id=shard, shard_count=count)
        try:
            await client.login(token)
        except BaseException:
            await client.close()
            raise
        task = asyncio.create_task(client.connect(reconnect=True), name=f"discord-gateway-{shard}")
        waiter = asyncio.create_task(client.connected.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=self.ready_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            await client.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise start_error(task.exception())
            raise DiscordStartError(
                f"Discord shard {shard} of {count} did not connect within {self.ready_timeout_s:g} s."
            )
        self._shard_clients[shard] = (client, task)
        log.info("Discord shard %d of %d: gateway session open here", shard, count)

    async def _disconnect_shard(self, shard: int) -> None:
        client, task = self._shard_clients.pop(shard, (None, None))
        if client is None:
            return
        await client.close()
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), 10)
            except BaseException:
                task.cancel()
        log.info("Discord shard %d: gateway session closed here", shard)

    def _connection_ended(self, task: asyncio.Task[None]) -> None:
        # discord.py reconnects by itself; it only gives up on what a retry cannot fix (a revoked
        # token, a refused intent). Say so loudly: results then wait in the store for a restart.
        if self.ready.is_set() and not task.cancelled():
            self.ready.clear()
            exc = task.exception()
            log.error("the Discord connection ended for good: %s", start_error(exc) if exc else "closed by Discord")

    # Stopping, in two steps around the adapter's own: its handlers end between them ----------------

    async def stop_listening(self) -> None:
        """Nothing waits on the connection any more, and each shard's session closes with its
        lease given up."""
        self.ready.clear()
        for lease_task in self._lease_tasks:
            lease_task.cancel()  # closes its shard's session and gives the lease up
        await asyncio.gather(*self._lease_tasks, return_exceptions=True)
        self._lease_tasks = []

    async def close(self) -> None:
        """The client closed, its run let finish, discord.py's URLs put back."""
        if self.client is not None and not self.client.is_closed():
            await self.client.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except BaseException:  # it was reported at start, or it ends with the close
                self._task.cancel()
        self._library_urls.restore()


def start_error(exc: BaseException | None) -> DiscordStartError:
    """What to check, for an error discord.py raised while connecting."""
    if isinstance(exc, discord.LoginFailure):
        return DiscordStartError("Discord refused the bot token (401). Check [discord] token or RESTYLE_DISCORD_TOKEN.")
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return DiscordStartError(
            "Discord refused the Message Content intent (close code 4014), which [discord] reply_pictures"
            " needs to read pictures in replied-to messages. Turn on 'Message Content Intent' for the bot in"
            " the Developer Portal, or set reply_pictures = false (mentions with an attached picture still work)."
        )
    return DiscordStartError(f"Could not connect to Discord: {exc!r}")
