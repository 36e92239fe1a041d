"""Discord front end (discord.py 2): /restyle, the "Restyle image" message menu, buttons.

How a request travels:
  slash command / menu + form / "@bot prompt" reply
    → checks that need no network (file type and size, the grammar): an ephemeral answer at once
    → defer (Discord wants an answer within 3 s), download the picture (its link is signed and
      expires), service.jobs.submit
    → the deferred response becomes the status message ("Queued #2", "Restyling 40%", Cancel),
      edited as the service reports (throttled)
    → the result: original and restyled picture as two files in that same message, with
      Again / Subtler / Stronger / PNG / WebP / JPEG buttons. Again / Subtler / Stronger defer
      without showing anything (type 6), then answer with a status message of their own (a
      follow-up); the result they were clicked on stays as it is.

Everything needed to answer later lives in the job's `reply` dict (stored in SQLite), so a
restart loses nothing: the interaction's application id and token with the time it arrived, the
channel, the member, the status message id and the upload limit. Buttons carry the job id in
their custom_id ("restyle:again:<job>") and are handled by a DynamicItem, so they keep working
after a restart. An interaction token lives 15 minutes: a job that finishes later is posted in
the channel mentioning the member, or sent by DM when the channel is gone or closed to the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import io
import logging
import re
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import discord
from discord import app_commands, ui

from bot.adapters import AdapterStartError
from bot.adapters.discord.command_sync import sync_commands
from bot.adapters.discord.connection import (
    TOKEN_TTL_S,
    LibraryUrls,
    RestyleClient,
    ShardClient,
    _as_bot_there,
    _edit_original,
    _intents,
    _nonce,
    _webhook,
)
from bot.adapters.discord.files import DEFAULT_FILE_LIMIT, _result_files
from bot.adapters.discord.locales import RecentLocales
from bot.adapters.discord.markup import JobButton, RestyleModal, result_view, status_view, sweep_view
from bot.adapters.discord.parsing import (
    STRENGTH_WORDS,
    _addresses_bot,
    _command_from_options,
    _int,
    _not_a_picture,
    _Picture,
    _pictures_in,
    _place,
    _Unusable,
)
from bot.adapters.discord.pictures import download_picture, too_big
from bot.adapters.discord.restyle import _InteractionRestyle, _MentionRestyle
from bot.adapters.discord.sweep import file_budget, sweep_message_files
from bot.adapters.discord.texts import (
    BROKE,
    DISCORD_STYLE,
    EXAMPLE,
    LATE_NOTE,
    LATE_NOTE_AFTER_S,
    LATE_NOTE_DM,
    NOT_STARTED,
    PLATFORM,
    _result_text,
    _short,
    _stale_text,
    _status_text,
    _status_what,
    help_text,
)
from bot.adapters.discord.translator import CatalogueTranslator, described
from bot.adapters.discord.upgrades import DiscordUpgrades
from bot.chat import account, presses, texts
from bot.chat import admin as admin_commands
from bot.chat.delivery import failure_reason, refused_for_good
from bot.chat.presses import Press, handle_press
from bot.chat.restyle import RestyleRequest, handle_restyle
from bot.chat.status import FAILED, GONE, SHOWN, Budget, EditOutcome
from bot.chat.statuses import StatusFollower, status_key
from bot.chat.surface import Style
from bot.chat.sweep import keep_choices, sweep_caption, sweep_status
from bot.clock import MonotonicClock
from bot.commands import (
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_STEPS,
    MAX_STRENGTH,
    MIN_STEPS,
    MIN_STRENGTH,
    OUTPUT_FORMATS,
    SWEEP_STRENGTHS,
    CommandError,
    RestyleCommand,
)
from bot.config import Config
from bot.core.types import Accepted, Delivery, DeliveryFailed, JobView, Member, Refused, SweepDelivery
from bot.i18n import N_, Text, Translator, translator
from bot.listener import Listeners, keep_listening, stream_name
from bot.service import RestyleService
from engine.pictures import PictureError

log = logging.getLogger("bot.discord")

TOKEN_MARGIN_S = 30.0  # stop trusting a token this long before it expires
CREATED_AT_SLACK_S = 5.0  # an interaction must be answered within 3 s of its creation: older is a clock off
DM_FILE_LIMIT = 10 * 1024 * 1024  # a bot's uploads in a DM: no server boost raises it
TOO_LARGE = 40005  # "Request entity too large" (discord-api-docs, JSON Error Codes)
ARCHIVED_THREAD = 50083
MISSING_ACCESS = 50001
CANNOT_DM = 50007
ANSWERED_ALREADY = 40060  # "Interaction has already been acknowledged" (discord-api-docs, JSON Error Codes)
UNKNOWN_INTERACTION = 10062  # not answered within 3 s, or the token is gone
# A sweep's caption: Discord's 2000 characters, less room for what a post elsewhere adds in front
# (the member's mention, "(The channel you asked in is gone, so here it is.)").
SWEEP_CAPTION_LIMIT = 1700


def _tr(interaction: discord.Interaction) -> Translator:
    """The member's Discord language (interaction.locale, e.g. es-ES), English where none fits."""
    return translator(interaction.locale.value)


class DiscordStartError(AdapterStartError):
    """The bot could not connect; the message says what to check."""


# The adapter -------------------------------------------------------------------------------------


