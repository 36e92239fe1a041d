"""[engine] compile and cuda_graphs: the UNet and the VAE's encoder and decoder compiled by
torch.compile (inductor), in channels_last, for a bounded set of shapes warmed up at start.

Why a bounded set: a compiled function is specialised to its input shapes, and a new shape
means a new compile (tens of seconds on a GPU, a minute on a CPU) in the middle of serving,
and after torch._dynamo's recompile limit (8) a silent fall back to eager code. So each
compiled module sits behind a ShapeRouted forward: the shapes seen during the warm-up at start
(the sizes in [engine] compile_sizes, at batch 1 and at max_batch) run compiled, every other
shape runs the module's eager forward, and nothing compiles after start.

cuda_graphs uses inductor's "reduce-overhead" mode: each compiled module's kernels are
captured once per shape as a CUDA graph and replayed (one launch where eager code launches
hundreds). The noise is drawn outside every captured module, by diffusers from each job's own
generator (prepare_latents and the VAE's latent sample in engine.pipeline), so seeds mean the
same pictures as without graphs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger("engine")

CUDA_GRAPHS_NEED_CUDA = (
    "[engine] cuda_graphs needs an NVIDIA GPU (CUDA), and this engine runs on {device}; "
    "set [engine] cuda_graphs = false or [engine] device to cuda."
)


def parse_size(text: str) -> tuple[int, int]:
    """'512x384' -> (512, 384): width x height, each a multiple of 8 (as prepare_picture makes them)."""
    width, sep, height = text.strip().lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ValueError(f"'{text}' is not a size like 512x384")
    size = int(width), int(height)
    if min(size) < 64 or size[0] % 8 or size[1] % 8:
        raise ValueError(f"'{text}': both sides must be multiples of 8 and at least 64")
    return size


class ShapeRouted:
    """A module's forward that runs compiled for the shapes warmed up (its first argument's
    shape and dtype), eagerly for any other; while `recording`, every call runs compiled and
    its shape joins the warmed ones."""

    def __init__(self, eager: Callable[..., Any], compiled: Callable[..., Any]) -> None:
        self.eager = eager
        self.compiled = compiled
        self.shapes: set[tuple[tuple[int, ...], torch.dtype]] = set()
        self.recording = False
        self.compiled_calls = 0
        self.eager_calls = 0

    def __call__(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        key = (tuple(sample.shape), sample.dtype)
        if self.recording:
            self.shapes.add(key)
        if key in self.shapes:
            self.compiled_calls += 1
            return self.compiled(sample, *args, **kwargs)
        self.eager_calls += 1
        return self.eager(sample, *args, **kwargs)


def compile_pipeline(
    pipe: Any, *, cuda_graphs: bool, shapes_per_module: int, backend: str = "inductor"
) -> list[ShapeRouted]:
    """Compile the UNet's and the VAE's encoder and decoder forwards in place (channels_last
    weights); returns their routers, recording nothing yet. `backend` other than inductor is
    for tests: "eager" traces with dynamo but runs the traced code as it is (seconds, where
    inductor's first compile takes minutes on a CPU)."""
    mode = "reduce-overhead" if cuda_graphs else "default"
    limit_name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    # One compiled variant per warmed shape; the routers keep every other shape away.
    if getattr(torch._dynamo.config, limit_name) < shapes_per_module:
        setattr(torch._dynamo.config, limit_name, shapes_per_module)
    routers = []
    modules = [pipe.unet, pipe.vae.encoder, pipe.vae.decoder]
    for module in modules:
        module.to(memory_format=torch.channels_last)
        eager = module.forward
        # mode is inductor's; None (torch.compile's default) for any other backend
        compiled = torch.compile(eager, backend=backend, dynamic=False, mode=mode if backend == "inductor" else None)
        router = ShapeRouted(eager, compiled)
        module.forward = router  # an instance attribute: nn.Module.__call__ finds it first
        routers.append(router)
    return routers


def warm_up(engine: Any, routers: list[ShapeRouted], sizes: list[tuple[int, int]]) -> None:
    """Run one batch of each size at batch 1 and at max_batch, recording their shapes: the
    compiles happen here, at start, not when a member's job first has that shape."""
    from PIL import Image

    from engine.api import EngineJob

    batch_sizes = sorted({1, engine.max_batch})
    for router in routers:
        router.recording = True
    try:
        for width, height in sizes:
            for n in batch_sizes:
                started = time.perf_counter()
                jobs = [
                    EngineJob(
                        job_id=f"warm-up-{width}x{height}-{n}-{i}",
                        picture=Image.new("RGB", (width, height), (128, 128, 128)),
                        prompt="warm-up",
                        strength=0.5,
                        seed=i,
                    )  # fmt: skip
                    for i in range(n)
                ]
                outputs = engine.run(jobs)
                failed = [o.error for o in outputs if o.error]
                if failed:
                    raise RuntimeError(
                        f"the compiled engine failed its warm-up at {width}x{height}, batch {n}: {failed[0]}"
                    )
                log.info("compiled for %dx%d, batch %d, in %.1f s", width, height, n, time.perf_counter() - started)
    finally:
        for router in routers:
            router.recording = False
