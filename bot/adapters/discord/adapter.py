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

This module holds the event handlers; what they hand on lives by concern (the package's
docstring lists them): gateway.py connects, commands.py registers the commands, statuses.py
edits the status message, delivery.py sends the outcome, surfaces.py and restyle.py answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import aiohttp
import discord
from discord import app_commands

from bot.adapters.discord.command_sync import sync_commands
from bot.adapters.discord.commands import add_commands
from bot.adapters.discord.connection import RestyleClient, _as_bot_there
from bot.adapters.discord.delivery import OutcomeSender
from bot.adapters.discord.files import DEFAULT_FILE_LIMIT
from bot.adapters.discord.gateway import DiscordStartError, Gateway
from bot.adapters.discord.locales import RecentLocales
from bot.adapters.discord.markup import RestyleModal
from bot.adapters.discord.parsing import (
    STRENGTH_WORDS,
    _addresses_bot,
    _command_from_options,
    _not_a_picture,
    _Picture,
    _pictures_in,
    _place,
    _Unusable,
)
from bot.adapters.discord.pictures import download_picture, too_big
from bot.adapters.discord.restyle import _InteractionRestyle, _MentionRestyle
from bot.adapters.discord.statuses import StatusMessages
from bot.adapters.discord.surfaces import _CommandReply, _PressReply
from bot.adapters.discord.texts import BROKE, EXAMPLE, NOT_STARTED, PLATFORM, _tr
from bot.adapters.discord.translator import CatalogueTranslator
from bot.adapters.discord.upgrades import DiscordUpgrades
from bot.chat import account, presses
from bot.chat import admin as admin_commands
from bot.chat.presses import Press, handle_press
from bot.chat.restyle import RestyleRequest, handle_restyle
from bot.commands import OUTPUT_FORMATS, CommandError, RestyleCommand
from bot.config import Config
from bot.core.types import Delivery, JobView, Member, SweepDelivery
from bot.i18n import Text, translator
from bot.listener import Listeners
from bot.service import RestyleService

log = logging.getLogger("bot.discord")

CREATED_AT_SLACK_S = 5.0  # an interaction must be answered within 3 s of its creation: older is a clock off


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
        self._download_timeout_s = download_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self.gateway = Gateway(config, self, self._install, ready_timeout_s=ready_timeout_s,
                               max_ratelimit_wait_s=max_ratelimit_wait_s)  # fmt: skip
        status_messages = StatusMessages(service, self.gateway, edit_interval_s=edit_interval_s,
                                         request_timeout_s=request_timeout_s)  # fmt: skip
        self._statuses = status_messages.follower
        self._status_edits = self._statuses.throttle
        self._outcomes = OutcomeSender(service, self.gateway, status_messages)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locales = RecentLocales()  # members' languages, for answering their @mentions
        self.messages_handled = 0  # message events whose handler has finished (see RestyleClient.on_message)
        # Several front ends on one database (set by the app): each shard's gateway session is
        # held by one of them (see Gateway._start_leased); None (one process): every shard here.
        self.listeners: Listeners | None = None

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

    @property
    def client(self) -> RestyleClient | None:
        return self.gateway.client

    # Start and stop ------------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.config.discord
        if not settings.token:
            raise DiscordStartError("No Discord token: set [discord] token or RESTYLE_DISCORD_TOKEN.")
        self.upgrades = DiscordUpgrades(self.service, self._member, self.defer_private, self._handling)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._download_timeout_s))
        try:
            client = await self.gateway.start(settings.token, self.listeners)
        except BaseException:
            await self.stop()
            raise
        await self._sync_commands(client.tree)
        await self.upgrades.reconcile(client)

    def _install(self, client: Any) -> None:
        """What each new client (every shard's) carries: the commands and the upgrades' handlers."""
        add_commands(client.tree, self)
        self.upgrades.install(client, client.tree)

    async def stop(self) -> None:
        await self.gateway.stop_listening()
        for task in list(self._tasks) + self._status_edits.tasks():
            task.cancel()
        await self.gateway.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _sync_commands(self, tree: app_commands.CommandTree) -> None:
        if tree.translator is None:
            await tree.set_translator(CatalogueTranslator())
        await sync_commands(tree, self.config.discord.guild_ids, self.service.admin, self.gateway.live_client)

    # Commands ------------------------------------------------------------------------------------

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
        now = self.service.clock.now()
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

    # Status messages and results: statuses.py and delivery.py ---------------------------------------

    async def job_updated(self, job: JobView) -> None:
        """Show the job's state in its status message (bot/chat/statuses.py)."""
        await self._statuses.updated(job)

    async def _edit_status_now(self, job_id: str) -> None:
        """The first status, in the place of the deferred answer: at once."""
        await self._statuses.show_now(job_id)

    async def _finish_status(self, job_id: str, text: str) -> None:
        """The job ended without a result message (cancelled by a command): say so where the
        status was (`text`: an English msgid, said in the job's member's language)."""
        await self._statuses.end(job_id, text)

    async def deliver_result(self, delivery: Delivery) -> None:
        await self._outcomes.deliver_result(delivery)

    async def deliver_sweep(self, sweep: SweepDelivery) -> None:
        await self._outcomes.deliver_sweep(sweep)

    async def deliver_failure(self, job: JobView) -> None:
        await self._outcomes.deliver_failure(job)