class DiscordAdapter:
    platform = PLATFORM

    def __init__(
        self,
        config: Config,
        service: RestyleService,
        *,
        ready_timeout_s: float = 60.0,
        request_timeout_s: float = 60.0,
        edit_interval_s: float = 1.5,
        download_timeout_s: float = 30.0,
        max_ratelimit_wait_s: float = 30.0,
        identify_wait_s: float = 5.0,
    ) -> None:
        self.config = config
        self.identify_wait_s = identify_wait_s
        self.service = service
        self.ready_timeout_s = ready_timeout_s
        self.request_timeout_s = request_timeout_s
        self.edit_interval_s = edit_interval_s
        self.download_timeout_s = download_timeout_s
        self.max_ratelimit_wait_s = max_ratelimit_wait_s
        self.client: RestyleClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ready = asyncio.Event()
        # One edit of a status message at a time: its progress, or its delivery taking it over.
        # A lock lives while someone holds or awaits it: nothing to clean up when a status ends.
        self._status_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # A sweep's delivery is written into its status message: a sweep cancelled with part of
        # it done leaves that message to it.
        self._statuses = StatusFollower(_StatusMessages(self), service, MonotonicClock(), name="discord-status",
                                        sweep_result_takes_status=True)  # fmt: skip
        self._status_edits = self._statuses.throttle
        self._library_urls = LibraryUrls()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locales = RecentLocales()  # members' languages, for answering their @mentions
        self.messages_handled = 0  # message events whose handler has finished (see RestyleClient.on_message)
        # Several front ends on one database (set by the app): each shard's gateway session is
        # held by one of them (see _start_leased); None (one process): every shard here.
        self.listeners: Listeners | None = None
        self._lease_tasks: list[asyncio.Task[None]] = []
        self._shard_clients: dict[int, tuple[Any, asyncio.Task[None]]] = {}
        self._shard_base = ""

    @contextlib.contextmanager
    def _handling(self):
        """Marks the running event handler, so stop() can end it before the store closes."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._tasks.discard(task)

    @property
    def max_picture_bytes(self) -> int:
        return int(self.config.bot.max_upload_mb * 1_000_000)

    def _now(self) -> float:
        return self.service.clock.now()

    # Start and stop ------------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.config.discord
        if not settings.token:
            raise DiscordStartError("No Discord token: set [discord] token or RESTYLE_DISCORD_TOKEN.")
        self._library_urls.point_at(settings.api_base, settings.gateway_url)
        # The bot never joins voice: silence discord.py's warnings about voice libraries.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        intents = _intents(settings.message_replies, settings.reply_pictures)
        if settings.message_replies:
            log.info(
                "mention replies on: receiving messages%s",
                " and the Message Content intent, to read pictures in replied-to messages" if settings.reply_pictures
                else " without the Message Content intent (reply_pictures = false: pictures must be attached)",
            )  # fmt: skip
        self._intents = intents
        self.upgrades = DiscordUpgrades(self.service, self._member, self.defer_private, self._handling)
        client = self._new_client(RestyleClient, shard_count=None if settings.shards == "auto" else settings.shards)
        self.client = client
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.download_timeout_s))
        if self.listeners is not None:
            await self._start_leased(client, settings.token, settings.shards)
            return
        self._task = asyncio.create_task(client.start(settings.token), name="discord-client")
        waiter = asyncio.create_task(client.connected.wait())
        try:
            done, _ = await asyncio.wait(
                {self._task, waiter}, timeout=self.ready_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if self._task in done:
                raise self._start_error(self._task.exception())
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
            await self.stop()
            raise
        self._ready.set()
        self._task.add_done_callback(self._connection_ended)
        log.info("connected to Discord as %s", client.user)
        await self._sync_commands(client.tree)
        await self.upgrades.reconcile(client)

    def _new_client(self, cls: type, **shards: Any) -> Any:
        client = cls(
            self,
            intents=self._intents,
            max_ratelimit_timeout=self.max_ratelimit_wait_s,
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            allowed_mentions=discord.AllowedMentions.none(),
            proxy=self.config.discord.proxy,  # REST and every gateway connection, the resume URL's too
            **shards,
        )
        client.add_dynamic_items(JobButton)
        self._add_commands(client.tree)
        self.upgrades.install(client, client.tree)
        return client

    # Several front ends on one database: each shard's gateway session under a listener lease --

    async def _start_leased(self, client: Any, token: str, shards: Any) -> None:
        """Log in for REST only (results, status edits and follow-ups need no gateway), then
        contend for each shard's listener lease (bot/listener.py): a front end holds about
        shards / front ends of them and runs one gateway session per shard it holds. Discord sends
        every event of a shard to every session of that shard, so without the lease two front
        ends would each handle every mention, command and button."""
        assert self.listeners is not None
        try:
            await asyncio.wait_for(client.login(token), self.ready_timeout_s)
            count = shards if isinstance(shards, int) else (await client.http.get_bot_gateway())[0]
        except BaseException as exc:
            await self.stop()
            raise self._start_error(exc) from None
        self._ready.set()
        base = stream_name("discord", token)
        self._shard_base = base
        self._shard_clients = {}

        async def nothing() -> None:
            return None

        present = self.listeners.lease(f"{base}:frontend:{self.listeners.holder}")
        self._lease_tasks = [asyncio.create_task(keep_listening(present, nothing, nothing), name="discord-present")]
        for shard in range(count):
            lease = self.listeners.lease(f"{base}:shard:{shard}/{count}")
            self._lease_tasks.append(asyncio.create_task(keep_listening(
                lease,
                functools.partial(self._connect_shard, token, shard, count),
                functools.partial(self._disconnect_shard, shard),
                functools.partial(self._wants_shard, shard, count),
            ), name=f"discord-shard-{shard}"))  # fmt: skip
        log.info("logged in to Discord as %s; %d shard(s), each taken by one front end", client.user, count)
        await self._sync_commands(client.tree)
        await self.upgrades.reconcile(client)

    async def _wants_shard(self, shard: int, count: int, listening: bool) -> bool:
        """A fair share: at most ceil(shards / front ends alive); the one over its share gives
        up its highest shard, which a front end below its share then takes."""
        assert self.listeners is not None
        alive = await self.listeners.holders(f"{self._shard_base}:frontend:")
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
                raise self._start_error(task.exception())
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
        if self._ready.is_set() and not task.cancelled():
            self._ready.clear()
            exc = task.exception()
            log.error(
                "the Discord connection ended for good: %s", self._start_error(exc) if exc else "closed by Discord"
            )

    @staticmethod
    def _start_error(exc: BaseException | None) -> DiscordStartError:
        if isinstance(exc, discord.LoginFailure):
            return DiscordStartError(
                "Discord refused the bot token (401). Check [discord] token or RESTYLE_DISCORD_TOKEN."
            )
        if isinstance(exc, discord.PrivilegedIntentsRequired):
            return DiscordStartError(
                "Discord refused the Message Content intent (close code 4014), which [discord] reply_pictures"
                " needs to read pictures in replied-to messages. Turn on 'Message Content Intent' for the bot in"
                " the Developer Portal, or set reply_pictures = false (mentions with an attached picture still work)."
            )
        return DiscordStartError(f"Could not connect to Discord: {exc!r}")

    async def stop(self) -> None:
        self._ready.clear()
        for lease_task in self._lease_tasks:
            lease_task.cancel()  # closes its shard's session and gives the lease up
        await asyncio.gather(*self._lease_tasks, return_exceptions=True)
        self._lease_tasks = []
        for task in list(self._tasks) + self._status_edits.tasks():
            task.cancel()
        if self.client is not None and not self.client.is_closed():
            await self.client.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except BaseException:  # it was reported at start, or it ends with the close
                self._task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._library_urls.restore()

    async def _sync_commands(self, tree: app_commands.CommandTree) -> None:
        if tree.translator is None:
            await tree.set_translator(CatalogueTranslator())
        await sync_commands(tree, self.config.discord.guild_ids, self.service.admin, self._client)

    # Commands ------------------------------------------------------------------------------------

    def _add_commands(self, tree: app_commands.CommandTree) -> None:
        adapter = self

        @tree.command(name="restyle", description=N_("Restyle a picture with a text prompt"))
        @app_commands.describe(
            image=N_("The picture to restyle (PNG, JPEG, WebP or GIF)"),
            prompt=N_("The new style, e.g. rainy night with neon signs (with a style: words added to it)"),
            strength=N_("How much changes: 0.2–0.3 subtle, 0.4–0.6 clear, 0.7–0.9 heavy"),
            style=N_("A ready-made style (/styles lists them); it brings its own prompt and strength"),
            seed=N_("Same seed, same result (optional)"),
            steps=described(
                N_("Denoising steps, {low} to {high}, capped by your tier (optional)"), low=MIN_STEPS, high=MAX_STEPS
            ),
            sweep=described(
                N_("Try strengths {strengths} at once, side by side (costs {count} restyles; not on every tier)"),
                strengths=", ".join(f"{s:g}" for s in SWEEP_STRENGTHS),
                count=len(SWEEP_STRENGTHS),
            ),
        )
        async def restyle(
            interaction: discord.Interaction,
            image: discord.Attachment,
            prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS] | None = None,
            strength: app_commands.Range[float, MIN_STRENGTH, MAX_STRENGTH] | None = None,
            style: app_commands.Range[str, 1, 32] | None = None,
            seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
            steps: app_commands.Range[int, MIN_STEPS, MAX_STEPS] | None = None,
            sweep: bool | None = None,
        ) -> None:
            with adapter._handling():
                await adapter.on_restyle(interaction, image, prompt or "", strength, seed, steps, style, bool(sweep))

        @restyle.autocomplete("style")
        async def style_names(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            # Discord shows at most 25 choices, each name at most 100 characters.
            wanted = current.strip().lower()
            return [
                app_commands.Choice(name=f"{name} · {recipe.about or recipe.prompt}"[:100], value=name)
                for name, recipe in adapter.config.styles.items()
                if wanted in name
            ][:25]

        @tree.command(name="styles", description=N_("Ready-made styles for /restyle, with their strengths"))
        async def styles(interaction: discord.Interaction) -> None:
            with adapter._handling():
                await adapter.on_styles(interaction)

        @restyle.autocomplete("strength")
        async def strength_hints(interaction: discord.Interaction, current: Any) -> list[app_commands.Choice[float]]:
            tr = _tr(interaction)
            return [
                app_commands.Choice(name=tr.gettext("0.25 · subtle: keeps the layout, nudges colours"), value=0.25),
                app_commands.Choice(name=tr.gettext("0.5 · clear: new style, shapes kept"), value=0.5),
                app_commands.Choice(name=tr.gettext("0.8 · heavy: a rework"), value=0.8),
            ]

        async def restyle_message(interaction: discord.Interaction, message: discord.Message) -> None:
            with adapter._handling():
                await adapter.on_restyle_message(interaction, message)

        tree.add_command(app_commands.ContextMenu(name="Restyle image", callback=restyle_message))

        @tree.command(name="me", description=N_("Your tier, today's restyles and your waiting jobs"))
        async def me(interaction: discord.Interaction) -> None:
            with adapter._handling():
                await adapter.on_me(interaction)

        @tree.command(name="help", description=N_("How to restyle a picture"))
        async def help_(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(help_text(translator(interaction.locale.value)), ephemeral=True)

        @tree.command(name="cancel", description=N_("Cancel your waiting and running jobs"))
        async def cancel(interaction: discord.Interaction) -> None:
            with adapter._handling():
                await adapter.on_cancel(interaction)

        # Admins: hidden from members by default (server admins can change that in Integrations);
        # [bot] admins is what counts, checked on every use.
        @tree.command(name="ban", description=N_("Admins: stop a member using the bot and cancel their waiting jobs"))
        @app_commands.describe(
            member=N_("The member (pick them, or paste their user id)"), reason=N_("Why (kept in the audit log)")
        )
        @app_commands.default_permissions(administrator=True)
        @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
        @app_commands.allowed_installs(guilds=True, users=False)
        async def ban(
            interaction: discord.Interaction, member: discord.User, reason: app_commands.Range[str, 1, 300]
        ) -> None:
            with adapter._handling():
                await adapter.on_ban(interaction, member, reason, banned=True)

        @tree.command(name="unban", description=N_("Admins: let a banned member use the bot again"))
        @app_commands.describe(member=N_("The member (pick them, or paste their user id)"), reason=N_("Why (optional)"))
        @app_commands.default_permissions(administrator=True)
        @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
        @app_commands.allowed_installs(guilds=True, users=False)
        async def unban(
            interaction: discord.Interaction,
            member: discord.User,
            reason: app_commands.Range[str, 1, 300] | None = None,
        ) -> None:
            with adapter._handling():
                await adapter.on_ban(interaction, member, reason or "", banned=False)

        @tree.command(name="queue", description=N_("Admins: who is waiting, or the latest jobs"))
        @app_commands.describe(show=N_("waiting (the default), or log: the latest jobs with who asked what, where"))
        @app_commands.default_permissions(administrator=True)
        @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
        @app_commands.allowed_installs(guilds=True, users=False)
        async def queue(interaction: discord.Interaction, show: Literal["waiting", "log"] = "waiting") -> None:
            with adapter._handling():
                await adapter.on_queue(interaction, show)

        @tree.error
        async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
            cause = getattr(error, "original", error)
            if isinstance(cause, discord.HTTPException) and cause.code in (ANSWERED_ALREADY, UNKNOWN_INTERACTION):
                # 40060: another process on the token (or a replayed event) answered it; 10062: too
                # late. Either way nothing can be said on this interaction any more.
                log.info("interaction %s for /%s not answered here: %s", interaction.id,
                         getattr(interaction.command, "name", "?"), cause.text or cause.code)  # fmt: skip
                return
            log.error("command %s failed", getattr(interaction.command, "name", "?"), exc_info=error)
            await adapter._broke(interaction)

    async def _allowed_here(self, interaction: discord.Interaction) -> bool:
        """[access] allow-lists: outside them, say so privately (an interaction must be answered,
        and an ephemeral answer bothers no one else, so it is said every time)."""
        refused = self.service.admin.check_place(_place(interaction), interaction.locale.value)
        if refused is None:
            return True
        await self._tell(interaction, refused.message)
        return False

    @staticmethod
    def _member(user: discord.abc.User, lang: str | None = None) -> Member:
        return Member(PLATFORM, str(user.id), user.name, lang=lang)

    @staticmethod
    def _asker(interaction: discord.Interaction) -> Member:
        # interaction.locale: the member's Discord language (a discord.Locale, like "es-ES").
        return Member(PLATFORM, str(interaction.user.id), interaction.user.name, lang=interaction.locale.value)

    async def admitted(self, interaction: discord.Interaction) -> bool:
        """The flood guard, for every command, form and button before it is looked at: past the
        limit the first one hears "too fast" (privately) and the rest get no answer at all."""
        self._locales.saw(interaction.user.id, interaction.locale.value)
        refused = self.service.jobs.admit(self._asker(interaction))
        if refused is None:
            return True
        if not refused.quiet:
            await self._tell(interaction, refused.text)
        return False

    async def on_restyle(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: str,
        strength: float | None,
        seed: int | None,
        steps: int | None,
        style: str | None = None,
        sweep: bool = False,
    ) -> None:
        command: RestyleCommand | CommandError
        try:
            command = _command_from_options(prompt, strength, seed, steps, style, sweep=sweep)
        except _Unusable as exc:
            command = CommandError(exc.text)  # said after the place and the picture are checked
        picture = _Picture(image.url, image.filename, image.size, image.content_type)
        await self._request(interaction, picture, command, form=False)

    async def on_restyle_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        if not await self._allowed_here(interaction):
            return
        pictures = _pictures_in(message)
        if not pictures:
            await self._tell(
                interaction,
                _tr(interaction)
                .gettext(
                    "That message has no picture. Use **Restyle image** on a message with an attached or embedded"
                    " picture, or attach one to `/restyle`, for example:\n`{example}`"
                )
                .format(example=EXAMPLE),
            )
            return
        try:
            self._check_picture(pictures[0])
        except _Unusable as exc:
            await self._tell(interaction, exc.said(_tr(interaction)))
            return
        await interaction.response.send_modal(RestyleModal(self, pictures[0], interaction.locale.value))

    async def on_modal_submit(
        self, interaction: discord.Interaction, picture: _Picture, prompt: str, strength: str
    ) -> None:
        text = prompt
        strength = strength.strip()
        if strength:
            value = STRENGTH_WORDS.get(strength.lower(), strength)
            text = f"{prompt} strength={value}"
        await self._request(interaction, picture, text, form=True)

    async def _request(
        self, interaction: discord.Interaction, picture: _Picture, command: str | RestyleCommand | CommandError,
        *, form: bool,
    ) -> None:  # fmt: skip
        request = RestyleRequest(command, f"interaction:{interaction.id}")
        where = _InteractionRestyle(self, interaction, picture, form=form)
        await handle_restyle(self.service, self._asker(interaction), request, where)

    async def _defer(self, interaction: discord.Interaction) -> int | None:
        interaction.extras.setdefault("received_at", self._created_at(interaction))
        response = await interaction.response.defer(thinking=True)
        message_id = getattr(response, "message_id", None)
        if message_id is None:
            try:
                message_id = (await interaction.original_response()).id
            except discord.HTTPException:
                log.warning("could not learn the id of a deferred response; edits go to @original")
        return message_id

    def _created_at(self, interaction: discord.Interaction) -> float:
        """When the token's 15 minutes began: when Discord created the interaction (its snowflake),
        which is before the event reached us. Clamped to our clock: not after now, and not more
        than CREATED_AT_SLACK_S before (an interaction that old could not be answered at all, so a
        larger gap means our clock is off, not that the event was late)."""
        now = self._now()
        return min(now, max(interaction.created_at.timestamp(), now - CREATED_AT_SLACK_S))

    def _interaction_reply(self, interaction: discord.Interaction, message_id: int | None) -> dict[str, Any]:
        return {
            "kind": "interaction",
            "application_id": str(interaction.application_id),
            "token": interaction.token,
            "interaction_at": interaction.extras.get("received_at") or self._created_at(interaction),
            "channel_id": str(interaction.channel_id) if interaction.channel_id else None,
            "guild_id": str(interaction.guild_id) if interaction.guild_id else None,
            "user_id": str(interaction.user.id),
            "message_id": str(message_id) if message_id else None,
            "size_limit": int(getattr(interaction, "filesize_limit", 0) or DEFAULT_FILE_LIMIT),
            **_as_bot_there(interaction),
        }

    async def _broke(self, interaction: discord.Interaction) -> None:
        """Something failed on our side: never leave a public "thinking…" behind, say so privately."""
        deferred = interaction.response.type == discord.InteractionResponseType.deferred_channel_message
        if deferred and "job_id" not in interaction.extras:
            try:
                await self._refuse_deferred(interaction, _tr(interaction).gettext(BROKE))
            except discord.HTTPException as exc:
                log.warning("could not answer %s: %s", interaction.user, exc)
            return
        await self._tell(interaction, _tr(interaction).gettext(BROKE))

    async def _refuse_deferred(self, interaction: discord.Interaction, text: str) -> None:
        """A deferred ("thinking") response is public; a refusal is for the member alone, so the
        public one goes and an ephemeral follow-up says why."""
        if not await self._delete_original(interaction):
            # The first follow-up after a defer edits the "thinking" message and keeps it public
            # (Discord ignores the ephemeral flag on it): end that message neutrally first, or
            # the private refusal would be posted for everyone.
            try:
                await interaction.edit_original_response(content=_tr(interaction).gettext(NOT_STARTED), view=None)
            except discord.HTTPException as exc:
                log.warning("could not end the public response either (%s); the refusal is not sent", exc)
                return
        await interaction.followup.send(text, ephemeral=True)

    @staticmethod
    async def _delete_original(interaction: discord.Interaction) -> bool:
        try:
            await interaction.delete_original_response()
            return True
        except discord.NotFound:
            return True  # gone already
        except discord.HTTPException as exc:
            log.info("could not delete a deferred response: %s", exc)
            return False

    @staticmethod
    async def defer_private(interaction: discord.Interaction) -> None:
        """The first answer, before any database or network work: Discord drops an interaction
        not answered within 3 s (10062). Ephemeral, so the follow-up that replaces the "thinking"
        message (the first follow-up after a defer edits it) stays private too."""
        if not interaction.response.is_done():
            await interaction.response.defer(ephemeral=True, thinking=True)

    async def _tell(self, interaction: discord.Interaction, text: str) -> None:
        """An ephemeral answer, whether or not the interaction was answered already."""
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not answer %s: %s", interaction.user, exc)

    async def on_styles(self, interaction: discord.Interaction) -> None:
        await self.defer_private(interaction)
        await account.styles(self.config.styles, _CommandReply(self, interaction), interaction.locale.value)

    async def on_me(self, interaction: discord.Interaction) -> None:
        await self.defer_private(interaction)
        await account.me(self.service, self._asker(interaction), _CommandReply(self, interaction))

    async def on_cancel(self, interaction: discord.Interaction) -> None:
        await self.defer_private(interaction)
        await account.cancel(self.service, self._asker(interaction), _CommandReply(self, interaction))

    # Admins --------------------------------------------------------------------------------------

    async def on_ban(
        self, interaction: discord.Interaction, target: discord.abc.User, reason: str, *, banned: bool
    ) -> None:
        await self.defer_private(interaction)
        where = _CommandReply(self, interaction)
        await admin_commands.ban(
            self.service, self._asker(interaction), self._member(target), reason, where, banned=banned
        )

    async def on_queue(self, interaction: discord.Interaction, show: str) -> None:
        await self.defer_private(interaction)
        await admin_commands.queue(
            self.service, self._asker(interaction), _CommandReply(self, interaction), log=show == "log"
        )

    # Buttons -------------------------------------------------------------------------------------

    async def on_button(self, interaction: discord.Interaction, action: str, job_id: str) -> None:
        # The custom_id's action names: a format alone for a file, "files" for a sweep's.
        if action in OUTPUT_FORMATS:
            press = Press(presses.FILE, job_id, f"interaction:{interaction.id}", action)
        else:
            press = Press(presses.SWEEP_FILES if action == "files" else action, job_id, f"interaction:{interaction.id}")
        try:
            surface = await _PressReply.deferred(self, interaction, press)
            await handle_press(self.service, self._asker(interaction), press, surface)
        except Exception:
            log.exception("button %s on job %s failed", action, job_id)
            await self._broke(interaction)

    @staticmethod
    async def _withdraw(status: discord.WebhookMessage) -> None:
        """Take back a public status follow-up for a job that did not start; where it cannot be
        deleted it is ended neutrally, so nothing private is ever said in it."""
        try:
            await status.delete()
        except discord.NotFound:
            pass
        except discord.HTTPException as exc:
            log.info("could not delete a status follow-up (%s); ending it instead", exc)
            try:
                await status.edit(content=NOT_STARTED, view=None)
            except discord.HTTPException as exc2:
                log.warning("could not end a status follow-up either: %s", exc2)

    # "@bot prompt" replies (optional, needs the message-content intent) --------------------------

    async def on_message(self, message: discord.Message) -> None:
        client = self.client
        if not self.config.discord.message_replies or client is None or client.user is None:
            return
        if message.author.bot or not _addresses_bot(message, client.user.id):
            return
        lang = self._locales.of(message)
        refused = self.service.jobs.admit(self._member(message.author, lang))
        if refused is not None:
            if not refused.quiet:
                await self._safe_reply(message, refused.text, lang)
            return
        try:
            await self._mention_request(message, client.user.id, lang)
        except Exception:
            log.exception("an @mention request failed")
            await self._safe_reply(message, translator(lang).gettext(BROKE), lang)

    async def _mention_request(self, message: discord.Message, bot_id: int, lang: str | None = None) -> None:
        text = re.sub(rf"<@!?{bot_id}>", " ", message.content).strip()
        # Every gateway session on a token gets every message: two processes sharing one token
        # (or a replayed event) must still queue it once.
        request = RestyleRequest(text, f"message:{message.id}")
        where = _MentionRestyle(self, message, lang)
        await handle_restyle(self.service, self._member(message.author, lang), request, where)

    async def _safe_reply(self, message: discord.Message, text: str, lang: str | None = None) -> discord.Message | None:
        """Reply in the channel; where the bot may not post, tell the member by DM instead (in `lang`)."""
        try:
            return await message.reply(text, mention_author=False)
        except discord.Forbidden:
            log.info("no permission to reply in channel %s; telling %s by DM", message.channel.id, message.author.id)
            try:
                await message.author.send(
                    translator(lang)
                    .gettext(
                        "I am not allowed to post in {channel}, so I cannot restyle pictures there. Ask a moderator"
                        " to give me Send Messages, Attach Files and Read Message History there (a reply needs the"
                        " history), or use /restyle."
                    )
                    .format(channel=f"<#{message.channel.id}>")
                )
            except discord.HTTPException as exc:
                log.warning("could not DM %s either: %s", message.author.id, exc)
        except discord.HTTPException as exc:
            log.warning("could not reply in channel %s: %s", message.channel.id, exc)
        return None

    # Pictures in -----------------------------------------------------------------------------------

    def _check_picture(self, picture: _Picture) -> None:
        """What is checked before the form opens (before a network call): a picture, small enough."""
        problem = _not_a_picture(picture)
        if problem is not None:
            raise _Unusable(problem)
        if picture.size is not None and picture.size > self.max_picture_bytes:
            raise _Unusable(self._too_big(picture.size))

    def _too_big(self, size: int) -> Text:
        return too_big(size, self.max_picture_bytes)

    async def _download(self, picture: _Picture) -> bytes:
        """The picture's bytes, fetched now: Discord's attachment links are signed and expire."""
        assert self._session is not None
        discord_config = self.config.discord
        return await download_picture(self._session, picture, self.max_picture_bytes, discord_config.api_base,
                                      discord_config.proxy)  # fmt: skip

    # Status messages ---------------------------------------------------------------------------------

    def _status_lock(self, key: str) -> asyncio.Lock:
        return self._status_locks.setdefault(key, asyncio.Lock())

    async def job_updated(self, job: JobView) -> None:
        """Show the job's state in its status message (bot/chat/statuses.py)."""
        await self._statuses.updated(job)

    def _status_line(self, job: JobView) -> str:
        text = sweep_status(job) if job.sweep_id is not None else _status_text(job)
        reply = job.reply
        if (
            reply.get("kind") == "interaction"
            and self._now() - float(reply.get("interaction_at") or 0) > LATE_NOTE_AFTER_S
        ):
            note = LATE_NOTE if reply.get("bot_can_post", True) else LATE_NOTE_DM
            text += "\n" + translator(reply.get("lang")).gettext(note)
        return text

    async def _edit_status_now(self, job_id: str) -> None:
        """The first status, in the place of the deferred answer: at once."""
        await self._statuses.show_now(job_id)

    async def _finish_status(self, job_id: str, text: str) -> None:
        """The job ended without a result message (cancelled by a command): say so where the
        status was (`text`: an English msgid, said in the job's member's language)."""
        await self._statuses.end(job_id, text)

    async def _end_stale_status(self, job: JobView, text: str) -> None:
        """Past the interaction token's 15 minutes its status ("Restyling 60%" with a Cancel
        button) can only be edited as the bot, which works where the bot itself is in the channel
        (a server that installed it, or its own DM with the member). Elsewhere it stays as it was."""
        reply = job.reply
        if not (reply.get("bot_can_edit") and reply.get("message_id") and reply.get("channel_id")):
            return
        try:
            channel = self._client().get_partial_messageable(
                int(reply["channel_id"]), guild_id=_int(reply.get("guild_id"))
            )
            await self._timed(channel.get_partial_message(int(reply["message_id"])).edit(content=text, view=None))
        except (TimeoutError, DeliveryFailed, discord.DiscordException, aiohttp.ClientError) as exc:
            log.info("job %s: could not end the old status message: %r", job.id, exc)

    def _token_fresh(self, reply: dict[str, Any]) -> bool:
        return self._now() - float(reply.get("interaction_at") or 0) < TOKEN_TTL_S - TOKEN_MARGIN_S

    async def _edit(self, reply: dict[str, Any], **fields: Any) -> None:
        """Edit the job's status message: through the interaction token, or as the bot."""
        client = self._client()
        message_id = reply.get("message_id")
        if reply.get("kind") == "interaction":
            hook = _webhook(client, reply)
            if message_id is None:
                # The id of a deferred response was never learnt: it is the interaction's @original.
                await self._timed(_edit_original(hook, **fields))
                return
            await self._timed(hook.edit_message(int(message_id), **fields))
        else:
            channel = client.get_partial_messageable(int(reply["channel_id"]), guild_id=_int(reply.get("guild_id")))
            # The bot sent this status message itself, so its id is always known.
            await self._timed(channel.get_partial_message(int(reply["message_id"])).edit(**fields))

    async def _timed(self, awaitable: Awaitable[Any]) -> Any:
        # discord.py sleeps through any 429 on webhooks, however long: bound every call, so a
        # stuck request turns into a retry (results) or a logged miss (status) instead of a hang.
        return await asyncio.wait_for(awaitable, self.request_timeout_s)

    def _client(self) -> RestyleClient:
        if self.client is None or not self._ready.is_set():
            raise DeliveryFailed("the Discord connection is not up yet")
        return self.client

    # Results -----------------------------------------------------------------------------------------

    async def deliver_result(self, delivery: Delivery) -> None:
        await self._wait_ready()
        await self._send_result(delivery)

    async def _send_result(self, delivery: Delivery, key: str | None = None) -> None:
        """A result with its buttons where its job's reply says (see _send_outcome); `key`: the
        send's own name where it is not the job's delivery (a kept result of a sweep)."""
        job = delivery.job
        limit = int(job.reply.get("size_limit") or DEFAULT_FILE_LIMIT)
        files = await _files_within(lambda max_bytes: _result_files(delivery, max_bytes), limit, "the files")
        links = self.service.compare_links
        compare_url = links.url(job.id, self.service.clock.now()) if links is not None else None
        view = result_view(job.id, compare_url, job.reply.get("lang"))
        # One message, no steps to record: a retried post carries the same nonce (_send_outcome).
        await self._send_outcome(job, _result_text(job), files, view, key=key)

    async def deliver_sweep(self, sweep: SweepDelivery) -> None:
        """The whole sweep in one message where its lead's result would go (its status message
        while the token lasts, else the channel, else a DM): the 3-up picture, the caption, a
        Keep button per done job and the files button. Dispatch records it sent, once."""
        await self._wait_ready()
        lead = sweep.jobs[0]
        lang = lead.reply.get("lang")
        limit = int(lead.reply.get("size_limit") or DEFAULT_FILE_LIMIT)
        files = await _files_within(lambda max_bytes: sweep_message_files(sweep, max_bytes), limit, "the sweep's files")
        tr = translator(lang)
        text = "🎚 " + sweep_caption(sweep, SWEEP_CAPTION_LIMIT, tr)
        # Not sweep_steps' sheet-or-album: a Discord message carries a picture and buttons together,
        # so the sheet, or where none was drawn every done result (sweep_message_files), is one post.
        await self._send_outcome(lead, text, files, sweep_view(sweep, keep_choices(sweep, tr), lang))

    async def deliver_failure(self, job: JobView) -> None:
        await self._wait_ready()
        tr = translator(job.reply.get("lang"))
        error = failure_reason(job, tr, N_("The picture engine failed on this job; try again."))
        text = f"❌ {error}\n“{_short(job.prompt, 200)}”"

        async def no_files(max_bytes: int | None = None) -> list[discord.File]:
            return []

        # A sweep with nothing done is told once, in the place of its one status.
        await self._send_outcome(job, text, no_files, None, key=status_key(job))

    async def _wait_ready(self) -> None:
        # Deliveries left from the last run start before the connection is up.
        try:
            await asyncio.wait_for(self._ready.wait(), self.ready_timeout_s)
        except TimeoutError:
            raise DeliveryFailed("the Discord connection is not up") from None

    async def _send_outcome(
        self,
        job: JobView,
        text: str,
        files: Callable[..., Awaitable[list[discord.File]]],
        view: ui.View | None,
        *,
        key: str | None = None,
    ) -> None:
        """Where the member will see it: the status message while it can be edited, else a new
        message in the channel mentioning them, else a DM. Raises DeliveryFailed to be retried,
        permanent where Discord's error code says a retry cannot succeed. Each create carries a
        nonce fixed per job (or `key`) and place (with enforce_nonce), so a retried send that did
        reach Discord returns the first message instead of posting a second."""
        key = key or job.id
        self._statuses.delivered(key)  # no progress edit may land on the result
        reply = job.reply
        user_id = int(reply["user_id"])
        tr = translator(reply.get("lang"))
        try:
            async with self._status_lock(key):
                note = ""
                can_edit = (self._token_fresh(reply) if reply.get("kind") == "interaction"
                            else bool(reply.get("message_id")))  # an interaction's status can be @original  # fmt: skip
                if can_edit:
                    try:
                        await self._edit(reply, content=text, attachments=await files(), view=view)
                        return
                    except (discord.NotFound, discord.Forbidden) as exc:
                        log.info("job %s: the status message is gone (%s); posting anew", job.id, exc)
                    except discord.HTTPException as exc:
                        # 401: the token expired early; 40005 too large, 50083 archived thread: a
                        # new message elsewhere can work. Anything else: retry.
                        if exc.status != 401 and exc.code not in (TOO_LARGE, ARCHIVED_THREAD):
                            raise
                        log.info("job %s: could not edit the status message (%s); posting anew", job.id, exc)
                if not can_edit and reply.get("kind") == "interaction":
                    await self._end_stale_status(job, _stale_text(text, job.reply.get("lang")))
                if reply.get("channel_id") and not reply.get("bot_can_post", True):
                    note = tr.gettext("(I cannot post in the channel you asked in, so here it is.)") + "\n"
                elif reply.get("channel_id"):
                    channel = self._client().get_partial_messageable(
                        int(reply["channel_id"]), guild_id=_int(reply.get("guild_id"))
                    )
                    where = f"<#{reply['channel_id']}>"
                    try:
                        await self._timed(
                            channel.send(
                                content=f"<@{user_id}> {text}",
                                files=await files(),
                                view=view if view is not None else discord.utils.MISSING,
                                allowed_mentions=discord.AllowedMentions(
                                    everyone=False, roles=False, replied_user=False, users=[discord.Object(user_id)]
                                ),
                                nonce=_nonce(key, "c"),
                            )
                        )
                        return
                    except discord.NotFound:
                        note = tr.gettext("(The channel you asked in is gone, so here it is.)") + "\n"
                    except discord.Forbidden as exc:  # 50001 missing access, 50013 missing permissions
                        # Discord's own names for the permissions, as its server settings show them.
                        needs = (
                            tr.pgettext("Discord permission", "View Channel")
                            if exc.code == MISSING_ACCESS
                            else tr.pgettext("Discord permission", "Send Messages and Attach Files")
                        )
                        note = tr.gettext("(I am not allowed to post in {where}: I need {needs} there. So here it is.)")\
                            .format(where=where, needs=needs) + "\n"  # fmt: skip
                    except discord.HTTPException as exc:
                        if exc.code == ARCHIVED_THREAD:
                            note = (
                                tr.gettext("(The thread {where} is archived, so here it is.)").format(where=where)
                                + "\n"
                            )
                        elif exc.code == TOO_LARGE:
                            note = tr.gettext("(The pictures were too large for {where}, so here they are.)")\
                                .format(where=where) + "\n"  # fmt: skip
                        elif exc.status < 500 and exc.status != 429:
                            raise await refused_for_good(f"Discord refused the post in {where}: {exc}") from exc
                        else:
                            raise
                    log.info("job %s: %s; sending a DM", job.id, note.strip("()\n"))
                try:
                    dm = await self._timed(self._client().create_dm(discord.Object(user_id)))
                    await self._timed(dm.send(content=note + text, files=await files(DM_FILE_LIMIT),
                                              view=view if view is not None else discord.utils.MISSING,
                                              nonce=_nonce(key, "d")))  # fmt: skip
                except (discord.Forbidden, discord.NotFound) as exc:
                    # The DM was the last place to reach the member: nobody is left to tell.
                    raise await refused_for_good(f"member {user_id} cannot be reached (DMs closed): {exc}") from exc
                except discord.HTTPException as exc:
                    if exc.code == CANNOT_DM:  # sometimes a 400, not a 403
                        raise await refused_for_good(f"member {user_id} cannot be reached (DMs closed): {exc}") from exc
                    if exc.status < 500 and exc.status != 429:
                        raise await refused_for_good(f"Discord refused the DM to member {user_id}: {exc}") from exc
                    raise
        except DeliveryFailed:
            raise
        except (TimeoutError, discord.DiscordException, aiohttp.ClientError) as exc:
            # Rate limited past our patience, a 5xx, the network: the service retries later.
            self._statuses.undelivered(key)
            raise DeliveryFailed(f"Discord did not take the message: {exc!r}") from exc


