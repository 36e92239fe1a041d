"""A job's status message on Discord ("Queued #2", "Restyling 40%", Cancel): Discord's parts of
the status lifecycle (bot/chat/statuses.py StatusPlace), and the edits of that message the
delivery makes too: through the interaction token while it is fresh, else as the bot where it
can, one edit of a message at a time."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable
from typing import Any

import aiohttp
import discord

from bot.adapters.discord.connection import TOKEN_TTL_S, _edit_original, _webhook
from bot.adapters.discord.gateway import Gateway
from bot.adapters.discord.markup import status_view
from bot.adapters.discord.parsing import _int
from bot.adapters.discord.texts import (
    DISCORD_STYLE,
    LATE_NOTE,
    LATE_NOTE_AFTER_S,
    LATE_NOTE_DM,
    NOT_STARTED,
    _status_text,
    _status_what,
)
from bot.chat import texts
from bot.chat.status import FAILED, GONE, SHOWN, Budget, EditOutcome
from bot.chat.statuses import StatusFollower
from bot.chat.sweep import sweep_status
from bot.clock import MonotonicClock
from bot.core.types import DeliveryFailed, JobView
from bot.i18n import translator
from bot.service import RestyleService

log = logging.getLogger("bot.discord")

TOKEN_MARGIN_S = 30.0  # stop trusting a token this long before it expires


class StatusMessages:
    """Discord's StatusPlace: Markdown lines with a late note, edits through the interaction token
    while it is fresh (else as the bot where it can), one edit of a message at a time with its
    delivery (`lock`). Owns the jobs' StatusFollower (`follower`)."""

    def __init__(
        self, service: RestyleService, gateway: Gateway, *, edit_interval_s: float, request_timeout_s: float
    ) -> None:
        self._service = service
        self._gateway = gateway
        self._edit_interval_s = edit_interval_s
        self._request_timeout_s = request_timeout_s
        # One edit of a status message at a time: its progress, or its delivery taking it over.
        # A lock lives while someone holds or awaits it: nothing to clean up when a status ends.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # A sweep's delivery is written into its status message: a sweep cancelled with part of
        # it done leaves that message to it.
        self.follower = StatusFollower(self, service, MonotonicClock(), name="discord-status",
                                       sweep_result_takes_status=True)  # fmt: skip

    def lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # The StatusPlace -------------------------------------------------------------------------------

    def find(self, key: str, job: JobView) -> Budget | None:
        # One edit per edit_interval_s, always ending on the latest state (a throttled update
        # is sent when the interval is over, not dropped); none before the connection is up.
        return Budget(self._edit_interval_s) if self._gateway.ready.is_set() else None

    def line(self, job: JobView) -> tuple[str, bool]:
        text = sweep_status(job) if job.sweep_id is not None else _status_text(job)
        reply = job.reply
        if (
            reply.get("kind") == "interaction"
            and self._service.clock.now() - float(reply.get("interaction_at") or 0) > LATE_NOTE_AFTER_S
        ):
            note = LATE_NOTE if reply.get("bot_can_post", True) else LATE_NOTE_DM
            text += "\n" + translator(reply.get("lang")).gettext(note)
        return text, True

    def held_line(self, job: JobView, held: float) -> str:
        held_text = texts.held_result(held, job.tier, DISCORD_STYLE, translator(job.reply.get("lang")))
        what = sweep_status(job) if job.sweep_id is not None else _status_what(job)
        return f"⌛ {held_text}\n{what}"

    async def edit(self, key: str, job: JobView, text: str, cancel: bool) -> EditOutcome:
        async with self.lock(key):
            if not self.follower.live(key):
                return GONE  # its delivery took the message over, or it ended
            if not self._gateway.ready.is_set():
                return FAILED  # reconnecting: the next update tries again
            reply = job.reply
            if reply.get("kind") == "interaction" and not self.token_fresh(reply):
                return GONE  # the status can no longer be edited; the result comes by message
            try:
                view = status_view(key, reply.get("lang")) if cancel else None
                await self.edit_message(reply, content=text, view=view)
            except (TimeoutError, discord.DiscordException, aiohttp.ClientError) as exc:
                log.warning("job %s: status edit failed: %r", key, exc)
                return FAILED  # best effort; the next update tries again
            return SHOWN

    async def end(self, key: str, text: str) -> None:
        async with self.lock(key):
            job = await self._service.jobs.job(key)
            if job is None:
                return
            said = translator(job.reply.get("lang")).gettext(text)
            if job.reply.get("kind") != "interaction" or self.token_fresh(job.reply):
                try:
                    await self.edit_message(job.reply, content=said, view=None)
                except (TimeoutError, discord.DiscordException, aiohttp.ClientError) as exc:
                    log.info("job %s: could not mark the status message: %r", key, exc)
            else:
                await self.end_stale(job, said)

    # The message itself ----------------------------------------------------------------------------

    def token_fresh(self, reply: dict[str, Any]) -> bool:
        return self._service.clock.now() - float(reply.get("interaction_at") or 0) < TOKEN_TTL_S - TOKEN_MARGIN_S

    async def edit_message(self, reply: dict[str, Any], **fields: Any) -> None:
        """Edit the job's status message: through the interaction token, or as the bot."""
        client = self._gateway.live_client()
        message_id = reply.get("message_id")
        if reply.get("kind") == "interaction":
            hook = _webhook(client, reply)
            if message_id is None:
                # The id of a deferred response was never learnt: it is the interaction's @original.
                await self.timed(_edit_original(hook, **fields))
                return
            await self.timed(hook.edit_message(int(message_id), **fields))
        else:
            channel = client.get_partial_messageable(int(reply["channel_id"]), guild_id=_int(reply.get("guild_id")))
            # The bot sent this status message itself, so its id is always known.
            await self.timed(channel.get_partial_message(int(reply["message_id"])).edit(**fields))

    async def end_stale(self, job: JobView, text: str) -> None:
        """Past the interaction token's 15 minutes its status ("Restyling 60%" with a Cancel
        button) can only be edited as the bot, which works where the bot itself is in the channel
        (a server that installed it, or its own DM with the member). Elsewhere it stays as it was."""
        reply = job.reply
        if not (reply.get("bot_can_edit") and reply.get("message_id") and reply.get("channel_id")):
            return
        try:
            channel = self._gateway.live_client().get_partial_messageable(
                int(reply["channel_id"]), guild_id=_int(reply.get("guild_id"))
            )
            await self.timed(channel.get_partial_message(int(reply["message_id"])).edit(content=text, view=None))
        except (TimeoutError, DeliveryFailed, discord.DiscordException, aiohttp.ClientError) as exc:
            log.info("job %s: could not end the old status message: %r", job.id, exc)

    async def timed(self, awaitable: Awaitable[Any]) -> Any:
        # discord.py sleeps through any 429 on webhooks, however long: bound every call, so a
        # stuck request turns into a retry (results) or a logged miss (status) instead of a hang.
        return await asyncio.wait_for(awaitable, self._request_timeout_s)


async def withdraw(status: discord.WebhookMessage) -> None:
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
