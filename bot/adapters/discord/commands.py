"""The application commands on the tree: the slash commands with their options and their
localisations (msgids the tree's CatalogueTranslator says in each member's language), the
"Restyle image" message menu, and the tree's error handler. Each command hands its interaction
to a CommandHandlers (the adapter, not imported here)."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

import discord
from discord import app_commands

from bot.adapters.discord.texts import _tr, help_text
from bot.adapters.discord.translator import described
from bot.commands import MAX_PROMPT_CHARS, MAX_SEED, MAX_STEPS, MAX_STRENGTH, MIN_STEPS, MIN_STRENGTH, SWEEP_STRENGTHS
from bot.config import Config
from bot.i18n import N_, translator

log = logging.getLogger("bot.discord")

ANSWERED_ALREADY = 40060  # "Interaction has already been acknowledged" (discord-api-docs, JSON Error Codes)
UNKNOWN_INTERACTION = 10062  # not answered within 3 s, or the token is gone


class CommandHandlers(Protocol):
    """What the commands hand their interactions to (DiscordAdapter)."""

    @property
    def config(self) -> Config: ...
    def _handling(self) -> AbstractContextManager[None]: ...
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
    ) -> None: ...
    async def on_restyle_message(self, interaction: discord.Interaction, message: discord.Message) -> None: ...
    async def on_styles(self, interaction: discord.Interaction) -> None: ...
    async def on_me(self, interaction: discord.Interaction) -> None: ...
    async def on_cancel(self, interaction: discord.Interaction) -> None: ...
    async def on_ban(
        self, interaction: discord.Interaction, target: discord.abc.User, reason: str, *, banned: bool
    ) -> None: ...
    async def on_queue(self, interaction: discord.Interaction, show: str) -> None: ...
    async def _broke(self, interaction: discord.Interaction) -> None: ...


def add_commands(tree: app_commands.CommandTree, handlers: CommandHandlers) -> None:
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
        with handlers._handling():
            await handlers.on_restyle(interaction, image, prompt or "", strength, seed, steps, style, bool(sweep))

    @restyle.autocomplete("style")
    async def style_names(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        # Discord shows at most 25 choices, each name at most 100 characters.
        wanted = current.strip().lower()
        return [
            app_commands.Choice(name=f"{name} · {recipe.about or recipe.prompt}"[:100], value=name)
            for name, recipe in handlers.config.styles.items()
            if wanted in name
        ][:25]

    @tree.command(name="styles", description=N_("Ready-made styles for /restyle, with their strengths"))
    async def styles(interaction: discord.Interaction) -> None:
        with handlers._handling():
            await handlers.on_styles(interaction)

    @restyle.autocomplete("strength")
    async def strength_hints(interaction: discord.Interaction, current: Any) -> list[app_commands.Choice[float]]:
        tr = _tr(interaction)
        return [
            app_commands.Choice(name=tr.gettext("0.25 · subtle: keeps the layout, nudges colours"), value=0.25),
            app_commands.Choice(name=tr.gettext("0.5 · clear: new style, shapes kept"), value=0.5),
            app_commands.Choice(name=tr.gettext("0.8 · heavy: a rework"), value=0.8),
        ]

    async def restyle_message(interaction: discord.Interaction, message: discord.Message) -> None:
        with handlers._handling():
            await handlers.on_restyle_message(interaction, message)

    tree.add_command(app_commands.ContextMenu(name="Restyle image", callback=restyle_message))

    @tree.command(name="me", description=N_("Your tier, today's restyles and your waiting jobs"))
    async def me(interaction: discord.Interaction) -> None:
        with handlers._handling():
            await handlers.on_me(interaction)

    @tree.command(name="help", description=N_("How to restyle a picture"))
    async def help_(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(help_text(translator(interaction.locale.value)), ephemeral=True)

    @tree.command(name="cancel", description=N_("Cancel your waiting and running jobs"))
    async def cancel(interaction: discord.Interaction) -> None:
        with handlers._handling():
            await handlers.on_cancel(interaction)

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
        with handlers._handling():
            await handlers.on_ban(interaction, member, reason, banned=True)

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
        with handlers._handling():
            await handlers.on_ban(interaction, member, reason or "", banned=False)

    @tree.command(name="queue", description=N_("Admins: who is waiting, or the latest jobs"))
    @app_commands.describe(show=N_("waiting (the default), or log: the latest jobs with who asked what, where"))
    @app_commands.default_permissions(administrator=True)
    @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
    @app_commands.allowed_installs(guilds=True, users=False)
    async def queue(interaction: discord.Interaction, show: Literal["waiting", "log"] = "waiting") -> None:
        with handlers._handling():
            await handlers.on_queue(interaction, show)

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
        await handlers._broke(interaction)
