"""Stand-ins the tests control: a fast engine and a front end that records what it was told."""

from __future__ import annotations

import asyncio
import io
import inspect
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from PIL import Image, ImageOps

from bot.clock import FakeClock
from bot.core.types import Delivery, DeliveryFailed, JobView
from engine.api import EngineJob, EngineOutput, ProgressCallback, scheduled_steps


class FakeEngine:
    """Inverts the picture. Records every batch; can fail chosen prompts or hold a batch."""

    def __init__(self, max_batch: int = 4, seconds: float = 0.0, default_steps: int = 4) -> None:
        self.max_batch = max_batch
        self.seconds = seconds
        self.default_steps = default_steps
        self.batches: list[list[str]] = []
        # Every job it was given, by id (prompt, seed, strength...), kept without its picture:
        # load tests measure the bot's memory, not this recorder's.
        self.jobs: dict[str, EngineJob] = {}
        self.fail_prompts: set[str] = set()
        self.crash_next = False
        self.gate: threading.Event | None = None  # set() it to let a held batch finish
        # Set when a batch starts; cleared by hold(), so after hold() it means "a batch began
        # under the hold", never "some earlier batch ran".
        self.started = threading.Event()
        self._interrupted = threading.Event()

    def hold(self) -> threading.Event:
        """Hold every batch from now on until the returned event is set."""
        self.gate = threading.Event()
        self.started.clear()
        return self.gate

    def run(self, jobs: Sequence[EngineJob], on_progress: ProgressCallback | None = None) -> list[EngineOutput]:
        self.batches.append([job.job_id for job in jobs])
        self.jobs.update((job.job_id, replace(job, picture=None)) for job in jobs)
        self._interrupted.clear()
        self.started.set()
        if self.crash_next:
            self.crash_next = False
            raise RuntimeError("CUDA out of memory (fake)")
        if self.gate is not None:
            self.gate.wait(10)
        if self.seconds:
            time.sleep(self.seconds)
        outputs = []
        for job in jobs:
            steps = scheduled_steps(job.steps or self.default_steps, job.strength)
            if on_progress:
                on_progress(job.job_id, 1.0)
            if self._interrupted.is_set():
                outputs.append(EngineOutput(job.job_id, job.seed, steps, self.seconds, error="This job was stopped before it finished."))
            elif job.prompt in self.fail_prompts:
                outputs.append(EngineOutput(job.job_id, job.seed, steps, self.seconds, error="The picture engine failed on this job; try again."))
            else:
                outputs.append(EngineOutput(job.job_id, job.seed, steps, self.seconds, picture=ImageOps.invert(job.picture)))
        return outputs

    def interrupt(self) -> None:
        self._interrupted.set()
        if self.gate is not None:
            self.gate.set()


@dataclass
class RecordingFrontEnd:
    platform: str = "test"
    results: list[Delivery] = field(default_factory=list)
    failures: list[JobView] = field(default_factory=list)
    updates: list[JobView] = field(default_factory=list)
    fail_next_deliveries: int = 0
    delivered_at: list[float] = field(default_factory=list)
    clock: object | None = None

    async def job_updated(self, job: JobView) -> None:
        self.updates.append(job)

    async def deliver_result(self, delivery: Delivery) -> None:
        if self.fail_next_deliveries:
            self.fail_next_deliveries -= 1
            raise DeliveryFailed("network down (fake)")
        assert delivery.result_picture and delivery.input_picture
        # Kept without its pictures: a real front end drops them once sent, and load tests
        # measure the bot's memory, not this recorder's.
        self.results.append(replace(delivery, input_picture=b"", result_picture=b""))
        if self.clock is not None:
            self.delivered_at.append(self.clock.now())

    async def deliver_failure(self, job: JobView) -> None:
        self.failures.append(job)


def picture_bytes(size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (200, 40, 40), fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


async def wait_until(predicate: Callable[[], Any], *, timeout: float = 5.0, what: str = "") -> Any:
    """Poll `predicate` (a plain or an async function) until it returns something truthy, and
    return that. Fails the test, naming what it waited for, when `timeout` seconds pass: a
    helper that silently gave up would let the assertions after it check the wrong moment."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what or predicate}; it never happened")
        await asyncio.sleep(0.005)


def clock_deadlines(clock: FakeClock) -> list[float]:
    """When the tasks sleeping on a FakeClock wake up (earliest first)."""
    return sorted(deadline for deadline, future in clock._sleepers if not future.done())


async def wait_parked(clock: FakeClock, until: float, *, timeout: float = 5.0) -> None:
    """Wait until some task sleeps on `clock` until exactly `until` (a held-back delivery, a
    retry pause): the condition that makes a "nothing happened yet" check mean something, where a
    fixed sleep would pass just as well when the task had not even started."""
    await wait_until(
        lambda: any(abs(d - until) < 1e-6 for d in clock_deadlines(clock)),
        timeout=timeout,
        what=f"a task sleeping on the clock until {until} (sleepers: {clock_deadlines(clock)})",
    )


def count_admissions(service) -> list[bool]:
    """Spy on service.jobs.admit, the one flood check: True for each command let through."""
    admitted: list[bool] = []
    original = service.jobs.admit

    def admit(member):
        refused = original(member)
        admitted.append(refused is None)
        return refused

    service.jobs.admit = admit
    return admitted
