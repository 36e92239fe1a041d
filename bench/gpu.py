"""GPU benchmark: SD-Turbo's real architecture (random weights, built from its configs: nothing
is downloaded), square pictures (512 px), the bot's production settings: float16, steps 4,
strength 0.5 (2 UNet calls), guidance 0.

Rows, each timed over --pictures pictures, --repeats times (median, min, max):
- naive: one plain diffusers pipeline call per picture (what a simple bot does);
- the engine as loaded at each batch in --batches; its batch 1 is the baseline;
- + cudnn_benchmark (CUDA), + vae = "tiny" (a random-weight AutoencoderTiny: its speed is
  real, its pictures are not);
- with --compile compile cuda_graphs: the engine loaded with [engine] compile / cuda_graphs,
  each in a child process stopped at --budget-s, so a slow compile never costs the rows above.
Every engine row also has its time per pipeline call in each stage the device runs (text
encoder, VAE encode, UNet, VAE decode; CUDA events on a GPU) and the rest (the host's share),
and the largest pixel difference and lowest PSNR of its pictures against the baseline's (the
same jobs and seeds). Results print as they come (flushed) and go to $OUT/gpu_results.json
when OUT is set (or --out) after every row.

    python bench/gpu.py --compile compile cuda_graphs          # a GPU box (~6 minutes budgeted)
    PYTHONPATH=. .venv/bin/python bench/gpu.py --device cpu --tiny   # a smoke run on the CPU

Not yet (issue 20, item 4): variants interleaved repeat by repeat (they run one after another),
mixed sizes, and a last row through the pipelined worker.
Imports only engine/* and third-party packages (torch, diffusers, transformers, Pillow).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The compile child shares the parent's clock, so its log lines read on one time line.
STARTED = time.perf_counter() - (time.time() - float(os.environ.get("RESTYLE_BENCH_T0", time.time())))
PROMPTS = ("oil painting", "a watercolour of a harbour", "pencil sketch", "neon cyberpunk city at night")


def say(text: str = "") -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f} s] {text}" if text else "", flush=True)


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
# The tiny stand-ins for --tiny (the CPU smoke run): same kinds of blocks, 8x VAE.
UNET_TINY = dict(
    sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=32, attention_head_dim=(4, 8), use_linear_projection=True,
)  # fmt: skip
VAE_TINY = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 8, 16, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=64,
    scaling_factor=0.18215,
)  # fmt: skip
TEXT_TINY = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                 max_position_embeddings=77, vocab_size=1000, hidden_act="gelu", layer_norm_eps=1e-5)  # fmt: skip
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
    """Random-weight SD-Turbo (or the tiny stand-in) saved with save_pretrained to `folder`."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from engine.testmodel import BOS, EOS, _tokenizer_files, _vocab

    vocab = _vocab()  # byte-level CLIP BPE, no merges: tokenization quality does not matter here
    tok_dir = folder.parent / (folder.name + "-tokenizer")
    _tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))

    def make(build_on: str) -> tuple[Any, Any, Any]:
        torch.manual_seed(0)
        with torch.device(build_on):  # random init on the GPU takes seconds, not a minute
            unet = UNet2DConditionModel(**(UNET_TINY if tiny else UNET_SD21))
            vae = AutoencoderKL(**(VAE_TINY if tiny else VAE_SD))
            text = CLIPTextModel(CLIPTextConfig(**(TEXT_TINY if tiny else TEXT_OPENCLIP_H),
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


# Measuring ---------------------------------------------------------------------------------------


def pictures(n: int, size: int) -> list[Any]:
    from PIL import Image

    ramp = Image.linear_gradient("L").resize((size, size))
    ring = Image.radial_gradient("L").resize((size, size))
    return [Image.merge("RGB", (ramp.rotate(37 * i), ring, ramp.rotate(-23 * i))) for i in range(n)]


def make_jobs(n: int, size: int, strength: float, steps: int) -> list[Any]:
    from engine.api import EngineJob

    images = pictures(n, size)
    return [EngineJob(f"job{i}", images[i], PROMPTS[i % len(PROMPTS)], strength, seed=1000 + i, steps=steps) for i in range(n)]


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


def measure(name: str, run: Callable[[], None], n_pictures: int, per_call: int, repeats: int, device: str) -> dict[str, Any]:
    """`run` does n_pictures; returns ms per picture, pictures/s, ms per pipeline call, peak memory."""
    peak_reset(device)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    ms = [s * 1000 / n_pictures for s in seconds]
    row = {
        "variant": name,
        "batch": per_call,
        "ms_per_picture": {"median": statistics.median(ms), "min": min(ms), "max": max(ms)},
        "pictures_per_s": {"median": statistics.median(n_pictures / s for s in seconds), "min": n_pictures / max(seconds),
                           "max": n_pictures / min(seconds)},  # fmt: skip
        "ms_per_call": statistics.median(ms) * per_call,
        "peak_gib": peak_gib(device),
        "repeats": repeats,
        "pictures": n_pictures,
    }
    say(f"{name}: {row['ms_per_picture']['median']:.1f} ms/picture (min {row['ms_per_picture']['min']:.1f}, "
        f"max {row['ms_per_picture']['max']:.1f}), {_rate(row['pictures_per_s']['median'])} pictures/s, "
        f"{row['ms_per_call']:.1f} ms per call, peak {_gib(row['peak_gib'])}")  # fmt: skip
    return row


def _rate(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def _gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} GiB"


class Results:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, Any] = {"meta": {}, "rows": [], "errors": [], "phases_s": {}}

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
        self.data["rows"].append({k: v for k, v in row.items() if k != "outputs"})
        self.save()

    def error(self, phase: str, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        say(f"PHASE FAILED: {phase}: {text}")
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


def load_engine(model_dir: Path, args: argparse.Namespace, **options: Any) -> Any:
    """The engine through its own loading path, production settings plus `options` ([engine]
    keys: vae, tiny_vae, compile, cuda_graphs, compile_sizes, max_batch)."""
    from engine.pipeline import DiffusersEngine

    settings = dict(device=args.device, dtype=args.dtype, steps=args.steps, turbo=True, max_batch=max(args.batches),
                    local_files_only=True)  # fmt: skip
    settings.update(options)
    return DiffusersEngine.load(str(model_dir), **settings)


def build_tiny_vae(folder: Path, args: argparse.Namespace) -> Path:
    """An AutoencoderTiny with diffusers' default config (madebyollin/taesd's architecture),
    random weights: its speed is the real one, its pictures are noise (so vs_baseline says
    nothing for it)."""
    import torch
    from diffusers import AutoencoderTiny

    if args.tiny:
        from engine.testmodel import make_test_tiny_vae

        return make_test_tiny_vae(folder)
    torch.manual_seed(0)
    AutoencoderTiny().save_pretrained(str(folder))
    return folder


def channels_last(engine: Any) -> None:
    """What the engine could offer as an option: channels_last on the UNet and VAE."""
    import torch

    engine.pipe.unet.to(memory_format=torch.channels_last)
    engine.pipe.vae.to(memory_format=torch.channels_last)


def run_engine(engine: Any, jobs: list[Any]) -> list[Any]:
    outputs = engine.run(jobs)
    failed = [o.error for o in outputs if o.picture is None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(outputs)} jobs failed: {failed[0]}")
    return outputs


# The stages the device runs, timed by forward hooks: CUDA events on a GPU (no sync inside the
# call, so the timing does not change what it times), the wall clock on the CPU. "rest" is the
# call's wall time minus the stages: the host's share (diffusers' Python, the scheduler, pictures
# to and from the device, launches the GPU waits for).
STAGES = (("text", "text_encoder"), ("encode", "vae.encoder"), ("unet", "unet"), ("decode", "vae.decoder"))


def _module(pipe: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        pipe = getattr(pipe, name, None)
    return pipe


def stage_times(engine: Any, jobs: list[Any], device: str) -> dict[str, float]:
    """One pass over `jobs` with hooks on: ms per pipeline call in each stage, and the rest."""
    import torch

    cuda = device.startswith("cuda")
    marks: dict[str, list[Any]] = {stage: [] for stage, _ in STAGES}
    handles = []

    def now() -> Any:
        if cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    for stage, dotted in STAGES:
        module = _module(engine.pipe, dotted)
        if module is None:
            continue
        open_: list[Any] = []
        handles.append(module.register_forward_pre_hook(lambda m, a, _open=open_: _open.append(now())))
        handles.append(module.register_forward_hook(
            lambda m, a, out, _open=open_, _stage=stage: marks[_stage].append((_open.pop(), now()))))  # fmt: skip
    calls = -(-len(jobs) // engine.max_batch)
    try:
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        run_engine(engine, jobs)
        if cuda:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - started) * 1000
    finally:
        for handle in handles:
            handle.remove()

    def elapsed(start: Any, end: Any) -> float:
        return start.elapsed_time(end) if cuda else (end - start) * 1000

    per_call = {stage: sum(elapsed(a, b) for a, b in pairs) / calls for stage, pairs in marks.items()}
    per_call["rest"] = wall_ms / calls - sum(per_call.values())
    return {k: round(v, 2) for k, v in per_call.items()}


def fidelity(outputs: list[Any], reference: list[Any] | None) -> dict[str, float] | None:
    """Against the baseline's pictures of the same jobs (same seeds): the largest difference of
    any channel of any pixel (levels of 255) and the lowest PSNR (dB; inf: identical)."""
    import numpy as np

    if not reference:
        return None
    worst_delta, worst_psnr = 0, math.inf
    for out, ref in zip(outputs, reference):
        a = np.asarray(out.picture, dtype=np.float64)
        b = np.asarray(ref.picture, dtype=np.float64)
        if a.shape != b.shape:
            return {"max_abs_delta": math.nan, "min_psnr_db": math.nan}
        worst_delta = max(worst_delta, int(np.abs(a - b).max()))
        mse = float(np.mean((a - b) ** 2))
        worst_psnr = min(worst_psnr, math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse))
    return {"max_abs_delta": worst_delta, "min_psnr_db": round(worst_psnr, 2) if math.isfinite(worst_psnr) else "inf"}


def engine_batch(
    results: Results, engine: Any, jobs: list[Any], batch: int, label: str, args: argparse.Namespace,
    reference: list[Any] | None = None,
) -> dict | None:
    engine.max_batch = batch
    started = time.perf_counter()
    run_engine(engine, jobs[:batch])  # warm-up at this shape
    first = time.perf_counter() - started
    held: list[list[Any]] = []
    row = measure(f"{label}, batch {batch}", lambda: held.append(run_engine(engine, jobs)), len(jobs), batch, args.repeats, args.device)
    row["first_call_s"] = first
    row["stages_ms_per_call"] = stage_times(engine, jobs, args.device)
    row["vs_baseline"] = fidelity(held[-1], reference)
    row["outputs"] = held[-1]  # dropped before the JSON is written (Results.row)
    say(f"  stages, ms per call: {row['stages_ms_per_call']}; vs baseline: {row['vs_baseline']}")
    results.row(row)
    return row


def attention_processors(pipe: Any) -> str:
    try:
        names = sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()})
        return ", ".join(names)
    except Exception as exc:  # older/newer diffusers
        return f"unknown ({exc})"


