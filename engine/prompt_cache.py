"""The prompt embeddings cache: the text encoder's output kept per prompt, so that repeated
prompts (members repeat theirs, styles repeat more) skip the text encoder."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch


class PromptEmbeddings:
    """The text encoder's output per (prompt, negative prompt), least recently used dropped
    first, passed to diffusers as prompt_embeds: the text encoder (~280 kernel launches, 6-14 ms
    of host time a call on a GPU) then runs once per new prompt, not on every call.

    Exact: the pipeline computes the same per-prompt rows itself (measured on the CPU: the
    pictures are identical to passing the prompts; tests/test_engine.py checks it). Used by
    the engine under its call lock only, so it needs no lock of its own."""

    def __init__(self, pipe: Any, size: int) -> None:
        self.pipe = pipe
        self.size = size
        self._entries: OrderedDict[tuple[str, str, bool], tuple[Any, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def supports(pipe: Any) -> bool:
        """Stable Diffusion 1.x/2.x image-to-image (encode_prompt returns the two tensors this
        class passes back); other pipelines (SDXL: pooled embeddings too) get their prompts."""
        from diffusers import StableDiffusionImg2ImgPipeline

        return isinstance(pipe, StableDiffusionImg2ImgPipeline)

    def get(self, prompt: str, negative_prompt: str, cfg: bool) -> tuple[Any, Any]:
        key = (prompt, negative_prompt if cfg else "", cfg)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        with torch.no_grad():
            positive, negative = self.pipe.encode_prompt(
                prompt, self.pipe._execution_device, 1, cfg, negative_prompt if cfg else None
            )
        self._entries[key] = (positive, negative)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return positive, negative
