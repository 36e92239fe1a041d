"""GPU benchmark of the engine (issue 20, item 4): one run of about 6 minutes on a GPU box.

The model is SD-Turbo's real architecture with random weights, built from its configs (nothing
is downloaded); the bot's production settings: float16, steps 4, strength 0.5 (2 UNet calls),
guidance 0. The pictures come in the sizes the default tiers make of a 4:3 photo and a square
one (512x384, 512x512, 768x576, 1024x768; --sizes), the same number of each, so batches are by
size as the bot's are.

Variants, each at batch 1 and at the largest of --batches, measured **interleaved**: repeat by
repeat every variant runs once, in an order rotated each repeat, so drift (clocks, heat, other
load) falls on all of them alike:
- naive: one plain diffusers call per picture (PIL in, PIL out, its own generator): the
  reference every other variant's pictures are compared with (max |delta| in levels of 255, and
  the lowest PSNR over the pictures);
- baseline: the engine before issue 20 (PIL in and out, the text encoder on every call, the VAE
  encoding one picture at a time);
- each change alone on the baseline: + prompt cache, + device pictures (uint8 in and out through
  pinned memory, one VAE encode a batch), + the device looked up once (diffusers walks every
  module for offload hooks on every call), + cudnn_benchmark (CUDA), + vae = "tiny";
- combined: the exact path (prompt cache + device pictures + device once: the engine's default),
  and all eager changes together (exact + cudnn_benchmark + vae = "tiny");
- in child processes, each stopped at the budget: [engine] compile, cuda_graphs, and all
  (cuda_graphs + cudnn_benchmark + vae = "tiny"), loaded through DiffusersEngine.load as the
  bot loads them (warm-up at start for the first size), measured on pictures of that size
  beside the exact eager engine in the same process;
- last, the pipelined worker: the real bot/worker.py, RestyleService and store on SQLite with
  the exact engine, fed 1280x960 JPEG photos prepared for the free tier: pictures/s as the bot
  sustains them, and the fraction of that time the engine was busy.

Every engine row has its time per pipeline call in each stage (text encoder, pre: pictures to
normalised tensors, VAE encode, UNet, VAE decode, post: back to pictures), from CUDA events on a
GPU (no sync inside the call) or the clock on the CPU, and "rest", the call's wall time minus
the stages (diffusers' Python, the scheduler, launch gaps). The vae = "tiny" rows use a
random-weight AutoencoderTiny of TAESD's architecture: its speed is real, its pictures noise.
Naive, the baseline, the exact path and the compiled options are also profiled once
(torch.profiler): kernel launches, CUDA graph launches and syncs per call, the costliest ops.
--tiny runs the tiny test model (what `python -m engine make-test-model` writes) at 64x64 and
96x64 on the CPU.

--budget-s (default 360) bounds the whole run: variants not reached by then are skipped and
said so, the children are killed at it, and the JSON ($OUT/gpu_results.json when OUT is set,
or --out) is written after every row and at the end.

    python3 bench/gpu.py --wheels .whl                     # a GPU box (diffusers carried as wheels)
    PYTHONPATH=. .venv/bin/python bench/gpu.py --tiny       # the smoke run on the CPU (~30 s)

A GPU box with torch and transformers but without diffusers: on a machine with network access,
download the wheels the box lacks into a folder and carry it (bench/README.md, "A GPU box
without diffusers", has the command); --wheels DIR installs them into DIR/site and uses them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The compile child shares the parent's clock, so its log lines read on one time line.
STARTED = time.perf_counter() - (time.time() - float(os.environ.get("RESTYLE_BENCH_T0", time.time())))
PROMPTS = ("oil painting", "a watercolour of a harbour", "pencil sketch", "neon cyberpunk city at night")
# What the worker row needs beyond torch, transformers, diffusers, Pillow and numpy (bot/ on
# SQLite), each with the wheels to carry for it.
NEEDED_FOR_WORKER = {"aiosqlite": "aiosqlite", "tenacity": "tenacity", "pydantic": "pydantic pydantic_core annotated_types typing_inspection"}
MISSING_PACKAGE = (
    "bench/gpu.py needs {name}, which this Python ({python}) cannot import: download its wheels on a machine with "
    "network access and pass --wheels DIR (see bench/README.md, \"A GPU box without diffusers\")."
)


def say(text: str = "") -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f} s] {text}" if text else "", flush=True)


def elapsed_s() -> float:
    return time.perf_counter() - STARTED


# The architecture -------------------------------------------------------------------------------

# stabilityai/sd-turbo = Stable Diffusion 2.1 base (512 px) distilled: these are its configs.
UNET_SD21 = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    only_cross_attention=False,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
    upcast_attention=False,
    resnet_time_scale_shift="default",
    conv_in_kernel=3,
    conv_out_kernel=3,
)
VAE_SD = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
TEXT_OPENCLIP_H = dict(  # OpenCLIP ViT-H/14 text tower, as SD 2.x uses it (penultimate layer: 23)
    hidden_size=1024,
    intermediate_size=4096,
    num_attention_heads=16,
    num_hidden_layers=23,
    max_position_embeddings=77,
    vocab_size=49408,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
    projection_dim=512,
)
SCHEDULER_SD_TURBO = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    interpolation_type="linear",
    use_karras_sigmas=False,
    timestep_spacing="trailing",
    steps_offset=1,
)


def build_model(folder: Path, *, tiny: bool, device: str, dtype: Any) -> dict[str, Any]:
    """Random-weight SD-Turbo saved with save_pretrained to `folder`; with `tiny`, the tiny test
    model instead (what `python -m engine make-test-model` writes, the tests' model)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from engine.testmodel import BOS, EOS, _tokenizer_files, _vocab, build_test_pipeline

    if tiny:
        test_pipe = build_test_pipeline()
        counts = {name: sum(p.numel() for p in getattr(test_pipe, name).parameters()) for name in ("unet", "vae", "text_encoder")}
        test_pipe.to(dtype=dtype).save_pretrained(str(folder), safe_serialization=True)
        return counts

    vocab = _vocab()  # byte-level CLIP BPE, no merges: tokenization quality does not matter here
    tok_dir = folder.parent / (folder.name + "-tokenizer")
    _tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))

    def make(build_on: str) -> tuple[Any, Any, Any]:
        torch.manual_seed(0)
        with torch.device(build_on):  # random init on the GPU takes seconds, not a minute
            unet = UNet2DConditionModel(**UNET_SD21)
            vae = AutoencoderKL(**VAE_SD)
            text = CLIPTextModel(CLIPTextConfig(**TEXT_OPENCLIP_H,
                                                bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[EOS]))  # fmt: skip
        return unet, vae, text

    try:
        unet, vae, text = make(device)
    except Exception as exc:  # an old torch without device context managers, say
        say(f"building on {device} failed ({type(exc).__name__}: {exc}); building on the CPU")
        unet, vae, text = make("cpu")
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in (("unet", unet), ("vae", vae), ("text_encoder", text))}
    unet, vae, text = (m.to(device="cpu", dtype=dtype) for m in (unet, vae, text))
    pipe = StableDiffusionImg2ImgPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
        scheduler=EulerDiscreteScheduler(**SCHEDULER_SD_TURBO),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(str(folder), safe_serialization=True)
    del pipe, unet, vae, text
    gc.collect()
    return counts


