"""The Telegram front end's inline keyboards and the callback data they carry (1-64 bytes)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from telegram import CopyTextButton, InlineKeyboardButton, InlineKeyboardMarkup

from bot.chat import texts
from bot.chat.sweep import SWEEP_FILES_BUTTON, keep_choices, try_sweep_button
from bot.commands import OUTPUT_FORMATS, STRENGTH_STEP, Recipe, with_strength_delta
from bot.core.types import JobView, SweepDelivery
from bot.i18n import Translator, translator

# sweep:<job> runs a result at three strengths; keep:<job> and sweepfiles:<sweep> sit under a sweep.
BUTTON_DATA = re.compile(r"^(again|subtler|stronger|cancel|file|compare|sweep|sweepfiles|keep):")
RECIPE_BUTTONS = 12  # ready-made styles under /help; /styles lists them all


def result_buttons(job: JobView, compare_url: str | None = None, tr: Translator | None = None) -> InlineKeyboardMarkup:
    tr = tr or translator(None)
    subtler = with_strength_delta(job.strength, -STRENGTH_STEP)
    stronger = with_strength_delta(job.strength, STRENGTH_STEP)
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(tr.gettext("🎲 Again"), callback_data=f"again:{job.id}"),
                InlineKeyboardButton(
                    tr.gettext("Subtler {strength:g}").format(strength=subtler), callback_data=f"subtler:{job.id}"
                ),
                InlineKeyboardButton(
                    tr.gettext("Stronger {strength:g}").format(strength=stronger), callback_data=f"stronger:{job.id}"
                ),
            ],
            [InlineKeyboardButton(try_sweep_button(tr), callback_data=f"sweep:{job.id}")],
            [
                InlineKeyboardButton(output.label, callback_data=f"file:{fmt}:{job.id}")
                for fmt, output in OUTPUT_FORMATS.items()
            ],
            [
                InlineKeyboardButton(tr.gettext(texts.SIDE_BY_SIDE_BUTTON), callback_data=f"compare:{job.id}"),
                *([InlineKeyboardButton(tr.gettext(texts.COMPARE_BUTTON), url=compare_url)] if compare_url else []),
            ],
        ]
    )


def sweep_buttons(sweep: SweepDelivery, tr: Translator | None = None) -> InlineKeyboardMarkup:
    """Under a sweep's picture: "Keep <strength>" for each result there is, then its files."""
    tr = tr or translator(sweep.jobs[0].reply.get("lang"))
    keeps = [InlineKeyboardButton(label, callback_data=f"keep:{job_id}") for job_id, label in keep_choices(sweep, tr)]
    files = InlineKeyboardButton(tr.gettext(SWEEP_FILES_BUTTON), callback_data=f"sweepfiles:{sweep.sweep_id}")
    return InlineKeyboardMarkup([keeps, [files]])


def _cancel_markup(job_id: str, tr: Translator | None = None) -> InlineKeyboardMarkup:
    label = (tr or translator(None)).gettext("✖ Cancel")
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=f"cancel:{job_id}")]])


def recipe_buttons(recipes: Mapping[str, Recipe], addressed: Callable[[str], str]) -> InlineKeyboardMarkup | None:
    """Two ready-made styles a row, each copying `/restyle style=<name> ` (Bot API 7.11,
    CopyTextButton: 1-256 characters); at most RECIPE_BUTTONS of them, /styles lists the rest."""
    buttons = [
        InlineKeyboardButton(
            f"🎨 {recipe.name} · {recipe.strength:g}",
            copy_text=CopyTextButton(addressed(f"/restyle style={recipe.name} ")[:256]),
        )
        for recipe in list(recipes.values())[:RECIPE_BUTTONS]
    ]
    if not buttons:
        return None
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])
