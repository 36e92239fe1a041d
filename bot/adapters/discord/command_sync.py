"""Registering the slash commands with Discord, only where they changed since the last sync and
by one process at a time (a hash per scope and a claim, both in the database)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import discord
from discord import app_commands

from bot.core.admin import Admin

log = logging.getLogger("bot.discord")

COMMAND_SYNC_CLAIM_S = 120.0  # one process syncs the commands; a claim left by a crash runs out after this


async def sync_commands(
    tree: app_commands.CommandTree, guild_ids: Sequence[int], admin: Admin, client: Callable[[], discord.Client]
) -> None:
    """Register the commands where they changed since the last sync (a hash per scope kept in
    the database): syncing is rate limited, and every process start would otherwise redo it.
    Only one process syncs (a claim in the database): two starting at once would both send.
    With guild_ids they live in those servers only (Discord has no guild commands in DMs) and
    the global copies go; without, they are global and copies left in servers go."""
    desired: dict[str, list[dict[str, Any]]] = {}
    for guild_id in guild_ids:
        guild = discord.Object(id=guild_id)
        tree.copy_global_to(guild=guild)
        desired[str(guild_id)] = [await _payload(tree, c) for c in tree._get_all_commands(guild=guild)]
    desired["global"] = [] if guild_ids else [await _payload(tree, c) for c in tree._get_all_commands()]
    if not _commands_to_sync(desired, await _synced_hashes(admin)):
        log.info("commands unchanged since the last sync: nothing sent to Discord")
        return
    try:
        claimed = await admin.claim_discord_command_sync(COMMAND_SYNC_CLAIM_S)
    except Exception as exc:
        log.error("could not claim the command sync in the database (%r); not syncing, the commands"
                  " registered before still work", exc)  # fmt: skip
        return
    if not claimed:
        log.info("another process is syncing the commands now; leaving it to that one")
        return
    try:
        # Read again under the claim: a process that held it a moment ago may have synced.
        await _send_commands(client(), admin, desired, await _synced_hashes(admin), guild_ids)
    finally:
        with contextlib.suppress(Exception):  # the claim runs out by itself
            await admin.release_discord_command_sync()


async def _payload(tree: app_commands.CommandTree, command: Any) -> dict[str, Any]:
    """A command as CommandTree.sync sends it: with its translations when the tree has a translator."""
    if tree.translator is not None:
        return await command.get_translated_payload(tree, tree.translator)
    return command.to_dict(tree)


async def _synced_hashes(admin: Admin) -> dict[str, str]:
    try:
        return await admin.discord_commands_synced()
    except Exception as exc:
        log.error("could not read which commands were synced (%r); syncing them all", exc)
        return {}


async def _send_commands(client: discord.Client, admin: Admin, desired: dict[str, list[dict[str, Any]]],
                         previous: dict[str, str], guild_ids: Sequence[int]) -> None:  # fmt: skip
    app_id = client.application_id
    assert app_id is not None  # known from login, which comes before any sync
    synced = dict(previous)
    done = []
    try:
        for scope in _commands_to_sync(desired, previous):
            payload = desired.get(scope, [])
            if scope == "global":
                await client.http.bulk_upsert_global_commands(app_id, payload=payload)
            else:
                await client.http.bulk_upsert_guild_commands(app_id, int(scope), payload=payload)
            synced[scope] = _commands_hash(payload)
            where = "globally" if scope == "global" else f"to server {scope}"
            done.append(f"{len(payload)} {where}" if payload else f"removed {where.replace('to ', 'from ')}")
    except discord.Forbidden:
        log.error(
            "Discord refused to register the commands (403): invite the bot with the applications.commands"
            " scope to the servers in [discord] guild_ids (%s).",
            ", ".join(map(str, guild_ids)) or "global",
        )
    except Exception as exc:  # a network hiccup must not stop the bot: old registrations still work
        log.error("could not register the commands (%r); the ones registered before still work", exc)
    if done:
        log.info("commands synced: %s%s", "; ".join(done),
                 "" if guild_ids else " (global commands can take up to an hour to appear)")  # fmt: skip
        try:
            await admin.record_discord_commands({k: v for k, v in synced.items() if k in desired})
        except Exception as exc:
            log.error("could not record the synced commands (%r); the next start syncs again", exc)
    else:
        log.info("commands unchanged since the last sync: nothing sent to Discord")


def _commands_to_sync(desired: dict[str, list[dict[str, Any]]], previous: dict[str, str]) -> list[str]:
    """The scopes whose commands differ from the last sync (a scope no longer wanted is emptied)."""
    return [scope for scope in sorted(set(desired) | set(previous))
            if previous.get(scope) != _commands_hash(desired.get(scope, []))]  # fmt: skip


def _commands_hash(payload: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