# The workload -----------------------------------------------------------------------------------

# The sizes the default tiers make (engine.pictures.prepare_picture: longest side = max_side,
# sides multiples of 8): a 4:3 photo at free (512), pro (768) and max (1024), and a square one at
# free. --tiny: the same shapes scaled down for the tiny model on the CPU.
TIER_SIZES = ("512x384", "512x512", "768x576", "1024x768")
TINY_SIZES = ("64x64", "96x64")


def photo(seed: int, size: tuple[int, int]) -> Any:
    """Photo-like pixels: smooth shapes plus sensor noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / (w / 9 + 7 * c) + c) * np.cos(y / (h / 7 + 5 * c)) for c in range(3)], axis=-1)
    return Image.fromarray((base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8))


def photo_jpeg(seed: int = 1, size: tuple[int, int] = (1280, 960)) -> bytes:
    buffer = io.BytesIO()
    photo(seed, size).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_jobs(sizes: list[tuple[int, int]], per_size: int, strength: float, steps: int) -> list[Any]:
    """per_size jobs of each size, sizes taking turns (the engine groups them by size)."""
    from engine.api import EngineJob

    jobs = []
    for i in range(per_size):
        for w, h in sizes:
            n = len(jobs)
            jobs.append(EngineJob(f"job{n}-{w}x{h}", photo(n, (w, h)), PROMPTS[n % len(PROMPTS)], strength, seed=1000 + n, steps=steps))
    return jobs


def jobs_for_batch(jobs: list[Any], sizes: list[tuple[int, int]], batch: int, min_per_size: int) -> list[Any]:
    """The first max(batch, min_per_size) jobs of each size: full chunks only."""
    keep = max(batch, min_per_size)
    counts: Counter = Counter()
    chosen = []
    for job in jobs:
        if counts[job.picture.size] < keep:
            counts[job.picture.size] += 1
            chosen.append(job)
    return chosen


# The variants -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    _: KW_ONLY  # the flags by name only: five booleans in a row are easy to misplace
    prompt_cache: bool = False
    device_pictures: bool = False
    pinned_device: bool = False  # engine.pipeline.pin_execution_device
    cudnn_benchmark: bool = False
    tiny_vae: bool = False
    naive: bool = False  # a plain diffusers call per picture, no engine
    cuda_only: bool = False  # cudnn_benchmark alone: on the CPU it is the baseline again


NAIVE = Variant("naive", "naive: 1 plain diffusers call per picture", naive=True)
EAGER_VARIANTS = (
    Variant("baseline", "baseline: the engine before issue 20 (PIL in/out, text encoder every call)"),
    Variant("prompt_cache", "+ prompt cache", prompt_cache=True),
    Variant("device_pictures", "+ device pictures (uint8 in/out, one VAE encode a batch)", device_pictures=True),
    Variant("pinned_device", "+ device looked up once (not diffusers' module walk every call)", pinned_device=True),
    Variant("cudnn_benchmark", "+ cudnn_benchmark", cudnn_benchmark=True, cuda_only=True),
    Variant("tiny_vae", '+ vae = "tiny"', tiny_vae=True),
    Variant("exact", "exact path: prompt cache + device pictures + device once (the default)",
            prompt_cache=True, device_pictures=True, pinned_device=True),
    Variant("all_eager", 'all eager: exact + cudnn_benchmark + vae = "tiny"',
            prompt_cache=True, device_pictures=True, pinned_device=True, cudnn_benchmark=True, tiny_vae=True),
)
EXACT = next(v for v in EAGER_VARIANTS if v.key == "exact")
# The children: [engine] options as DiffusersEngine.load takes them.
CHILD_OPTIONS = {
    "cuda_graphs": {"cuda_graphs": True},
    "compile": {"compile": True},
    "all": {"cuda_graphs": True, "cudnn_benchmark": True, "vae": "tiny"},
}


def plain_copy(pipe: Any, **replace: Any) -> Any:
    """A pipeline object of diffusers' own class (not the engine's pinned one) over the same
    modules, with `replace` swapped in: diffusers as it comes."""
    import copy

    base = getattr(type(pipe), "_engine_pinned_from", type(pipe))
    # A scheduler of its own: naive runs it in place (the engines run copies of theirs).
    components = {**pipe.components, "scheduler": copy.deepcopy(pipe.scheduler), **replace}
    made = base(**components, requires_safety_checker=False)
    made.set_progress_bar_config(disable=True)
    return made


def variant_pipes(engine: Any, tiny_vae: Any | None) -> dict[tuple[bool, bool], Any]:
    """(tiny VAE?, device pinned?) -> a pipeline over the loaded engine's modules."""
    from engine.pipeline import pin_execution_device

    pipes = {}
    for tiny in (False, True) if tiny_vae is not None else (False,):
        for pinned in (False, True):
            made = plain_copy(engine.pipe, **({"vae": tiny_vae} if tiny else {}))
            if pinned:
                pin_execution_device(made)
            pipes[(tiny, pinned)] = made
    return pipes


def variant_engine(engine: Any, pipes: dict[tuple[bool, bool], Any], variant: Variant, batch: int) -> Any:
    """An engine over the loaded engine's modules with the variant's changes on or off and
    max_batch = batch."""
    from engine.pipeline import DiffusersEngine

    pipe = pipes[(variant.tiny_vae, variant.pinned_device)]
    made = DiffusersEngine(pipe, model=engine.model, device=engine.device, steps=engine.steps,
                           guidance_scale=engine.guidance_scale, max_batch=batch, turbo=engine.turbo)  # fmt: skip
    if not variant.pinned_device:  # the engine pins what it is given: give diffusers' class back
        pipe.__class__ = type(pipe)._engine_pinned_from
    if not variant.prompt_cache:
        made.prompt_cache = None
    made.device_pictures = variant.device_pictures and made.device_pictures
    return made


