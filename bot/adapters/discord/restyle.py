"""Where a Discord restyle request came (bot/chat/surface.py RestyleSurface): a /restyle
command or a "Restyle image" form (an interaction), or an "@bot prompt" message. The flow itself
is bot/chat/restyle.py; these hold only Discord's parts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

import discord

from bot.adapters.discord.files import DEFAULT_FILE_LIMIT
from bot.adapters.discord.parsing import _not_a_picture, _Picture, _place, _Unusable
from bot.adapters.discord.pictures import pictures_for
from bot.adapters.discord.texts import PLATFORM, _refusal_text
from bot.chat.surface import Found
from bot.commands import CommandError
from bot.config import Config
from bot.core.types import Accepted, Refused
from bot.i18n import Text, Translator, translator
from bot.moderation import Place
from bot.service import RestyleService


class _Front(Protocol):
    """The Discord adapter's parts a request's surface uses (the adapter is not imported here)."""

    @property
    def config(self) -> Config: ...
    @property
    def service(self) -> RestyleService: ...
    @property
    def client(self) -> discord.Client | None: ...
    @property
    def max_picture_bytes(self) -> int: ...
    def _too_big(self, size: int) -> Text: ...
    async def _download(self, picture: _Picture) -> bytes: ...
    async def _defer(self, interaction: discord.Interaction) -> int | None: ...
    async def _tell(self, interaction: discord.Interaction, text: str) -> None: ...
    async def _refuse_deferred(self, interaction: discord.Interaction, text: str) -> None: ...
    async def _delete_original(self, interaction: discord.Interaction) -> bool: ...
    def _interaction_reply(self, interaction: discord.Interaction, message_id: int | None) -> dict[str, Any]: ...
    async def _edit_status_now(self, job_id: str) -> None: ...
    async def _safe_reply(
        self, message: discord.Message, text: str, lang: str | None = None
    ) -> discord.Message | None: ...


@dataclass
class _InteractionRestyle:
    """A /restyle command or a "Restyle image" form (bot/chat/surface.py RestyleSurface). What
    needs no network is answered at once, ephemerally; the download defers first (Discord drops
    an interaction not answered within 3 s), and the deferred ("thinking") response becomes the
    job's status message."""

    adapter: _Front
    interaction: discord.Interaction
    picture: _Picture
    form: bool  # the place and the picture were checked when the form opened
    deferred: bool = False
    message_id: int | None = None  # the deferred response's

    @property
    def max_download_bytes(self) -> int:
        return self.adapter.max_picture_bytes

    def place_refusal(self, lang: str | None) -> Refused | None:
        if self.form:
            return None  # checked when the form was opened (on_restyle_message)
        refused = self.adapter.service.admin.check_place(_place(self.interaction), self.interaction.locale.value)
        # Said every time: an interaction must be answered, and an ephemeral answer bothers no one else.
        return None if refused is None else dataclasses.replace(refused, quiet=False)

    async def find_picture(self) -> Found | str:
        problem = _not_a_picture(self.picture)
        return (
            Found(self.picture.size) if problem is None else problem.render(translator(self.interaction.locale.value))
        )

    def too_big(self, size: int | None, tr: Translator) -> str:
        return self.adapter._too_big(size or 0).render(tr)

    def bad_command(self, error: CommandError, tr: Translator) -> str:
        if not self.form:
            return error.render(tr)  # a slash option's own error says how to write it
        hint = tr.gettext("For example: prompt `rainy night with neon signs`, strength `0.5`.")
        return f"{error.render(tr)}\n{hint}"

    async def download(self) -> bytes | str:
        self.message_id = await self.adapter._defer(self.interaction)
        self.deferred = True
        try:
            return await self.adapter._download(self.picture)
        except _Unusable as exc:
            return exc.said(translator(self.interaction.locale.value))

    async def refuse(self, text: str) -> None:
        if self.deferred:
            await self.adapter._refuse_deferred(self.interaction, text)
        else:
            await self.adapter._tell(self.interaction, text)

    def refusal_text(self, refused: Refused) -> str:
        return _refusal_text(refused)

    async def reply_data(self) -> dict[str, Any] | None:
        return self.adapter._interaction_reply(self.interaction, self.message_id)

    async def not_started(self) -> None:
        await self.adapter._delete_original(self.interaction)

    async def answered_already(self) -> None:
        # The same interaction seen again (Discord refuses a second acknowledgement, so this is
        # a second process on the token, or a replay): its response is the first copy's status.
        pass

    async def queued(self, accepted: Accepted, reply: dict[str, Any]) -> None:
        self.interaction.extras["job_id"] = accepted.job_id  # the response is now the job's status message
        await self.adapter._edit_status_now(accepted.job_id)


