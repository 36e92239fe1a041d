"""How an outcome (a result, a sweep, a failure) reaches the member: the job's status message
while the interaction token lasts, else a new message in the channel mentioning them, else a DM;
each create with a nonce, so a retried send that did reach Discord does not post twice."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import discord
from discord import ui

from bot.adapters.discord.connection import _nonce
from bot.adapters.discord.files import DEFAULT_FILE_LIMIT, _result_files
from bot.adapters.discord.gateway import Gateway
from bot.adapters.discord.markup import result_view, sweep_view
from bot.adapters.discord.parsing import _int
from bot.adapters.discord.statuses import StatusMessages
from bot.adapters.discord.sweep import sweep_message_files
from bot.adapters.discord.texts import _result_text, _short, _stale_text
from bot.chat.delivery import failure_reason, refused_for_good
from bot.chat.statuses import status_key
from bot.chat.sweep import keep_choices, sweep_caption
from bot.core.types import Delivery, DeliveryFailed, JobView, SweepDelivery
from bot.i18n import N_, translator
from bot.service import RestyleService
from engine.pictures import PictureError

log = logging.getLogger("bot.discord")

DM_FILE_LIMIT = 10 * 1024 * 1024  # a bot's uploads in a DM: no server boost raises it
TOO_LARGE = 40005  # "Request entity too large" (discord-api-docs, JSON Error Codes)
ARCHIVED_THREAD = 50083
MISSING_ACCESS = 50001
CANNOT_DM = 50007
# A sweep's caption: Discord's 2000 characters, less room for what a post elsewhere adds in front
# (the member's mention, "(The channel you asked in is gone, so here it is.)").
SWEEP_CAPTION_LIMIT = 1700


@dataclass
class OutcomeSender:
    """The service's deliveries to Discord (the adapter's deliver_* hand them here), and a result
    sent anew where a press asks for it (a kept result of a sweep)."""

    service: RestyleService
    gateway: Gateway
    statuses: StatusMessages

    async def deliver_result(self, delivery: Delivery) -> None:
        await self.gateway.wait_ready()
        await self.send_result(delivery)

    async def send_result(self, delivery: Delivery, key: str | None = None) -> None:
        """A result with its buttons where its job's reply says (see send_outcome); `key`: the
        send's own name where it is not the job's delivery (a kept result of a sweep)."""
        job = delivery.job
        limit = int(job.reply.get("size_limit") or DEFAULT_FILE_LIMIT)
        files = await _files_within(lambda max_bytes: _result_files(delivery, max_bytes), limit, "the files")
        links = self.service.compare_links
        compare_url = links.url(job.id, self.service.clock.now()) if links is not None else None
        view = result_view(job.id, compare_url, job.reply.get("lang"))
        # One message, no steps to record: a retried post carries the same nonce (send_outcome).
        await self.send_outcome(job, _result_text(job), files, view, key=key)

    async def deliver_sweep(self, sweep: SweepDelivery) -> None:
        """The whole sweep in one message where its lead's result would go (its status message
        while the token lasts, else the channel, else a DM): the 3-up picture, the caption, a
        Keep button per done job and the files button. Dispatch records it sent, once."""
        await self.gateway.wait_ready()
        lead = sweep.jobs[0]
        lang = lead.reply.get("lang")
        limit = int(lead.reply.get("size_limit") or DEFAULT_FILE_LIMIT)
        files = await _files_within(lambda max_bytes: sweep_message_files(sweep, max_bytes), limit, "the sweep's files")
        tr = translator(lang)
        text = "🎚 " + sweep_caption(sweep, SWEEP_CAPTION_LIMIT, tr)
        # Not sweep_steps' sheet-or-album: a Discord message carries a picture and buttons together,
        # so the sheet, or where none was drawn every done result (sweep_message_files), is one post.
        await self.send_outcome(lead, text, files, sweep_view(sweep, keep_choices(sweep, tr), lang))

    async def deliver_failure(self, job: JobView) -> None:
        await self.gateway.wait_ready()
        tr = translator(job.reply.get("lang"))
        error = failure_reason(job, tr, N_("The picture engine failed on this job; try again."))
        text = f"❌ {error}\n“{_short(job.prompt, 200)}”"

        async def no_files(max_bytes: int | None = None) -> list[discord.File]:
            return []

        # A sweep with nothing done is told once, in the place of its one status.
        await self.send_outcome(job, text, no_files, None, key=status_key(job))

    async def send_outcome(
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
        self.statuses.follower.delivered(key)  # no progress edit may land on the result
        reply = job.reply
        user_id = int(reply["user_id"])
        tr = translator(reply.get("lang"))
        try:
            async with self.statuses.lock(key):
                note = ""
                can_edit = (self.statuses.token_fresh(reply) if reply.get("kind") == "interaction"
                            else bool(reply.get("message_id")))  # an interaction's status can be @original  # fmt: skip
                if can_edit:
                    try:
                        await self.statuses.edit_message(reply, content=text, attachments=await files(), view=view)
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
                    await self.statuses.end_stale(job, _stale_text(text, job.reply.get("lang")))
                if reply.get("channel_id") and not reply.get("bot_can_post", True):
                    note = tr.gettext("(I cannot post in the channel you asked in, so here it is.)") + "\n"
                elif reply.get("channel_id"):
                    channel = self.gateway.live_client().get_partial_messageable(
                        int(reply["channel_id"]), guild_id=_int(reply.get("guild_id"))
                    )
                    where = f"<#{reply['channel_id']}>"
                    try:
                        await self.statuses.timed(
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
                    dm = await self.statuses.timed(self.gateway.live_client().create_dm(discord.Object(user_id)))
                    await self.statuses.timed(dm.send(content=note + text, files=await files(DM_FILE_LIMIT),
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
            self.statuses.follower.undelivered(key)
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