# The phases -------------------------------------------------------------------------------------


def main_run(args: argparse.Namespace) -> None:
    import torch

    results = Results(args.out)
    meta = results.data["meta"]
    import diffusers

    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers_version = transformers.__version__
    except Exception:
        transformers_version = "?"
    diffusers.utils.logging.set_verbosity_error()
    meta.update({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "diffusers": diffusers.__version__, "transformers": transformers_version,
        "device": args.device, "dtype": args.dtype, "model": "tiny stand-in" if args.tiny else "SD-Turbo architecture (SD 2.1 base), random weights",
        "size": args.size, "strength": args.strength, "steps": args.steps, "pictures": args.pictures,
        "batches": args.batches, "repeats": args.repeats, "compile": args.compile,
    })  # fmt: skip
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda, but torch sees no CUDA GPU here (is the CUDA build of torch installed?)")
        props = torch.cuda.get_device_properties(0)
        meta.update({"gpu": torch.cuda.get_device_name(0), "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                     "cudnn": torch.backends.cudnn.version()})  # fmt: skip
    else:
        meta["cpu"] = _cpu_name()
    say(f"torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers {diffusers.__version__}, transformers {transformers_version}, "
        f"Python {platform.python_version()}")  # fmt: skip
    say(f"device: {meta.get('gpu') or meta.get('cpu')} ({args.device}), dtype {args.dtype}")
    say(f"{meta['model']}: {args.size}x{args.size}, strength {args.strength}, {args.steps} steps, "
        f"{args.pictures} pictures per measurement, {args.repeats} repeats, batches {args.batches}")  # fmt: skip
    results.save()

    tmp = tempfile.TemporaryDirectory(prefix="restyle-gpu-bench-")
    model_dir = args.model_dir or Path(tmp.name) / "model"
    if args.model_dir is None:
        with phase(results, "build model"):
            dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[args.dtype]
            counts = build_model(model_dir, tiny=args.tiny, device=args.device, dtype=dtype)
            meta["parameters"] = counts
            size = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file())
            say(f"built and saved: parameters {', '.join(f'{k} {v / 1e6:.1f} M' for k, v in counts.items())}; "
                f"{size / 2**30:.2f} GiB on disk")  # fmt: skip
    jobs = make_jobs(args.pictures, args.size, args.strength, args.steps)

    engine = None
    with phase(results, "load engine"):
        started = time.perf_counter()
        engine = load_engine(model_dir, args)
        meta["load_s"] = round(time.perf_counter() - started, 1)
        meta["attention"] = attention_processors(engine.pipe)
        meta["engine"] = engine.settings_summary()
        say(f"DiffusersEngine.load: {meta['load_s']} s; {meta['engine']}; attention: {meta['attention']}")

    if engine is not None:
        with phase(results, "naive"):
            pipe = engine.pipe  # as loaded: from_pretrained(dtype).to(device), nothing else

            def naive() -> None:
                for job in jobs:
                    pipe(
                        prompt=job.prompt, image=job.picture, strength=job.strength, num_inference_steps=job.steps,
                        guidance_scale=0.0, generator=torch.Generator(engine._generator_device).manual_seed(job.seed),
                    )  # fmt: skip

            for job in jobs[:2]:  # warm-up
                pipe(prompt=job.prompt, image=job.picture, strength=job.strength, num_inference_steps=job.steps, guidance_scale=0.0)
            results.row(measure("naive: 1 pipeline call per picture", naive, len(jobs), 1, args.repeats, args.device))
            del pipe, naive

        reference: list[Any] | None = None  # the baseline: the engine as loaded, batch 1
        for batch in args.batches:
            with phase(results, f"engine as loaded, batch {batch}"):
                row = engine_batch(results, engine, jobs, batch, "engine (as loaded)", args, reference)
                if batch == 1 and row is not None:
                    reference = row["outputs"]
                    results.data["rows"][-1]["vs_baseline"] = "baseline"

        if args.device.startswith("cuda"):
            with phase(results, "cudnn_benchmark"):
                torch.backends.cudnn.benchmark = True
                for batch in sorted({1, max(args.batches)}):
                    engine_batch(results, engine, jobs, batch, "engine + cudnn_benchmark", args, reference)
                torch.backends.cudnn.benchmark = False

    del engine
    gc.collect()
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()

    with phase(results, 'vae = "tiny" (random-weight AutoencoderTiny, TAESD\'s architecture)'):
        taesd = build_tiny_vae(model_dir.parent / "taesd", args)
        tiny_engine = load_engine(model_dir, args, vae="tiny", tiny_vae=str(taesd))
        for batch in sorted({1, max(args.batches)}):
            engine_batch(results, tiny_engine, jobs, batch, 'engine + vae = "tiny"', args, reference)
        del tiny_engine
        gc.collect()

    for option in args.compile or ():
        with phase(results, f"[engine] {option} (child process)"):
            run_compile_child(results, model_dir, args, option)

    summary(results, args)
    tmp.cleanup()


def best_eager_batch(results: Results) -> int | None:
    rows = [r for r in results.data["rows"] if r["variant"].startswith("engine")]
    if not rows:
        return None
    return max(rows, key=lambda r: r["pictures_per_s"]["median"])["batch"]


def run_compile_child(results: Results, model_dir: Path, args: argparse.Namespace, option: str) -> None:
    """[engine] compile or cuda_graphs in a child process, stopped when the run reaches the
    budget, so a slow compile never costs the figures measured before it."""
    left = args.budget_s - (time.perf_counter() - STARTED) - 15
    if left < 60:
        say(f"{option} skipped: only {left:.0f} s of the {args.budget_s:.0f} s budget left")
        results.data["errors"].append({"phase": option, "error": f"skipped: {left:.0f} s left"})
        return
    best = best_eager_batch(results) or max(args.batches)
    piece = Path(tempfile.mkdtemp(prefix="restyle-gpu-compile-")) / "rows.json"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--phase", "compile", "--model-dir", str(model_dir),
        "--compile-option", option, "--compile-piece", str(piece), "--device", args.device, "--dtype", args.dtype,
        "--size", str(args.size), "--strength", str(args.strength), "--steps", str(args.steps),
        "--pictures", str(args.pictures), "--repeats", str(args.repeats),
        "--batches", *map(str, args.batches), "--compile-batches", str(best),
    ] + (["--tiny"] if args.tiny else [])  # fmt: skip
    say(f"[engine] {option} = true in a child process (warm-up at batch 1 and {best}), at most {left:.0f} s")
    t0 = str(time.time() - (time.perf_counter() - STARTED))
    # Its own process group, so compile workers it starts are stopped with it.
    child = subprocess.Popen(command, env={**os.environ, "RESTYLE_BENCH_T0": t0}, start_new_session=True)
    try:
        child.wait(timeout=left)
    except subprocess.TimeoutExpired:
        say(f"{option} stopped after {left:.0f} s (the budget); whatever it measured is kept")
        results.data["errors"].append({"phase": option, "error": f"stopped at the budget after {left:.0f} s"})
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except OSError:
            child.kill()
        child.wait()
    if piece.exists():
        got = json.loads(piece.read_text())
        results.data["rows"].extend(got.get("rows", []))
        results.data["errors"].extend(got.get("errors", []))
        results.data["meta"][option] = got.get("compile")
        results.save()