@dataclass
class _MentionRestyle:
    """An "@bot prompt" message (bot/chat/surface.py RestyleSurface): answered with replies in
    the channel (a DM where the bot may not post); a "Got it" reply, sent once the picture is
    in, becomes the job's status message."""

    adapter: _Front
    message: discord.Message
    lang: str | None
    picture: _Picture | None = None
    status: discord.Message | None = None  # the "Got it" reply

    @property
    def max_download_bytes(self) -> int:
        return self.adapter.max_picture_bytes

    @property
    def _guild_id(self) -> int | None:
        # message.guild is None for a server not (yet) in the cache: the channel still knows it.
        message = self.message
        return message.guild.id if message.guild else getattr(message.channel, "guild_id", None)

    @property
    def _example(self) -> str:
        client = self.adapter.client
        return f"`@{client.user.name if client and client.user else 'bot'} rainy night with neon signs strength=0.5`"

    def place_refusal(self, lang: str | None) -> Refused | None:
        channel, guild_id = self.message.channel, self._guild_id
        place = Place(PLATFORM, chat_id=channel.id, guild_id=guild_id, private=guild_id is None,
                      parent_id=getattr(channel, "parent_id", None))  # fmt: skip
        return self.adapter.service.admin.check_place(place, lang)

    async def find_picture(self) -> Found | str:
        message, tr = self.message, translator(self.lang)
        pictures = await pictures_for(message)
        if not pictures and message.reference and not self.adapter.config.discord.reply_pictures:
            return tr.gettext("I cannot see pictures in the messages you reply to here; attach the picture to "
                              "your mention instead, like {example}.").format(example=self._example)  # fmt: skip
        if not pictures:
            return tr.gettext("Reply to a message with a picture (or attach one) and describe a style, like "
                              "{example}.").format(example=self._example)  # fmt: skip
        self.picture = pictures[0]
        problem = _not_a_picture(self.picture)
        return Found(self.picture.size) if problem is None else problem.render(tr)

    def too_big(self, size: int | None, tr: Translator) -> str:
        return self.adapter._too_big(size or 0).render(tr)

    def bad_command(self, error: CommandError, tr: Translator) -> str:
        hint = tr.gettext("For example: {example}").format(example=self._example)
        return f"{error.render(tr)}\n{hint}"

    async def download(self) -> bytes | str:
        assert self.picture is not None  # find_picture found it
        try:
            return await self.adapter._download(self.picture)
        except _Unusable as exc:
            return exc.said(translator(self.lang))

    async def refuse(self, text: str) -> None:
        if self.status is not None:
            await self.status.edit(content=text)
        else:
            await self.adapter._safe_reply(self.message, text, self.lang)

    def refusal_text(self, refused: Refused) -> str:
        return _refusal_text(refused, example=self._example)

    async def reply_data(self) -> dict[str, Any] | None:
        self.status = await self.adapter._safe_reply(
            self.message, translator(self.lang).gettext("⏳ Got it…"), self.lang
        )
        if self.status is None:
            return None  # nowhere to answer: nothing starts
        guild_id = self._guild_id
        return {
            "kind": "message",
            "channel_id": str(self.message.channel.id),
            "guild_id": str(guild_id) if guild_id else None,
            "user_id": str(self.message.author.id),
            "message_id": str(self.status.id),
            "size_limit": DEFAULT_FILE_LIMIT,
        }

    async def not_started(self) -> None:
        assert self.status is not None  # reply_data sent it
        await self.status.delete()

    async def answered_already(self) -> None:
        assert self.status is not None  # reply_data sent it
        await self.status.delete()  # the first copy's status message tells it

    async def queued(self, accepted: Accepted, reply: dict[str, Any]) -> None:
        await self.adapter._edit_status_now(accepted.job_id)
