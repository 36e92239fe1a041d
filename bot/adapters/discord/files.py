"""The pictures of a Discord result, sized to the upload limit of where they go."""

from __future__ import annotations

import io

from PIL import Image

from bot.commands import OUTPUT_FORMATS
from bot.core.types import Delivery
from engine.pictures import before_after_file, encode_picture

DEFAULT_FILE_LIMIT = 10 * 1024 * 1024  # Discord's default per-file upload limit (no interaction to ask)


def _result_files(delivery: Delivery, limit: int) -> list[tuple[str, bytes]]:
    """Before/after first (Discord shows a message's first picture largest, so the comparison
    is what the member sees), then the original and the result, each re-encoded to fit a third
    of the upload limit (all three go in one message)."""
    job = delivery.job
    fmt = job.output_format or "png"
    budget = max(64 * 1024, limit // 3 - 16 * 1024)
    both = before_after_file(delivery.input_picture, delivery.result_picture, "jpeg", budget)
    with Image.open(io.BytesIO(delivery.input_picture)) as img:
        original = encode_picture(img.convert("RGB"), "png", budget)
    with Image.open(io.BytesIO(delivery.result_picture)) as img:
        result = encode_picture(img.convert("RGB"), fmt, budget)
    return [
        (f"before-after-{job.id}.jpg", both),
        (f"original-{job.id}.png", original),
        (f"restyled-{job.id}.{OUTPUT_FORMATS[fmt].extension}", result),
    ]