def compile_child(args: argparse.Namespace) -> None:
    """Runs in its own process (the parent can stop it at the budget): the engine loaded with
    [engine] compile or cuda_graphs, which compiles and warms up at load, then measured. Its
    fidelity is against a plain engine's batch-1 pictures of the same jobs, made here first."""
    option = args.compile_option
    out: dict[str, Any] = {"rows": [], "errors": [], "compile": {"option": option}}

    def save() -> None:
        args.compile_piece.write_text(json.dumps(out, indent=2, default=str))

    try:
        jobs = make_jobs(args.pictures, args.size, args.strength, args.steps)
        plain = load_engine(args.model_dir, args, max_batch=1)
        reference = run_engine(plain, jobs)
        del plain
        gc.collect()
        batch = args.compile_batches[0]
        started = time.perf_counter()
        engine = load_engine(args.model_dir, args, max_batch=batch, compile_sizes=[f"{args.size}x{args.size}"], **{option: True})
        out["compile"]["load_and_warm_up_s"] = round(time.perf_counter() - started, 1)
        say(f"[{option}] loaded and warmed up in {out['compile']['load_and_warm_up_s']} s: {engine.settings_summary()}")
        save()
        for n in sorted({1, batch}):
            try:
                engine.max_batch = n
                held: list[list[Any]] = []
                row = measure(f"engine + [engine] {option}, batch {n}", lambda: held.append(run_engine(engine, jobs)),
                              len(jobs), n, args.repeats, args.device)  # fmt: skip
                row["first_call_s"] = out["compile"]["load_and_warm_up_s"]
                row["stages_ms_per_call"] = stage_times(engine, jobs, args.device)
                row["vs_baseline"] = fidelity(held[-1], reference)
                say(f"  stages, ms per call: {row['stages_ms_per_call']}; vs baseline: {row['vs_baseline']}")
                row["routed"] = [{"compiled_calls": r.compiled_calls, "eager_calls": r.eager_calls} for r in engine.compiled]
                out["rows"].append(row)
                save()
            except Exception as exc:
                say(f"[{option}] batch {n} FAILED: {type(exc).__name__}: {exc}")
                traceback.print_exc()
                out["errors"].append({"phase": f"{option} batch {n}", "error": f"{type(exc).__name__}: {exc}"[:2000]})
                save()
    except Exception as exc:
        say(f"[{option}] FAILED: {type(exc).__name__}: {exc}")
        traceback.print_exc()
        out["errors"].append({"phase": option, "error": f"{type(exc).__name__}: {exc}"[:2000]})
        save()