def load_tiny_vae(folder: Path, dtype: Any, device: str) -> Any:
    """An AutoencoderTiny through the engine's own loader."""
    from engine.loading import _load_tiny_vae

    return _load_tiny_vae(str(folder), dtype, True).to(device)


def build_tiny_vae(folder: Path, tiny: bool) -> Path:
    """An AutoencoderTiny with diffusers' default config (madebyollin/taesd's architecture),
    random weights: its speed is the real one, its pictures are noise."""
    import torch
    from diffusers import AutoencoderTiny

    if tiny:
        from engine.testmodel import make_test_tiny_vae

        return make_test_tiny_vae(folder)
    torch.manual_seed(0)
    AutoencoderTiny().save_pretrained(str(folder))
    return folder


def naive_run(pipe: Any, jobs: list[Any], generator_device: str) -> list[Any]:
    """One plain diffusers call per job, as a simple bot makes it; EngineOutput-like results."""
    import torch

    from engine.api import EngineOutput

    outputs = []
    for job in jobs:
        result = pipe(prompt=job.prompt, image=job.picture, strength=job.strength, num_inference_steps=job.steps,
                      guidance_scale=0.0, generator=torch.Generator(generator_device).manual_seed(job.seed))  # fmt: skip
        outputs.append(EngineOutput(job.job_id, job.seed, job.steps, 0.0, picture=result.images[0]))
    return outputs


def run_engine(engine: Any, jobs: list[Any]) -> list[Any]:
    outputs = engine.run(jobs)
    failed = [o.error for o in outputs if o.picture is None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(outputs)} jobs failed: {failed[0]}")
    return outputs


