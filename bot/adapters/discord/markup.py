"""The components under Discord messages and the form: a job's buttons (rebuilt from their
custom_id, so they outlive restarts), the result and status views, the "Restyle image" form."""

from __future__ import annotations

import logging
import re

import discord
from discord import ui

from bot.adapters.discord.connection import TOKEN_TTL_S, EventHandler
from bot.adapters.discord.parsing import _Picture
from bot.chat import texts
from bot.chat.sweep import SWEEP_FILES_BUTTON, TRY_SWEEP_TEMPLATE
from bot.commands import (
    MAX_PROMPT_CHARS,
    MAX_STRENGTH,
    MIN_STRENGTH,
    OUTPUT_FORMATS,
    STRENGTH_CHANGES,
    SWEEP_STRENGTHS,
)
from bot.core.types import SweepDelivery
from bot.i18n import N_, translator

log = logging.getLogger("bot.discord")


_BUTTONS: dict[str, tuple[str, discord.ButtonStyle, int]] = {
    "again": (N_("Again"), discord.ButtonStyle.primary, 0),
    "subtler": (N_("Subtler"), discord.ButtonStyle.secondary, 0),
    "stronger": (N_("Stronger"), discord.ButtonStyle.secondary, 0),
    "sweep": (TRY_SWEEP_TEMPLATE, discord.ButtonStyle.secondary, 0),
    "png": ("PNG", discord.ButtonStyle.secondary, 1),
    "webp": ("WebP", discord.ButtonStyle.secondary, 1),
    "jpeg": ("JPEG", discord.ButtonStyle.secondary, 1),
    "cancel": (N_("Cancel"), discord.ButtonStyle.danger, 0),
    # Under a sweep's 3-up picture: its job id for "keep", the sweep's (its lead's) for "files".
    "keep": ("", discord.ButtonStyle.primary, 0),  # labelled by the caller: "Keep 0.5"
    "files": (SWEEP_FILES_BUTTON, discord.ButtonStyle.secondary, 0),
}


class JobButton(
    ui.DynamicItem[ui.Button],
    template=r"restyle:(?P<action>again|subtler|stronger|sweep|png|webp|jpeg|cancel|keep|files):"
    r"(?P<job>[0-9A-Za-z_-]{1,64})",
):
    """One button of a job (or of a sweep: keep, files). Rebuilt from its custom_id on every
    click, so it outlives restarts; its custom_id stays within Discord's 100 characters."""

    def __init__(self, action: str, job_id: str, lang: str | None = None, label: str | None = None) -> None:
        """`lang`: the label's language (the member's); a click rebuilds the button without one.
        `label`: one said already (a Keep button names its strength)."""
        template, style, row = _BUTTONS[action]
        if label is None:
            label = translator(lang).gettext(template).format(count=len(SWEEP_STRENGTHS)) if template else action
        super().__init__(ui.Button(label=label, style=style, custom_id=f"restyle:{action}:{job_id}"), row=row)
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: ui.Item, match: re.Match[str]) -> JobButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter: EventHandler | None = getattr(interaction.client, "restyle_adapter", None)
        if adapter is not None:
            with adapter._handling():
                if await adapter.admitted(interaction):
                    await adapter.on_button(interaction, self.action, self.job_id)


def result_view(job_id: str, compare_url: str | None = None, lang: str | None = None) -> ui.View:
    view = ui.View(timeout=None)
    for action in (*STRENGTH_CHANGES, "sweep", *OUTPUT_FORMATS):
        view.add_item(JobButton(action, job_id, lang))
    if compare_url:
        # A link button opens the page in the member's browser; Discord sends no interaction.
        label = translator(lang).gettext(texts.COMPARE_BUTTON)
        view.add_item(ui.Button(label=label, style=discord.ButtonStyle.link, url=compare_url, row=1))
    return view


def sweep_view(sweep: SweepDelivery, choices: list[tuple[str, str]], lang: str | None = None) -> ui.View:
    """Under a sweep's 3-up picture: "Keep 0.3 / 0.5 / 0.7" (one per done job, `choices` from
    chat.sweep.keep_choices) and the results as files; one row (at most 4 of Discord's 5)."""
    view = ui.View(timeout=None)
    for job_id, label in choices:
        view.add_item(JobButton("keep", job_id, lang, label=label))
    view.add_item(JobButton("files", sweep.sweep_id, lang))
    return view


def status_view(job_id: str, lang: str | None = None) -> ui.View:
    view = ui.View(timeout=None)
    view.add_item(JobButton("cancel", job_id, lang))
    return view


class RestyleModal(ui.Modal, title="Restyle image"):
    """The form behind the "Restyle image" message menu. Each input sits in a Label, the layout
    Discord has for modals since 2025 (an action row around a text input is deprecated there).
    Its words are said in the member's language (`lang`); the example prompt stays as it is."""

    prompt: ui.Label = ui.Label(
        text=N_("Prompt: the new style"),
        description=N_("What the picture should look like, e.g. rainy night with neon signs"),
        component=ui.TextInput(
            custom_id="prompt",
            placeholder="rainy night with neon signs",
            style=discord.TextStyle.paragraph,
            max_length=MAX_PROMPT_CHARS,
        ),
    )
    strength: ui.Label = ui.Label(
        text=N_("Strength ({low} to {high})"),
        description=N_("0.25 subtle · 0.5 clear · 0.8 heavy · sweep: try 0.3, 0.5 and 0.7; empty: the default"),
        component=ui.TextInput(custom_id="strength", placeholder="0.5", required=False, max_length=20),
    )

    def __init__(self, adapter: EventHandler, picture: _Picture, lang: str | None = None) -> None:
        tr = translator(lang)
        super().__init__(title=tr.gettext("Restyle image"), timeout=TOKEN_TTL_S)
        self.adapter = adapter
        self.picture = picture
        # the instance's own copies of the class's labels (discord.py copies them per view)
        for label in (self.prompt, self.strength):
            label.text = tr.gettext(label.text).format(low=MIN_STRENGTH, high=MAX_STRENGTH)
            if label.description:  # gettext("") would be the catalogue's header
                label.description = tr.gettext(label.description)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        with self.adapter._handling():
            if await self.adapter.admitted(interaction):
                await self.adapter.on_modal_submit(
                    interaction, self.picture, _field(self.prompt), _field(self.strength)
                )

    # discord.py's Modal.on_error drops BaseView's `item` argument; this matches Modal's.
    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:  # type: ignore[override]  # Modal's
        log.error("the Restyle image form failed", exc_info=error)
        await self.adapter._broke(interaction)


def _field(label: ui.Label) -> str:
    component = label.component
    return str(component.value or "") if isinstance(component, ui.TextInput) else ""