def summary(results: Results, args: argparse.Namespace) -> None:
    rows = results.data["rows"]
    meta = results.data["meta"]
    say()
    say("=== results")
    print(f"{meta.get('gpu') or meta.get('cpu')} | torch {meta['torch']} | diffusers {meta['diffusers']} | {meta['date']}")
    print(f"{meta['model']}, {args.size}x{args.size}, strength {args.strength}, {args.steps} steps, {args.dtype}, "
          f"attention {meta.get('attention', '?')}, load {meta.get('load_s', '?')} s")  # fmt: skip
    print()
    print("| variant | ms per picture median (min–max) | pictures/s median | ms per call | per call: text / encode / UNet / decode / rest ms "
          "| max abs Δ, min PSNR vs baseline | first call s | peak GPU memory |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ms = r["ms_per_picture"]
        first = f"{r['first_call_s']:.1f}" if "first_call_s" in r else "–"
        st = r.get("stages_ms_per_call") or {}
        stages = " / ".join(f"{st[k]:.1f}" for k in ("text", "encode", "unet", "decode", "rest")) if st else "–"
        vs = r.get("vs_baseline")
        fid = vs if isinstance(vs, str) else f"{vs['max_abs_delta']}, {vs['min_psnr_db']} dB" if vs else "–"
        print(f"| {r['variant']} | {ms['median']:.1f} ({ms['min']:.1f}–{ms['max']:.1f}) | {_rate(r['pictures_per_s']['median'])} "
              f"| {r['ms_per_call']:.1f} | {stages} | {fid} | {first} | {_gib(r['peak_gib'])} |")  # fmt: skip
    naive = next((r for r in rows if r["variant"].startswith("naive")), None)
    b1 = [r for r in rows if r["variant"].startswith("engine") and r["batch"] == 1]
    best = max((r for r in rows if r["variant"].startswith("engine")), key=lambda r: r["pictures_per_s"]["median"], default=None)
    print()
    if naive:
        print(f"naive, 1 call per picture: {naive['ms_per_picture']['median']:.1f} ms per picture "
              f"({_rate(naive['pictures_per_s']['median'])} pictures/s)")  # fmt: skip
    for r in b1:
        print(f"{r['variant']}: {r['ms_per_picture']['median']:.1f} ms per picture")
    if best:
        gain = f", {best['pictures_per_s']['median'] / naive['pictures_per_s']['median']:.2f}x naive" if naive else ""
        print(f"best: {best['variant']}: {_rate(best['pictures_per_s']['median'])} pictures/s{gain}")
    peaks = [r["peak_gib"] for r in rows if r.get("peak_gib") is not None]
    if peaks:
        print(f"peak GPU memory (torch.cuda.max_memory_allocated), highest variant: {max(peaks):.2f} GiB")
    if results.data["errors"]:
        print("errors: " + "; ".join(f"{e['phase']}: {e['error'][:200]}" for e in results.data["errors"]))
    print(f"total {time.perf_counter() - STARTED:.0f} s; phases: {results.data['phases_s']}")
    results.data["meta"]["total_s"] = round(time.perf_counter() - STARTED, 1)
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"],
                        help="default float16 on CUDA (the bot's [engine] dtype = auto), float32 on the CPU")  # fmt: skip
    parser.add_argument("--tiny", action="store_true", help="tiny configs, 64x64, 8 pictures: a smoke run for the CPU")
    parser.add_argument("--size", type=int, help="square picture side (default 512; 64 with --tiny)")
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=4, help="default 4 (the bot's default; with strength 0.5: 2 UNet calls)")
    parser.add_argument("--pictures", type=int, help="pictures per measurement (default 32; 8 with --tiny)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, help="default 3; 2 with --tiny")
    parser.add_argument("--compile", nargs="+", choices=["compile", "cuda_graphs"], default=None,
                        help="also time the engine with [engine] compile and/or cuda_graphs = true, each in a "
                             "child process stopped at the budget")  # fmt: skip
    parser.add_argument("--budget-s", type=float, default=450.0, help="stop the compile phase when the run reaches this (default 450)")
    parser.add_argument("--out", type=Path, help="JSON results (default $OUT/gpu_results.json when OUT is set)")
    parser.add_argument("--model-dir", type=Path, help="reuse a model folder written by an earlier run")
    parser.add_argument("--phase", choices=["all", "compile"], default="all", help=argparse.SUPPRESS)
    parser.add_argument("--compile-piece", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--compile-option", choices=["compile", "cuda_graphs"], help=argparse.SUPPRESS)
    parser.add_argument("--compile-batches", type=int, nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dtype is None:
        args.dtype = "float32" if args.device == "cpu" else "float16"
    args.size = args.size or (64 if args.tiny else 512)
    args.repeats = args.repeats or (2 if args.tiny else 3)
    pictures = args.pictures or (8 if args.tiny else 32)
    step = math.lcm(*args.batches)
    args.pictures = -(-pictures // step) * step  # a multiple of every batch: no odd-sized last call
    if args.size % 8:
        parser.error("--size must be a multiple of 8")
    if args.out is None and os.environ.get("OUT"):
        args.out = Path(os.environ["OUT"]) / "gpu_results.json"
    return args


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")  # engine errors, with tracebacks
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the hub
    args = parse_args()
    if args.device == "cpu":
        import torch

        torch.set_num_threads(1)  # small CPU runs: OpenMP spinning on shared cores only adds noise
    if args.phase == "compile":
        compile_child(args)
    else:
        main_run(args)


if __name__ == "__main__":
    main()
