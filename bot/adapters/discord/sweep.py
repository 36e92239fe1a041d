"""A strength sweep on Discord: the files of its one message (the 3-up picture, or the results
themselves where it could not be drawn) and the results as files named by strength (the Files
button). Plain functions on discord.py's objects; it never imports the adapter."""

from __future__ import annotations

from bot.chat.sweep import sweep_file_name
from bot.core.types import SweepDelivery
from engine.pictures import convert_stored


def file_budget(limit: int, count: int) -> int:
    """Bytes for each of `count` files in one message: the upload limit shared among them, less
    room for the form's overhead (the same budget as a result's three pictures)."""
    return max(64 * 1024, limit // max(1, count) - 16 * 1024)


def sweep_message_files(sweep: SweepDelivery, limit: int) -> list[tuple[str, bytes]]:
    """What the sweep's message carries: the 3-up picture as a JPEG (it is a photo, and the
    smallest for its size), or, where it could not be drawn, each done result as a PNG."""
    if sweep.sheet is not None:
        return [(f"restyle-sweep-{sweep.sweep_id}.jpg", convert_stored(sweep.sheet, "jpeg", file_budget(limit, 1)))]
    done = sweep.done
    budget = file_budget(limit, len(done))
    return [
        (sweep_file_name(job.strength, "png"), convert_stored(sweep.results[job.id], "png", budget)) for job in done
    ]
