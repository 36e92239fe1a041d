"""The engine's plain-data contract. Imports neither torch nor diffusers, so the bot's core can
use it to describe work without loading a model."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image


@dataclass(frozen=True)
class EngineJob:
    """One picture to restyle. `picture` is already prepared (RGB, sides multiples of 8)."""

    job_id: str
    picture: Image.Image
    prompt: str
    strength: float
    seed: int
    steps: int | None = None  # None: the engine's configured default
    negative_prompt: str | None = None


@dataclass(frozen=True)
class EngineOutput:
    """What came of one EngineJob: a picture, or an error written for the member."""

    job_id: str
    seed: int
    steps: int  # the steps actually scheduled (raised where strength x steps < 1)
    seconds: float  # wall time of the pipeline call this job was part of
    picture: Image.Image | None = None
    error: str | None = None


# Called from the engine's thread with (job_id, fraction done 0..1) for each job of a batch.
ProgressCallback = Callable[[str, float], None]


class RestyleEngine(Protocol):
    """What the worker needs from an engine; tests pass a fast stand-in."""

    max_batch: int

    def run(self, jobs: Sequence[EngineJob], on_progress: ProgressCallback | None = None) -> list[EngineOutput]:
        """Blocking; run off the event loop. One output per job, in the same order."""
        ...

    def interrupt(self) -> None:
        """Thread-safe: stop the batch now running; its jobs come back with an error."""
        ...


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message is one sentence naming the setting to change."""


def scheduled_steps(steps: int, strength: float) -> int:
    """The fewest steps >= `steps` for which diffusers runs at least one denoising step.

    diffusers runs int(steps * strength) UNet calls and raises below 1; the int() truncates
    floats (int(100 * 0.29) == 28), so we check the very expression diffusers uses.
    """
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    n = max(1, steps)
    while min(int(n * strength), n) < 1:
        n += 1
    return n


def denoising_steps(steps: int, strength: float) -> int:
    """UNet calls diffusers makes for these settings (after scheduled_steps)."""
    n = scheduled_steps(steps, strength)
    return min(int(n * strength), n)


def batch_key(width: int, height: int, steps: int, strength: float) -> str:
    """Jobs with equal keys can share one pipeline call: same size, steps and effective steps.

    (Model and guidance are fixed per engine.) Strength differs freely inside a key because
    diffusers only uses it to pick the first timestep, which equal effective steps fix.
    """
    n = scheduled_steps(steps, strength)
    return f"{width}x{height}:{n}:{denoising_steps(n, strength)}"


def random_seed(rng: random.Random | None = None) -> int:
    """A seed for a job that did not name one; reported back so the member can repeat it."""
    return (rng or random).randrange(2**32)


# Returns True for a result that must not be sent (diffusers' safety checker, or a test's).
SafetyCheck = Callable[[Image.Image], bool]
