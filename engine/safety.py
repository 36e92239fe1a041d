"""diffusers' image safety checker, loaded from a hub id or a folder, as a plain function
`flagged(picture) -> bool` the bot calls on each result before sending it."""

from __future__ import annotations

import logging
import os
import threading

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402  (after TRANSFORMERS_VERBOSITY is set)
import torch  # noqa: E402  (after TRANSFORMERS_VERBOSITY is set)
from PIL import Image  # noqa: E402  (after TRANSFORMERS_VERBOSITY is set)

from engine.api import ModelLoadError  # noqa: E402  (after TRANSFORMERS_VERBOSITY is set)

log = logging.getLogger("engine.safety")


class SafetyChecker:
    """Called with one picture (True: withhold it), or `check_batch` with a batch's pictures:
    one checker call for all of them, on the engine's device."""

    def __init__(self, checker, processor, device: str) -> None:
        self.checker = checker
        self.processor = processor
        self.device = device
        self.dtype = next(checker.parameters()).dtype
        self._lock = threading.Lock()  # one call at a time; the checker is small next to the pipeline

    def __call__(self, picture: Image.Image) -> bool:
        return self.check_batch([picture])[0]

    def check_batch(self, pictures: list[Image.Image]) -> list[bool]:
        if not pictures:
            return []
        rgb = [picture.convert("RGB") for picture in pictures]
        inputs = self.processor(images=rgb, return_tensors="pt")
        with self._lock, torch.no_grad():
            clip_input = inputs.pixel_values.to(self.device, dtype=self.dtype)
            flags: list[bool] = []
            # Same size pictures share one array (the checker only reads `images` to blank the
            # flagged ones); mixed sizes cannot stack, so each group of a size goes together.
            by_size: dict[tuple[int, int], list[int]] = {}
            for index, picture in enumerate(rgb):
                by_size.setdefault(picture.size, []).append(index)
            verdicts: dict[int, bool] = {}
            for indices in by_size.values():
                pixels = np.stack([np.asarray(rgb[i], dtype=np.float32) / 255.0 for i in indices])
                _, has_nsfw = self.checker(images=pixels, clip_input=clip_input[indices])
                verdicts.update((i, bool(flag)) for i, flag in zip(indices, has_nsfw, strict=True))
            flags = [verdicts[i] for i in range(len(rgb))]
        return flags


def load_safety_checker(
    model: str,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    half_on_gpu: bool = False,
    local_files_only: bool = False,
) -> SafetyChecker:
    """`model`: e.g. "CompVis/stable-diffusion-safety-checker" or a folder holding the checker
    and its image processor (preprocessor_config.json). `device`: where the engine runs (the
    checker is a CLIP vision model: seconds a picture on a busy CPU, milliseconds on a GPU)."""
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
    if dtype is None and half_on_gpu and device.startswith("cuda"):
        dtype = torch.float16
    # transformers wraps PreTrainedModel.to in functools.wraps, through which mypy binds no self.
    checker = checker.to(device, dtype=dtype) if dtype is not None else checker.to(device)  # type: ignore[arg-type]  # see above
    return SafetyChecker(checker.eval(), processor, device)