async def _files_within(
    make: Callable[[int], list[tuple[str, bytes]]], limit: int, what: str
) -> Callable[[int | None], Awaitable[list[discord.File]]]:
    """A message's files made (off the loop) within `limit` bytes, and made again where a smaller
    limit applies when it is sent (a DM's)."""

    async def made_within(max_bytes: int) -> list[tuple[str, bytes]]:
        try:
            return await asyncio.to_thread(make, max_bytes)
        except (OSError, PictureError) as exc:
            raise DeliveryFailed(f"could not prepare {what}: {exc}") from exc

    first = await made_within(limit)

    async def files(max_bytes: int | None = None) -> list[discord.File]:
        chosen = first if max_bytes is None or max_bytes >= limit else await made_within(max_bytes)
        return [discord.File(io.BytesIO(data), filename=name) for name, data in chosen]

    return files


# Where a slash command answers ---------------------------------------------------------------------


@dataclass
class _StatusMessages:
    """Discord's parts of the status lifecycle (bot/chat/statuses.py StatusPlace): Markdown
    lines with a late note, edits through the interaction token while it is fresh (else as the
    bot where it can), one edit of a message at a time with its delivery."""

    adapter: DiscordAdapter

    def find(self, key: str, job: JobView) -> Budget | None:
        # One edit per edit_interval_s, always ending on the latest state (a throttled update
        # is sent when the interval is over, not dropped); none before the connection is up.
        return Budget(self.adapter.edit_interval_s) if self.adapter._ready.is_set() else None

    def line(self, job: JobView) -> tuple[str, bool]:
        return self.adapter._status_line(job), True

    def held_line(self, job: JobView, held: float) -> str:
        held_text = texts.held_result(held, job.tier, DISCORD_STYLE, translator(job.reply.get("lang")))
        what = sweep_status(job) if job.sweep_id is not None else _status_what(job)
        return f"⌛ {held_text}\n{what}"

    async def edit(self, key: str, job: JobView, text: str, cancel: bool) -> EditOutcome:
        adapter = self.adapter
        async with adapter._status_lock(key):
            if not adapter._statuses.live(key):
                return GONE  # its delivery took the message over, or it ended
            if not adapter._ready.is_set():
                return FAILED  # reconnecting: the next update tries again
            reply = job.reply
            if reply.get("kind") == "interaction" and not adapter._token_fresh(reply):
                return GONE  # the status can no longer be edited; the result comes by message
            try:
                view = status_view(key, reply.get("lang")) if cancel else None
                await adapter._edit(reply, content=text, view=view)
            except (TimeoutError, discord.DiscordException, aiohttp.ClientError) as exc:
                log.warning("job %s: status edit failed: %r", key, exc)
                return FAILED  # best effort; the next update tries again
            return SHOWN

    async def end(self, key: str, text: str) -> None:
        adapter = self.adapter
        async with adapter._status_lock(key):
            job = await adapter.service.jobs.job(key)
            if job is None:
                return
            said = translator(job.reply.get("lang")).gettext(text)
            if job.reply.get("kind") != "interaction" or adapter._token_fresh(job.reply):
                try:
                    await adapter._edit(job.reply, content=said, view=None)
                except (TimeoutError, discord.DiscordException, aiohttp.ClientError) as exc:
                    log.info("job %s: could not mark the status message: %r", key, exc)
            else:
                await adapter._end_stale_status(job, said)


