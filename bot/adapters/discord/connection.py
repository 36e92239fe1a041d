"""Discord's connection: the discord.py clients the adapter runs (one for every shard, or one per
leased shard) and their command tree, which hand each event to an EventHandler (the adapter);
the gateway intents, which command scopes need a sync, the interaction's webhook and what the
bot may do as itself where an interaction came from."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from typing import Any, Protocol

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route, handle_message_parameters
from discord.webhook.async_ import async_context

from bot.adapters.discord.parsing import _Picture

TOKEN_TTL_S = 15 * 60  # an interaction token (follow-ups, edits of the response) lives this long


class EventHandler(Protocol):
    """What the clients, the buttons and the form hand events to (DiscordAdapter): they hold this,
    not the adapter, so they live apart from it without importing it back."""

    identify_wait_s: float
    messages_handled: int

    def _handling(self) -> AbstractContextManager[None]: ...

    async def admitted(self, interaction: discord.Interaction) -> bool: ...

    async def on_message(self, message: discord.Message) -> None: ...

    async def on_button(self, interaction: discord.Interaction, action: str, job_id: str) -> None: ...

    async def on_modal_submit(
        self, interaction: discord.Interaction, picture: _Picture, prompt: str, strength: str
    ) -> None: ...

    async def _broke(self, interaction: discord.Interaction) -> None: ...


class RestyleTree(app_commands.CommandTree):
    """Every slash command and message menu passes the flood guard before it runs."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if interaction.type is discord.InteractionType.autocomplete:
            return True  # typing in an option, not a command sent
        adapter: EventHandler | None = getattr(interaction.client, "restyle_adapter", None)
        return adapter is None or await adapter.admitted(interaction)


class _RestyleEvents(discord.Client):
    """The bot's client, whichever shards it runs (see RestyleClient, ShardClient); a Client
    (for the type checker too), that RestyleClient puts in front of AutoShardedClient."""

    def __init__(self, adapter: EventHandler, **options: Any) -> None:
        super().__init__(**options)
        self.restyle_adapter = adapter
        # Everywhere Discord allows: servers, the bot's DM, and (user-installed) other DMs; the
        # admin commands narrow this to servers.
        self.tree = RestyleTree(
            self,
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True),
            allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
        )
        self.connected = asyncio.Event()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py's default: 5 s before each IDENTIFY but the first (Discord allows one per
        # 5 s per max_concurrency bucket: Gateway, Session Start Limit); tests pass their own.
        if not initial:
            await asyncio.sleep(self.restyle_adapter.identify_wait_s)

    async def on_connect(self) -> None:  # READY arrived (IDENTIFY accepted)
        self.connected.set()

    async def on_message(self, message: discord.Message) -> None:
        try:
            with self.restyle_adapter._handling():
                await self.restyle_adapter.on_message(message)
        finally:
            # Counted when the handler is done, ignored messages too: "it said nothing" can then
            # be checked once the message was handled, instead of after a guessed wait.
            self.restyle_adapter.messages_handled += 1


class RestyleClient(_RestyleEvents, discord.AutoShardedClient):
    """One process, every shard ([discord] shards: "auto" asks Discord how many): a bot in more
    than 2,500 servers needs several (a single session is closed with 4011)."""


class ShardClient(_RestyleEvents):
    """One shard's gateway session (shard_id / shard_count), for a front end holding that
    shard's listener lease when several share the database."""


class LibraryUrls:
    """discord.py reads its REST base and gateway from class attributes; point them at the
    configured proxy (or a test's fake server) and put them back on stop."""

    def __init__(self) -> None:
        self._saved: tuple[str, yarl.URL] | None = None

    def point_at(self, api_base: str | None, gateway_url: str | None) -> None:
        if not api_base and not gateway_url:
            return
        self._saved = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
        if api_base:
            Route.BASE = api_base.rstrip("/")
        if gateway_url:
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)

    def restore(self) -> None:
        if self._saved is not None:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self._saved = None


def _intents(message_replies: bool, reply_pictures: bool) -> discord.Intents:
    """Only what the bot uses: guilds (channels, threads, its own role), and messages when it
    answers mentions. Discord gives a bot the content of messages that mention it and of DMs
    without the privileged Message Content intent; the intent is needed only to read the
    picture in a message a mention replies to."""
    intents = discord.Intents.none()
    intents.guilds = True
    if message_replies:
        intents.guild_messages = True
        intents.dm_messages = True
        intents.message_content = reply_pictures
    return intents


def _as_bot_there(interaction: discord.Interaction) -> dict[str, bool]:
    """What the bot can do as itself (bot token, no interaction token) where the interaction came
    from: edit its own messages and post new ones. Only a server that installed the bot has the
    bot in it (`authorizing_integration_owners` holds that server); a user-installed app elsewhere,
    and a DM between other people, have only the interaction's webhook (discord-api-docs,
    Interaction Object: authorizing_integration_owners, context, app_permissions)."""
    if interaction.guild_id is not None:
        if not interaction.is_guild_integration():
            return {"bot_can_edit": False, "bot_can_post": False}
        perms = interaction.app_permissions
        thread = isinstance(interaction.channel, discord.Thread)
        send = perms.send_messages_in_threads if thread else perms.send_messages
        return {"bot_can_edit": perms.view_channel, "bot_can_post": perms.view_channel and send and perms.attach_files}
    ours = interaction.context.dm_channel  # the member's DM with the bot, not someone else's
    return {"bot_can_edit": ours, "bot_can_post": ours}


def _webhook(client: discord.Client, reply: dict[str, Any]) -> discord.Webhook:
    """The interaction's webhook, sent through the client's proxy like the rest (Webhook.partial
    takes the client's session but not its proxy)."""
    hook = discord.Webhook.partial(int(reply["application_id"]), reply["token"], client=client)
    hook.proxy, hook.proxy_auth = client.http.proxy, client.http.proxy_auth
    return hook


async def _edit_original(hook: discord.Webhook, **fields: Any) -> None:
    """PATCH /webhooks/{app}/{token}/messages/@original, the request discord.py's own
    Interaction.edit_original_response makes, for a job whose interaction object is long gone."""
    with handle_message_parameters(content=fields.get("content", discord.utils.MISSING),
                                   attachments=fields.get("attachments", discord.utils.MISSING),
                                   view=fields.get("view", discord.utils.MISSING),
                                   previous_allowed_mentions=discord.AllowedMentions.none()) as params:  # fmt: skip
        token = hook.token
        assert token is not None  # an interaction's webhook always carries the interaction's token
        await async_context.get().edit_original_interaction_response(
            hook.id,
            token,
            session=hook.session,
            proxy=hook.proxy,
            proxy_auth=hook.proxy_auth,
            payload=params.payload,
            multipart=params.multipart,
            files=params.files,
        )


def _nonce(job_id: str, place: str) -> str:
    """The same for every try at one job's message in one place (Discord takes up to 25 characters)."""
    return f"rs{place}{job_id}"[:25]
