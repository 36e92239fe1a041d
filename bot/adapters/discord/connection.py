"""Discord's connection, below the events: the gateway intents, which command scopes need a
sync, the interaction's webhook and what the bot may do as itself where an interaction came from."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import discord
from discord.http import handle_message_parameters
from discord.webhook.async_ import async_context

COMMAND_SYNC_CLAIM_S = 120.0  # one process syncs the commands; a claim left by a crash runs out after this


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


def _commands_to_sync(desired: dict[str, list[dict[str, Any]]], previous: dict[str, str]) -> list[str]:
    """The scopes whose commands differ from the last sync (a scope no longer wanted is emptied)."""
    return [scope for scope in sorted(set(desired) | set(previous))
            if previous.get(scope) != _commands_hash(desired.get(scope, []))]  # fmt: skip


def _commands_hash(payload: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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
