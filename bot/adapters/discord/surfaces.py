"""Where a slash command was given and where a button was pressed, on Discord (the surfaces of
bot/chat/surface.py that bot/chat/account.py, admin.py and presses.py answer on). The restyle
requests' surfaces are restyle.py's."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from typing import Any, Protocol

import discord

from bot.adapters.discord.delivery import OutcomeSender
from bot.adapters.discord.files import DEFAULT_FILE_LIMIT
from bot.adapters.discord.parsing import _place
from bot.adapters.discord.statuses import withdraw
from bot.adapters.discord.sweep import file_budget
from bot.adapters.discord.texts import DISCORD_STYLE, _tr
from bot.chat import presses
from bot.chat.presses import Press
from bot.chat.statuses import StatusFollower
from bot.chat.surface import Style
from bot.commands import SWEEP_STRENGTHS
from bot.core.types import Accepted, Delivery, JobView, Refused
from bot.i18n import Translator
from bot.service import RestyleService


class _Front(Protocol):
    """The Discord adapter's parts these surfaces use (the adapter is not imported here)."""

    @property
    def service(self) -> RestyleService: ...
    @property
    def _statuses(self) -> StatusFollower: ...
    @property
    def _outcomes(self) -> OutcomeSender: ...
    def _created_at(self, interaction: discord.Interaction) -> float: ...
    async def defer_private(self, interaction: discord.Interaction) -> None: ...
    async def _tell(self, interaction: discord.Interaction, text: str) -> None: ...
    def _interaction_reply(self, interaction: discord.Interaction, message_id: int | None) -> dict[str, Any]: ...
    async def _edit_status_now(self, job_id: str) -> None: ...
    async def _finish_status(self, job_id: str, text: str) -> None: ...


@dataclass
class _CommandReply:
    """Where a slash command was given (bot/chat/surface.py): answered privately (ephemeral)."""

    adapter: _Front
    interaction: discord.Interaction
    style: Style = field(default_factory=lambda: DISCORD_STYLE)
    private: bool = True

    async def reply(self, text: str) -> None:
        await self.adapter._tell(self.interaction, text)

    async def finish_status(self, job_id: str, text: str) -> None:
        await self.adapter._finish_status(job_id, text)


@dataclass
class _PressReply:
    """Where a button was pressed (bot/chat/surface.py PressSurface). Discord drops a press not
    answered within 3 s (10062), so it is deferred when this is made, before any database work
    (`deferred`): the deferral is the press's acknowledgement, and everything said after it is
    a follow-up. Files, refusals and notices are ephemeral (only the presser sees them); a new
    job's status is a public follow-up of its own."""

    adapter: _Front
    interaction: discord.Interaction
    status: discord.WebhookMessage | None = None  # a new job's status follow-up, once sent
    result_name: str = "restyled"  # as the result message's own file

    @classmethod
    async def deferred(cls, adapter: _Front, interaction: discord.Interaction, press: Press) -> _PressReply:
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
            await withdraw(self.status)
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
            await adapter._outcomes.send_result(dataclasses.replace(delivery, job=job), key=f"k{self.interaction.id}")
        except BaseException:
            await withdraw(status)
            raise
