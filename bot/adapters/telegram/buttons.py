"""The Telegram front end's inline keyboards and the callback data they carry (1-64 bytes)."""

from __future__ import annotations

import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.chat import texts
from bot.commands import OUTPUT_FORMATS, STRENGTH_STEP, with_strength_delta
from bot.core.types import JobView

BUTTON_DATA = re.compile(r"^(again|subtler|stronger|cancel|file|compare):")


def result_buttons(job: JobView, compare_url: str | None = None) -> InlineKeyboardMarkup:
    subtler = with_strength_delta(job.strength, -STRENGTH_STEP)
    stronger = with_strength_delta(job.strength, STRENGTH_STEP)
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("🎲 Again", callback_data=f"again:{job.id}"),
                InlineKeyboardButton(f"Subtler {subtler:g}", callback_data=f"subtler:{job.id}"),
                InlineKeyboardButton(f"Stronger {stronger:g}", callback_data=f"stronger:{job.id}"),
            ],
            [
                InlineKeyboardButton(output.label, callback_data=f"file:{fmt}:{job.id}")
                for fmt, output in OUTPUT_FORMATS.items()
            ],
            [
                InlineKeyboardButton(texts.SIDE_BY_SIDE_BUTTON, callback_data=f"compare:{job.id}"),
                *([InlineKeyboardButton(texts.COMPARE_BUTTON, url=compare_url)] if compare_url else []),
            ],
        ]
    )


def _cancel_markup(job_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton("✖ Cancel", callback_data=f"cancel:{job_id}")]])