# Measuring ---------------------------------------------------------------------------------------


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_reset(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**30
    return None


def _rate(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def _gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} GiB"


# The stages, in the order a call runs them. Modules are timed by forward hooks; pre and post by
# wrapping what does them: diffusers' image_processor.preprocess / postprocess (the PIL path,
# on the CPU) and the engine's _device_pixels / _to_pictures (the device path).
STAGES = ("text", "pre", "encode", "unet", "decode", "post")
MODULE_STAGES = (("text", "text_encoder"), ("encode", "vae.encoder"), ("unet", "unet"), ("decode", "vae.decoder"))


def _module(pipe: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        pipe = getattr(pipe, name, None)
    return pipe


def pipeline_calls(jobs: list[Any], batch: int) -> int:
    return sum(-(-n // batch) for n in Counter(job.picture.size for job in jobs).values())


def stage_times(run: Callable[[], Any], pipe: Any, engine: Any | None, calls: int, device: str) -> dict[str, float]:
    """One pass of `run` with the stages timed: ms per pipeline call in each, and the rest.
    CUDA events on a GPU (recorded on the stream, no sync inside the call, so the timing does
    not change what it times), the clock on the CPU."""
    import torch

    import engine.pipeline as pipeline_module

    cuda = device.startswith("cuda")
    marks: dict[str, list[Any]] = {stage: [] for stage in STAGES}

    def now() -> Any:
        if cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = now()
            out = fn(*args, **kwargs)
            marks[stage].append((start, now()))
            return out

        return wrapper

    handles = []
    for stage, dotted in MODULE_STAGES:
        module = _module(pipe, dotted)
        if module is None:
            continue
        opened: list[Any] = []
        handles.append(module.register_forward_pre_hook(lambda m, a, _opened=opened: _opened.append(now())))
        handles.append(module.register_forward_hook(
            lambda m, a, out, _opened=opened, _stage=stage: marks[_stage].append((_opened.pop(), now()))))  # fmt: skip
    processor = pipe.image_processor
    processor.preprocess = timed("pre", processor.preprocess)  # instance attributes, removed below
    processor.postprocess = timed("post", processor.postprocess)
    if engine is not None:
        engine._device_pixels = timed("pre", engine._device_pixels)
    to_pictures = pipeline_module._to_pictures
    pipeline_module._to_pictures = timed("post", to_pictures)
    try:
        sync(device)
        started = time.perf_counter()
        run()
        sync(device)
        wall_ms = (time.perf_counter() - started) * 1000
    finally:
        for handle in handles:
            handle.remove()
        del processor.preprocess, processor.postprocess
        if engine is not None:
            del engine._device_pixels
        pipeline_module._to_pictures = to_pictures

    def ms(start: Any, end: Any) -> float:
        return start.elapsed_time(end) if cuda else (end - start) * 1000

    per_call = {stage: sum(ms(a, b) for a, b in pairs) / calls for stage, pairs in marks.items()}
    per_call["rest"] = wall_ms / calls - sum(per_call.values())
    return {k: round(v, 2) for k, v in per_call.items()}


# The variants profiled once (torch.profiler), after their timed runs: kernel launches per call
# is what bounds batch 1 on a GPU (the engine review counted ~1,270 eager), and the table of the
# costliest ops says where the next millisecond is.
PROFILED = ("naive", "baseline", "exact", "cuda_graphs", "compile", "all")
PROFILED_TINY = ("baseline", "exact")  # at batch 1 only: on a CPU the profiler costs more than the run
KERNEL_LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")


def profile_run(run: Callable[[], Any], calls: int, device: str) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync(device)
    with profile(activities=activities) as prof:
        run()
        sync(device)
    averages = prof.key_averages()
    found = {"aten_ops_per_call": round(sum(e.count for e in averages if e.key.startswith("aten::")) / calls, 1)}
    if cuda:
        found["kernel_launches_per_call"] = round(sum(e.count for e in averages if e.key in KERNEL_LAUNCHES) / calls, 1)
        found["graph_launches_per_call"] = round(sum(e.count for e in averages if e.key == "cudaGraphLaunch") / calls, 1)
        found["syncs_per_call"] = round(sum(e.count for e in averages if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize"))
                                        / calls, 1)  # fmt: skip
    try:
        found["top_ops"] = averages.table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=12)
    except (KeyError, AttributeError, ValueError):  # an older torch names the column self_cuda_time_total
        found["top_ops"] = averages.table(sort_by="self_cuda_time_total", row_limit=12)
    return found


def fidelity(outputs: list[Any], reference: dict[str, Any] | None) -> dict[str, Any] | None:
    """Against the reference pictures of the same jobs (same seeds): the largest difference of
    any channel of any pixel (levels of 255) and the lowest PSNR (dB; "inf": identical)."""
    import numpy as np

    if not reference:
        return None
    worst_delta, worst_psnr, compared = 0, math.inf, 0
    for out in outputs:
        ref = reference.get(out.job_id)
        if ref is None:
            continue
        a = np.asarray(out.picture, dtype=np.float64)
        b = np.asarray(ref.picture, dtype=np.float64)
        if a.shape != b.shape:
            return {"max_abs_delta": math.nan, "min_psnr_db": math.nan, "pictures": compared}
        compared += 1
        worst_delta = max(worst_delta, int(np.abs(a - b).max()))
        mse = float(np.mean((a - b) ** 2))
        worst_psnr = min(worst_psnr, math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse))
    return {"max_abs_delta": worst_delta, "min_psnr_db": round(worst_psnr, 2) if math.isfinite(worst_psnr) else "inf",
            "pictures": compared}  # fmt: skip


class Results:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, Any] = {"meta": {}, "rows": [], "errors": [], "skipped": [], "phases_s": {}}

    def save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=2, default=str))
            tmp.replace(self.path)
        except OSError as exc:
            say(f"could not write {self.path}: {exc}")

    def row(self, row: dict[str, Any]) -> None:
        self.data["rows"].append(row)
        self.save()

    def skip(self, what: str, why: str) -> None:
        say(f"SKIPPED: {what}: {why}")
        self.data["skipped"].append({"what": what, "why": why})
        self.save()

    def error(self, phase: str, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        say(f"PHASE FAILED: {phase}: {text}")
        if not isinstance(exc, str):
            traceback.print_exc()
        sys.stdout.flush()
        self.data["errors"].append({"phase": phase, "error": text[:2000]})
        self.save()


def phase(results: Results, name: str) -> Any:
    """`with phase(results, "naive"):` — a failure is printed and recorded, and the run goes on."""

    class _Phase:
        def __enter__(self) -> None:
            self.started = time.perf_counter()
            say(f"--- {name}")

        def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
            results.data["phases_s"][name] = round(time.perf_counter() - self.started, 1)
            if exc is not None and not isinstance(exc, KeyboardInterrupt):
                results.error(name, exc)
                return True
            results.save()
            return False

    return _Phase()


@dataclass
class Cell:
    """One variant at one batch size: what it runs and what it measured."""

    variant: Variant
    batch: int
    jobs: list[Any]
    run: Callable[[], list[Any]]
    pipe: Any
    engine: Any | None
    seconds: list[float] = field(default_factory=list)
    peak: float | None = None
    outputs: list[Any] | None = None
    first_s: float | None = None

    @property
    def name(self) -> str:
        return f"{self.variant.label}, batch {self.batch}"


def interleaved(results: Results, cells: list[Cell], args: argparse.Namespace, deadline_s: float,
                reference: dict[str, Any] | None, source: str) -> None:  # fmt: skip
    """Warm every cell up once, then one pass per cell with the stages timed (a second warm-up
    too), then `repeats` rounds in which every cell runs once (the order rotated each round);
    stops before a run that would end past deadline_s. A row per cell with a timed run."""
    import torch

    def run_cell(cell: Cell) -> float:
        torch.backends.cudnn.benchmark = cell.variant.cudnn_benchmark
        sync(args.device)
        started = time.perf_counter()
        cell.outputs = cell.run()
        sync(args.device)
        return time.perf_counter() - started

    stopped = ""
    for cell in cells:
        if elapsed_s() > deadline_s:
            stopped = f"the budget was reached during the warm-up, before {cell.name}"
            break
        try:
            cell.first_s = run_cell(cell)
        except Exception as exc:
            results.error(f"{source}: {cell.name} (warm-up)", exc)
            cell.first_s = math.nan
    live = [c for c in cells if c.first_s is not None and not math.isnan(c.first_s)]
    stages: dict[int, dict[str, float]] = {}
    for index, cell in enumerate(live):
        if stopped:
            break
        if elapsed_s() + (cell.first_s or 0.0) > deadline_s:
            stopped = f"the budget was reached while timing the stages, before {cell.name}"
            break
        torch.backends.cudnn.benchmark = cell.variant.cudnn_benchmark
        calls = len(cell.jobs) if cell.variant.naive else pipeline_calls(cell.jobs, cell.batch)
        try:
            stages[index] = stage_times(cell.run, cell.pipe, cell.engine, calls, args.device)
        except Exception as exc:
            results.error(f"{source}: {cell.name} (stages)", exc)
    for repeat in range(args.repeats):
        if stopped:
            break
        shift = repeat % max(1, len(live))
        for cell in live[shift:] + live[:shift]:
            expected = statistics.median(cell.seconds) if cell.seconds else cell.first_s or 0.0
            if elapsed_s() + expected > deadline_s:
                stopped = f"the budget was reached in repeat {repeat + 1} of {args.repeats}, before {cell.name}"
                break
            peak_reset(args.device)
            cell.seconds.append(run_cell(cell))
            found = peak_gib(args.device)
            cell.peak = found if cell.peak is None or found is None else max(cell.peak, found)
        if not stopped:
            say(f"{source}: repeat {repeat + 1} of {args.repeats} done")
    if stopped:
        results.skip(f"{source}: the rest of the interleaved repeats", stopped)
    profiles: dict[int, dict[str, Any]] = {}
    for index, cell in enumerate(live):
        wanted = cell.variant.key in PROFILED_TINY and cell.batch == 1 if args.tiny else cell.variant.key in PROFILED
        if not wanted or not cell.seconds:
            continue
        if elapsed_s() + 3 * statistics.median(cell.seconds) > deadline_s:
            results.skip(f"{source}: profile of {cell.name}", "the budget")
            continue
        torch.backends.cudnn.benchmark = cell.variant.cudnn_benchmark
        calls = len(cell.jobs) if cell.variant.naive else pipeline_calls(cell.jobs, cell.batch)
        try:
            profiles[index] = profile_run(cell.run, calls, args.device)
        except Exception as exc:
            results.error(f"{source}: {cell.name} (profile)", exc)
    torch.backends.cudnn.benchmark = False
    for index, cell in enumerate(live):
        if not cell.seconds:
            results.skip(cell.name, "no timed run before the budget")
            continue
        n = len(cell.jobs)
        ms = [s * 1000 / n for s in cell.seconds]
        calls = len(cell.jobs) if cell.variant.naive else pipeline_calls(cell.jobs, cell.batch)
        row: dict[str, Any] = {
            "variant": cell.variant.key, "label": cell.variant.label, "source": source, "batch": cell.batch,
            "pictures": n, "sizes": sorted({f"{j.picture.width}x{j.picture.height}" for j in cell.jobs}),
            "repeats": len(cell.seconds),
            "ms_per_picture": {"median": statistics.median(ms), "min": min(ms), "max": max(ms)},
            "pictures_per_s": {"median": statistics.median(n / s for s in cell.seconds), "min": n / max(cell.seconds),
                               "max": n / min(cell.seconds)},
            "ms_per_call": statistics.median(cell.seconds) * 1000 / calls,
            "first_run_s": round(cell.first_s or 0.0, 3), "peak_gib": cell.peak,
            "vs_naive": "reference" if cell.variant.naive and source == "main" else fidelity(cell.outputs or [], reference),
            "random_weights_vae": cell.variant.tiny_vae,
        }  # fmt: skip
        if index in stages:
            row["stages_ms_per_call"] = stages[index]
        if index in profiles:
            row["profile"] = profiles[index]
            counts = {k: v for k, v in profiles[index].items() if k != "top_ops"}
            say(f"{cell.name}: profiled, per call {counts}\n{profiles[index]['top_ops']}")
        say(f"{cell.name}: {row['ms_per_picture']['median']:.1f} ms/picture ({_rate(row['pictures_per_s']['median'])}/s), "
            f"{row['ms_per_call']:.1f} ms/call; stages {row.get('stages_ms_per_call')}; vs naive {row['vs_naive']}")  # fmt: skip
        results.row(row)
        cell.outputs = None


def make_cells(engine: Any, pipes: dict[tuple[bool, bool], Any], variants: list[Variant], batches: list[int], jobs: list[Any],
               sizes: list[tuple[int, int]], args: argparse.Namespace) -> list[Cell]:  # fmt: skip
    cells = []
    for variant in variants:
        if variant.cuda_only and not args.device.startswith("cuda"):
            continue
        if variant.tiny_vae and (True, False) not in pipes:
            continue
        for batch in ([1] if variant.naive else batches):
            chosen = jobs_for_batch(jobs, sizes, batch, args.min_per_size)
            if variant.naive:
                pipe = pipes[(False, False)]
                cells.append(Cell(variant, 1, chosen, lambda p=pipe, j=chosen: naive_run(p, j, engine._generator_device), pipe, None))
                continue
            made = variant_engine(engine, pipes, variant, batch)
            cells.append(Cell(variant, batch, chosen, lambda e=made, j=chosen: run_engine(e, j), made.pipe, made))
    return cells


# The pipelined worker -----------------------------------------------------------------------------


class CountingEngine:
    """The engine as the worker sees it, with its busy time and batch sizes counted."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.max_batch = engine.max_batch
        self.busy_s = 0.0
        self.batches: Counter = Counter()
        self.sizes: Counter = Counter()

    def run(self, jobs: Any, on_progress: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return self.engine.run(jobs, on_progress)
        finally:
            self.busy_s += time.perf_counter() - started
            self.batches[len(jobs)] += 1
            self.sizes.update(f"{j.picture.width}x{j.picture.height}" for j in jobs)

    def interrupt(self) -> None:
        self.engine.interrupt()


async def worker_run(engine: Any, folder: Path, jobs: int, max_side: int, steps: int, timeout_s: float) -> dict[str, Any]:
    """The real RestyleService, store (SQLite) and Worker with `engine`: `jobs` photos submitted
    (prepared to the free tier's max_side then, before the clock starts), measured from the
    worker's start until every result has been handed to a front end that takes it at once."""
    from bot.clock import SystemClock
    from bot.config import load_config
    from bot.core.types import Accepted, Member
    from bot.service import RestyleService
    from bot.store import Store
    from bot.worker import Worker

    class CountingFrontEnd:
        platform = "bench"

        def __init__(self) -> None:
            self.delivered = 0
            self.all_delivered = asyncio.Event()

        async def job_updated(self, job: Any) -> None:
            pass

        async def deliver_result(self, delivery: Any) -> None:
            self.delivered += 1
            if self.delivered >= jobs:
                self.all_delivered.set()

        async def deliver_failure(self, job: Any) -> None:
            raise RuntimeError(f"job {job.id} failed: {job.error}")

    path = folder / "config.toml"
    path.write_text(
        f'[bot]\ndata_dir = "{folder / "data"}"\n'
        f"[engine]\nmax_batch = {engine.max_batch}\nsteps = {steps}\n"
        "[web]\nenabled = false\n"
        f"[tiers.free]\nmax_queued = 100000\ndaily_quota = 100000\nmin_turnaround_s = 0\nmax_side = {max_side}\n"
    )
    config = load_config(path, env={})
    store = await Store.open(config.bot.data_dir, config.store.url)
    service = RestyleService(config, store, SystemClock(), rng=random.Random(7))
    frontend = CountingFrontEnd()
    service.dispatch.register(frontend)
    await service.start()
    counted = CountingEngine(engine)
    worker = Worker(service.batches, counted)
    task = None
    timed_out = False
    try:
        picture = photo_jpeg()
        members = max(1, jobs // 6)  # six each: under the flood guard's 10 per 10 s
        for i in range(jobs):
            answer = await service.jobs.submit(Member("bench", f"m{i % members}"), picture, f"/restyle {PROMPTS[i % len(PROMPTS)]}", {})
            if not isinstance(answer, Accepted):
                raise RuntimeError(f"the service refused job {i}: {answer}")
        started = time.perf_counter()
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(frontend.all_delivered.wait(), timeout=timeout_s)
        except TimeoutError:
            timed_out = True
        span = time.perf_counter() - started
    finally:
        service.stop_accepting()
        worker.stop()
        await service.close()
        if task is not None:
            await asyncio.wait_for(task, 120)
        await store.close()
    delivered = frontend.delivered
    return {
        "variant": "worker", "label": "pipelined worker (bot/worker.py, SQLite) with the exact engine", "source": "worker",
        "batch": engine.max_batch, "jobs": jobs, "delivered": delivered, "span_s": round(span, 3),
        "pictures_per_s": round(delivered / span, 2), "engine_busy_fraction": round(counted.busy_s / span, 3),
        "engine_alone_pictures_per_s": round(sum(counted.sizes.values()) / counted.busy_s, 2) if counted.busy_s else None,
        "batches": dict(counted.batches), "sizes": dict(counted.sizes), "stopped_at_budget": timed_out,
    }  # fmt: skip


def worker_phase(results: Results, engine: Any, args: argparse.Namespace, deadline_s: float) -> None:
    missing = [name for name in NEEDED_FOR_WORKER if not _importable(name)]
    if missing:
        wheels = " ".join(NEEDED_FOR_WORKER[name] for name in missing)
        results.skip("pipelined worker", f"the bot's store needs {', '.join(missing)}, not installed here (carry the wheels: {wheels})")
        return
    left = deadline_s - elapsed_s()
    if left < 10:
        results.skip("pipelined worker", f"only {left:.0f} s of the budget left")
        return
    folder = Path(tempfile.mkdtemp(prefix="restyle-gpu-worker-"))
    try:
        jobs = args.worker_jobs or (8 if args.tiny else 16) * engine.max_batch
        row = asyncio.run(worker_run(engine, folder, jobs, args.worker_max_side, args.steps, left))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if row["stopped_at_budget"]:
        results.error("pipelined worker", f"stopped at the budget after {row['delivered']} of {jobs} deliveries")
    say(f"pipelined worker, batch {row['batch']}: {row['pictures_per_s']} pictures/s sustained, engine busy "
        f"{row['engine_busy_fraction']:.0%} (engine alone {row['engine_alone_pictures_per_s']}/s); batches {row['batches']}")
    results.row(row)


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


# The run ------------------------------------------------------------------------------------------


def load_engine(model_dir: Path, args: argparse.Namespace, **options: Any) -> Any:
    """The engine through its own loading path: production settings plus `options` ([engine]
    keys as DiffusersEngine.load takes them)."""
    from engine.pipeline import DiffusersEngine

    settings = dict(device=args.device, dtype=args.dtype, steps=args.steps, turbo=True, max_batch=max(args.batches),
                    local_files_only=True)  # fmt: skip
    settings.update(options)
    return DiffusersEngine.load(str(model_dir), **settings)


def attention_processors(pipe: Any) -> str:
    try:
        return ", ".join(sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()}))
    except Exception as exc:  # older/newer diffusers
        return f"unknown ({exc})"


def reference_pictures(pipe: Any, jobs: list[Any], generator_device: str) -> dict[str, Any]:
    return {out.job_id: out for out in naive_run(pipe, jobs, generator_device)}


def main_run(args: argparse.Namespace) -> None:
    import diffusers
    import torch
    import transformers

    from engine.compiled import parse_size

    results = Results(args.out)
    meta = results.data["meta"]
    transformers.logging.set_verbosity_error()
    diffusers.utils.logging.set_verbosity_error()
    meta.update({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "diffusers": diffusers.__version__, "transformers": transformers.__version__,
        "device": args.device, "dtype": args.dtype, "model": "the tiny test model (python -m engine make-test-model)" if args.tiny else "SD-Turbo architecture (SD 2.1 base), random weights",
        "sizes": args.sizes, "strength": args.strength, "steps": args.steps, "batches": args.batches,
        "repeats": args.repeats, "children": args.compile, "budget_s": args.budget_s, "command": sys.argv[1:],
    })  # fmt: skip
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda, but torch sees no CUDA GPU here (is the CUDA build of torch installed?)")
        props = torch.cuda.get_device_properties(0)
        meta.update({"gpu": torch.cuda.get_device_name(0), "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                     "cudnn": torch.backends.cudnn.version()})  # fmt: skip
    else:
        meta["cpu"] = _cpu_name()
    say(f"torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers {diffusers.__version__}, "
        f"transformers {transformers.__version__}, Python {platform.python_version()}")  # fmt: skip
    say(f"device: {meta.get('gpu') or meta.get('cpu')} ({args.device}), dtype {args.dtype}; {meta['model']}: sizes {args.sizes}, "
        f"strength {args.strength}, {args.steps} steps, batches {args.batches}, {args.repeats} repeats, budget {args.budget_s:.0f} s")
    results.save()

    # The budget: the children (each killed at its share) get the end of the run, the worker
    # row the stretch before them, the interleaved variants what comes first.
    children_s = min(0.5 * args.budget_s, 180.0 * len(args.compile)) if args.compile else 0.0
    worker_s = 15.0 if args.tiny else 30.0
    eager_deadline = args.budget_s - children_s - worker_s
    worker_deadline = args.budget_s - children_s

    tmp = tempfile.TemporaryDirectory(prefix="restyle-gpu-bench-")
    model_dir = args.model_dir or Path(tmp.name) / "model"
    taesd = Path(tmp.name) / "taesd"
    if args.model_dir is None:
        with phase(results, "build model"):
            dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[args.dtype]
            counts = build_model(model_dir, tiny=args.tiny, device=args.device, dtype=dtype)
            meta["parameters"] = counts
            size = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file())
            say(f"built and saved: parameters {', '.join(f'{k} {v / 1e6:.1f} M' for k, v in counts.items())}; "
                f"{size / 2**30:.2f} GiB on disk")  # fmt: skip
    with phase(results, "build tiny VAE"):
        build_tiny_vae(taesd, args.tiny)
    sizes = [parse_size(text) for text in args.sizes]

    engine = None
    with phase(results, "load engine"):
        started = time.perf_counter()
        engine = load_engine(model_dir, args)
        meta["load_s"] = round(time.perf_counter() - started, 1)
        meta["attention"] = attention_processors(engine.pipe)
        meta["engine"] = engine.settings_summary()
        say(f"DiffusersEngine.load: {meta['load_s']} s; {meta['engine']}; attention: {meta['attention']}")

    best_exact_batch = max(args.batches)
    if engine is not None:
        tiny_vae = None
        with phase(results, "tiny VAE"):
            tiny_vae = load_tiny_vae(taesd, engine.pipe.dtype, args.device)
        pipes = variant_pipes(engine, tiny_vae)
        jobs = make_jobs(sizes, max(max(args.batches), args.min_per_size), args.strength, args.steps)
        reference = None
        with phase(results, "reference pictures (naive, untimed)"):
            reference = reference_pictures(pipes[(False, False)], jobs, engine._generator_device)
        with phase(results, "interleaved variants"):
            cells = make_cells(engine, pipes, [NAIVE, *EAGER_VARIANTS], args.batches, jobs, sizes, args)
            say(f"{len(cells)} cells ({len(jobs)} jobs); eager deadline at {eager_deadline:.0f} s")
            interleaved(results, cells, args, eager_deadline, reference, "main")
            del cells
        exact = [r for r in results.data["rows"] if r["variant"] == "exact"]
        if exact:
            best_exact_batch = max(exact, key=lambda r: r["pictures_per_s"]["median"])["batch"]
        with phase(results, "pipelined worker"):
            worker_phase(results, variant_engine(engine, pipes, EXACT, best_exact_batch), args, worker_deadline)
        del tiny_vae, pipes
    del engine
    gc.collect()
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()

    for index, option in enumerate(args.compile):
        with phase(results, f"[engine] {option} (child process)"):
            share = (args.budget_s - elapsed_s() - 5) / (len(args.compile) - index)
            run_child(results, model_dir, taesd, args, option, share, best_exact_batch)

    summary(results)
    tmp.cleanup()


def run_child(results: Results, model_dir: Path, taesd: Path, args: argparse.Namespace, option: str, limit_s: float,
              batch: int) -> None:  # fmt: skip
    """An [engine] compile option in a child process, killed after limit_s, so a slow compile
    never costs the figures measured before it; what it measured by then is kept."""
    least = 20 if args.tiny else 60
    if limit_s < least:
        results.skip(f"[engine] {option}", f"only {limit_s:.0f} s of the budget left (it needs {least} s at least)")
        return
    piece = Path(tempfile.mkdtemp(prefix="restyle-gpu-child-")) / "rows.json"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--phase", "child", "--model-dir", str(model_dir),
        "--child-option", option, "--child-piece", str(piece), "--tiny-vae-dir", str(taesd), "--device", args.device,
        "--dtype", args.dtype, "--sizes", args.sizes[0], "--strength", str(args.strength), "--steps", str(args.steps),
        "--repeats", str(args.repeats), "--batches", *sorted({"1", str(batch)}, key=int), "--compile-backend", args.compile_backend,
        "--min-per-size", str(args.min_per_size),
    ] + (["--tiny"] if args.tiny else [])  # fmt: skip
    say(f"[engine] {option} in a child process ({args.sizes[0]}, batch 1 and {batch}), at most {limit_s:.0f} s")
    t0 = str(time.time() - elapsed_s())
    # Its own process group, so compile workers it starts are stopped with it.
    child = subprocess.Popen(command, env={**os.environ, "RESTYLE_BENCH_T0": t0}, start_new_session=True)
    try:
        child.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        results.error(f"[engine] {option}", f"stopped at the budget after {limit_s:.0f} s; whatever it measured is kept")
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except OSError:
            child.kill()
        child.wait()
    if piece.exists():
        got = json.loads(piece.read_text())
        for key in ("rows", "errors", "skipped"):
            results.data[key].extend(got.get(key, []))
        results.data["meta"][option] = got.get("meta")
        results.save()
    shutil.rmtree(piece.parent, ignore_errors=True)


def child_run(args: argparse.Namespace) -> None:
    """In its own process (the parent kills it at the budget): the engine loaded with the
    option, as the bot loads it (compile and warm-up for the first size at batch 1 and the
    batch), measured interleaved with the exact eager engine on pictures of that size."""
    from engine.compiled import parse_size

    option = args.child_option
    results = Results(args.child_piece)
    meta = results.data["meta"]
    meta["option"] = option
    try:
        size = parse_size(args.sizes[0])
        batch = max(args.batches)
        jobs = make_jobs([size], max(batch, args.min_per_size), args.strength, args.steps)
        plain = load_engine(args.model_dir, args, max_batch=batch)
        plain_pipes = variant_pipes(plain, None)
        reference = reference_pictures(plain_pipes[(False, False)], jobs, plain._generator_device)
        options = dict(CHILD_OPTIONS[option])
        started = time.perf_counter()
        made = load_engine(args.model_dir, args, max_batch=batch, compile_sizes=[args.sizes[0]],
                           compile_backend=args.compile_backend, tiny_vae=str(args.tiny_vae_dir), **options)  # fmt: skip
        meta["load_and_warm_up_s"] = round(time.perf_counter() - started, 1)
        say(f"[{option}] loaded and warmed up in {meta['load_and_warm_up_s']} s: {made.settings_summary()}")
        results.save()
        variant = Variant(option, f"[engine] {option}" + (' (+ cudnn_benchmark, vae = "tiny")' if option == "all" else ""),
                          prompt_cache=True, device_pictures=True, pinned_device=True,
                          cudnn_benchmark=options.get("cudnn_benchmark", False), tiny_vae=options.get("vae") == "tiny")  # fmt: skip
        cells = []
        for n in args.batches:
            chosen = jobs_for_batch(jobs, [size], n, args.min_per_size)
            eager = variant_engine(plain, plain_pipes, EXACT, n)
            cells.append(Cell(EXACT, n, chosen, lambda e=eager, j=chosen: run_engine(e, j), eager.pipe, eager))

            def compiled_run(n: int = n, j: list[Any] = chosen) -> list[Any]:
                made.max_batch = n
                return run_engine(made, j)

            cells.append(Cell(variant, n, chosen, compiled_run, made.pipe, made))
        interleaved(results, cells, args, math.inf, reference, option)
        meta["routed"] = [{"shapes": len(r.shapes), "compiled_calls": r.compiled_calls, "eager_calls": r.eager_calls}
                          for r in made.compiled]  # fmt: skip
        results.save()
    except Exception as exc:
        results.error(f"[engine] {option}", exc)


def speed_baseline(rows: list[dict[str, Any]], row: dict[str, Any]) -> float | None:
    """The pictures/s `row` is compared with: in the main run the baseline engine at the same
    batch; in a child, the exact eager engine at the same batch in that child."""
    against = "baseline" if row["source"] == "main" else "exact"
    for other in rows:
        if other["source"] == row["source"] and other["variant"] == against and other["batch"] == row["batch"]:
            return other["pictures_per_s"]["median"]
    return None


def summary(results: Results) -> None:
    rows = results.data["rows"]
    meta = results.data["meta"]
    say()
    say("=== results")
    print(f"{meta.get('gpu') or meta.get('cpu')} | torch {meta['torch']} | diffusers {meta['diffusers']} | {meta['date']}")
    print(f"{meta['model']}, sizes {', '.join(meta['sizes'])}, strength {meta['strength']}, {meta['steps']} steps, {meta['dtype']}, "
          f"attention {meta.get('attention', '?')}, load {meta.get('load_s', '?')} s")  # fmt: skip
    print()
    print("| variant | batch | pictures | ms per picture median (min–max) | pictures/s | speed vs baseline | ms per call "
          "| per call: text / pre / encode / UNet / decode / post / rest ms | max abs Δ, min PSNR vs naive | peak GPU memory |")
    print("|---|--:|--:|---|--:|--:|--:|---|---|---|")
    for r in rows:
        if r["variant"] == "worker":
            continue
        base = speed_baseline(rows, r)
        speed = f"{r['pictures_per_s']['median'] / base:.2f}x" if base else "–"
        ms = r["ms_per_picture"]
        st = r.get("stages_ms_per_call") or {}
        stages = " / ".join(f"{st[k]:.1f}" for k in (*STAGES, "rest")) if st else "–"
        vs = r.get("vs_naive")
        fid = vs if isinstance(vs, str) else f"{vs['max_abs_delta']}, {vs['min_psnr_db']} dB" if vs else "–"
        if r.get("random_weights_vae") and isinstance(vs, dict):
            fid += " (random tiny VAE)"
        where = "" if r["source"] == "main" else f" [{r['source']} child, {'/'.join(r['sizes'])}]"
        print(f"| {r['label']}{where} | {r['batch']} | {r['pictures']} | {ms['median']:.1f} ({ms['min']:.1f}–{ms['max']:.1f}) "
              f"| {_rate(r['pictures_per_s']['median'])} | {speed} | {r['ms_per_call']:.1f} | {stages} | {fid} | {_gib(r['peak_gib'])} |")  # fmt: skip
    for r in rows:
        if r["variant"] == "worker":
            print(f"\npipelined worker (real bot/worker.py + RestyleService + SQLite store, exact engine, batch {r['batch']}): "
                  f"{r['delivered']} of {r['jobs']} delivered in {r['span_s']} s = {r['pictures_per_s']} pictures/s; engine busy "
                  f"{r['engine_busy_fraction']:.0%} of the time (engine alone: {r['engine_alone_pictures_per_s']} pictures/s); "
                  f"batches {r['batches']}, sizes {r['sizes']}")  # fmt: skip
    for option in ("cuda_graphs", "compile", "all"):
        if isinstance(meta.get(option), dict):
            print(f"[engine] {option}: load + warm-up {meta[option].get('load_and_warm_up_s', '?')} s; routed {meta[option].get('routed')}")
    for item in results.data["skipped"]:
        print(f"skipped: {item['what']}: {item['why']}")
    for item in results.data["errors"]:
        print(f"error: {item['phase']}: {item['error'][:300]}")
    results.data["meta"]["total_s"] = round(elapsed_s(), 1)
    print(f"total {elapsed_s():.0f} s; phases: {results.data['phases_s']}")
    results.save()
    if results.path:
        print(f"JSON: {results.path}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or 'CPU'}, {os.cpu_count()} cores"


def use_wheels(folder: Path) -> None:
    """Install the wheels in `folder` into folder/site (once) and put it first on the path, for
    this process and its children."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"--wheels {folder}: there are no .whl files there; bench/README.md says how to download them.")
    site = folder / "site"
    stamp = site / ".installed-from"
    names = "\n".join(w.name for w in wheels)
    if not stamp.exists() or stamp.read_text() != names:
        say(f"installing {len(wheels)} wheels into {site}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--upgrade",
                        "--target", str(site), *map(str, wheels)], check=True)  # fmt: skip
        stamp.write_text(names)
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", help="cuda (default; cuda:N) or cpu (the default with --tiny)")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"],
                        help="default float16 on CUDA (the bot's [engine] dtype = auto), float32 on the CPU")  # fmt: skip
    parser.add_argument("--tiny", action="store_true", help="the tiny model at small sizes: a smoke run for the CPU")
    parser.add_argument("--sizes", nargs="+", help=f"picture sizes WxH (default {' '.join(TIER_SIZES)}; with --tiny {' '.join(TINY_SIZES)})")
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=4, help="default 4 (the bot's default; with strength 0.5: 2 UNet calls)")
    parser.add_argument("--batches", type=int, nargs="+", help="default 1 8 (1 2 with --tiny)")
    parser.add_argument("--min-per-size", type=int, default=2, help="pictures of each size at least, in a batch-1 row (default 2)")
    parser.add_argument("--repeats", type=int, help="interleaved rounds (default 3; 2 with --tiny)")
    parser.add_argument("--compile", nargs="*", choices=sorted(CHILD_OPTIONS),
                        help="the [engine] options to run in child processes (default on CUDA: cuda_graphs; none on the "
                             "CPU; give the flag alone for none): compile, cuda_graphs, all")  # fmt: skip
    parser.add_argument("--budget-s", type=float, default=360.0, help="the whole run's budget in seconds (default 360)")
    parser.add_argument("--worker-jobs", type=int, help="jobs through the pipelined worker (default 16 batches; 8 with --tiny)")
    parser.add_argument("--worker-max-side", type=int, help="the free tier's max_side in the worker row (default 512; 64 with --tiny)")
    parser.add_argument("--out", type=Path, help="JSON results (default $OUT/gpu_results.json when OUT is set)")
    parser.add_argument("--model-dir", type=Path, help="reuse a model folder written by an earlier run")
    parser.add_argument("--wheels", type=Path, help="a folder of wheels to install first (diffusers and what it needs)")
    parser.add_argument("--compile-backend", default="inductor", help=argparse.SUPPRESS)  # tests: "eager"
    parser.add_argument("--phase", choices=["all", "child"], default="all", help=argparse.SUPPRESS)
    parser.add_argument("--child-piece", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-option", choices=sorted(CHILD_OPTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--tiny-vae-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.device = args.device or ("cpu" if args.tiny else "cuda")
    if args.dtype is None:
        args.dtype = "float32" if args.device == "cpu" else "float16"
    args.sizes = args.sizes or list(TINY_SIZES if args.tiny else TIER_SIZES)
    args.batches = sorted(set(args.batches or ([1, 2] if args.tiny else [1, 8])))
    args.repeats = args.repeats or (2 if args.tiny else 3)
    if args.compile is None:
        args.compile = ["cuda_graphs"] if args.device.startswith("cuda") else []
    args.worker_max_side = args.worker_max_side or (64 if args.tiny else 512)
    if args.out is None and os.environ.get("OUT"):
        args.out = Path(os.environ["OUT"]) / "gpu_results.json"
    return args


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")  # engine errors, with tracebacks
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the hub
    args = parse_args(argv)
    if args.wheels is not None:
        use_wheels(args.wheels)
    for name in ("torch", "transformers", "diffusers"):
        if not _importable(name):
            print(MISSING_PACKAGE.format(name=name, python=sys.executable), file=sys.stderr)
            return 2
    if args.device == "cpu":
        import torch

        torch.set_num_threads(1)  # small CPU runs: OpenMP spinning on shared cores only adds noise
    if args.phase == "child":
        child_run(args)
    else:
        main_run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