@dataclass
class _CommandReply:
    """Where a slash command was given (bot/chat/surface.py): answered privately (ephemeral)."""

    adapter: DiscordAdapter
    interaction: discord.Interaction
    style: Style = field(default_factory=lambda: DISCORD_STYLE)
    private: bool = True

    async def reply(self, text: str) -> None:
        await self.adapter._tell(self.interaction, text)

    async def finish_status(self, job_id: str, text: str) -> None:
        await self.adapter._finish_status(job_id, text)


# Where a button was pressed -------------------------------------------------------------------------


@dataclass
class _PressReply:
    """Where a button was pressed (bot/chat/surface.py PressSurface). Discord drops a press not
    answered within 3 s (10062), so it is deferred when this is made, before any database work
    (`deferred`): the deferral is the press's acknowledgement, and everything said after it is
    a follow-up. Files, refusals and notices are ephemeral (only the presser sees them); a new
    job's status is a public follow-up of its own."""

    adapter: DiscordAdapter
    interaction: discord.Interaction
    status: discord.WebhookMessage | None = None  # a new job's status follow-up, once sent
    result_name: str = "restyled"  # as the result message's own file

    @classmethod
    async def deferred(cls, adapter: DiscordAdapter, interaction: discord.Interaction, press: Press) -> _PressReply:
        if press.action in (presses.FILE, presses.SWEEP_FILES, presses.COMPARE):
            # Private "thinking": its first follow-up (the file, or why not) replaces it, privately.
            await adapter.defer_private(interaction)
        else:
            # As an update of the message pressed (type 6): nothing shows, so a stranger's or a
            # refused press leaves no trace in the channel. After it every follow-up is a new
            # message that keeps its ephemeral flag (only the first follow-up after a type-5
            # defer replaces the "thinking" message and turns public; discord-api-docs, Create
            # Followup Message), and @original stays the message pressed.
            await interaction.response.defer()
        interaction.extras.setdefault("received_at", adapter._created_at(interaction))
        return cls(adapter, interaction)

    @property
    def file_limit(self) -> int:
        return int(getattr(self.interaction, "filesize_limit", 0) or DEFAULT_FILE_LIMIT)

    @property
    def files_limit(self) -> int:
        return file_budget(self.file_limit, len(SWEEP_STRENGTHS))  # one message carries them all

    @property
    def picture_limit(self) -> int:
        return self.file_limit

    def _tr(self) -> Translator:
        return _tr(self.interaction)

    async def notice(self, text: str) -> None:
        await self.adapter._tell(self.interaction, text)

    async def acknowledge(self, text: str | None = None) -> None:
        """The deferral made when the press came acknowledged it; a passing word would be an
        ephemeral message that stays, so none is sent."""

    def place_refusal(self, lang: str | None) -> Refused | None:
        refused = self.adapter.service.admin.check_place(_place(self.interaction), lang)
        # An ephemeral answer bothers no one else: it is said every time, never quietly.
        return dataclasses.replace(refused, quiet=False) if refused is not None else None

    async def reply_data(self, job: JobView) -> dict[str, Any]:
        """The new job's status is a public follow-up, sent now: its id goes in the job's reply."""
        self.status = await self.interaction.followup.send(self._tr().gettext("⏳ Got it…"), wait=True)
        return self.adapter._interaction_reply(self.interaction, self.status.id)

    async def queued(self, accepted: Accepted, reply: dict[str, Any]) -> None:
        self.interaction.extras["job_id"] = accepted.job_id
        await self.adapter._edit_status_now(accepted.job_id)

    async def not_started(self) -> None:
        if self.status is not None:
            await self.adapter._withdraw(self.status)
            self.status = None

    async def cancelling(self, job_id: str) -> None:
        # Before the service cancels: an edit already waiting could otherwise land after "Cancelled".
        self.adapter._statuses.stop(job_id)

    async def finish_status(self, job_id: str, text: str) -> None:
        """The press's own token edits the status it was pressed on (@original): fresh, even where
        the job's token is past its 15 minutes. A sweep's Cancel (on its lead) stops all of it."""

        async def on_message_pressed(key: str, text: str) -> None:
            await self.interaction.edit_original_response(content="✖️ " + self._tr().gettext(text), view=None)

        await self.adapter._statuses.end(job_id, text, say=on_message_pressed)

    async def send_file(self, name: str, data: bytes) -> None:
        await self.interaction.followup.send(file=discord.File(io.BytesIO(data), filename=name), ephemeral=True)

    async def send_files(self, files: list[tuple[str, bytes]]) -> None:
        named = [discord.File(io.BytesIO(data), filename=name) for name, data in files]
        await self.interaction.followup.send(files=named, ephemeral=True)

    async def send_picture(self, data: bytes, caption: str) -> None:
        """Privately, like the files. (Discord's results carry their before-after picture already,
        bot/adapters/discord/files.py, so no button of theirs asks for it: a Telegram button does.)"""
        picture = discord.File(io.BytesIO(data), filename="before-after.jpg")
        await self.interaction.followup.send(caption, file=picture, ephemeral=True)

    async def send_result(self, delivery: Delivery) -> None:
        """As a delivered result (its files and buttons), in a new follow-up: the sweep's message
        stays, so another of its results can be kept too."""
        adapter = self.adapter
        status = await self.interaction.followup.send(self._tr().gettext("⏳ Got it…"), wait=True)
        # The same path as a delivered result, to the follow-up just made (the press's token is
        # fresh; past it, the channel or a DM as for any result).
        reply = {**delivery.job.reply, **adapter._interaction_reply(self.interaction, status.id)}
        job = dataclasses.replace(delivery.job, reply=reply)
        try:
            await adapter._send_result(dataclasses.replace(delivery, job=job), key=f"k{self.interaction.id}")
        except BaseException:
            await adapter._withdraw(status)
            raise
