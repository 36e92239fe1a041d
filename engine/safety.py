"""diffusers' image safety checker, loaded from a hub id or a folder, as a plain function
`flagged(picture) -> bool` the bot calls on each result before sending it."""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from engine.api import ModelLoadError  # noqa: E402

log = logging.getLogger("engine.safety")

SafetyCheck = Callable[[Image.Image], bool]


def load_safety_checker(model: str, *, device: str = "cpu", local_files_only: bool = False) -> SafetyCheck:
    """`model`: e.g. "CompVis/stable-diffusion-safety-checker" or a folder holding the checker
    and its image processor (preprocessor_config.json)."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    try:
        checker = StableDiffusionSafetyChecker.from_pretrained(model, local_files_only=local_files_only)
        processor = CLIPImageProcessor.from_pretrained(model, local_files_only=local_files_only)
    except Exception as exc:  # diffusers and transformers raise OSError, ValueError, EnvironmentError...
        raise ModelLoadError(
            f"Could not load the safety checker {model!r} set in [moderation] safety_checker "
            f"({type(exc).__name__}); set it to a folder or hub id holding diffusers' safety checker, "
            "or remove the key to turn the check off."
        ) from exc
    checker = checker.to(device).eval()
    lock = threading.Lock()  # one result at a time; the checker is small next to the pipeline

    def flagged(picture: Image.Image) -> bool:
        rgb = picture.convert("RGB")
        inputs = processor(images=[rgb], return_tensors="pt")
        pixels = np.asarray(rgb, dtype=np.float32)[None] / 255.0
        with lock, torch.no_grad():
            _, has_nsfw = checker(images=pixels, clip_input=inputs.pixel_values.to(device))
        return bool(has_nsfw[0])

    return flagged
