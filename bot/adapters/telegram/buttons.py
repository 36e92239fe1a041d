"""The Telegram front end's inline keyboards and the callback data they carry (1-64 bytes)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from telegram import CopyTextButton, InlineKeyboardButton, InlineKeyboardMarkup

from bot.chat import texts
from bot.commands import OUTPUT_FORMATS, STRENGTH_STEP, Recipe, with_strength_delta
from bot.core.types import JobView
from bot.i18n import Translator, translator

BUTTON_DATA = re.compile(r"^(again|subtler|stronger|cancel|file|compare):")
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
