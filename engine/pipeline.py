"""The real engine: one diffusers image-to-image pipeline, loaded once, fed in batches.

Imports torch and diffusers; the bot imports this module only where it builds the engine. Finding
the device, the dtype and the model, and explaining why a load failed, is engine/loading.py's.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# transformers warns at import time about torchvision-less image processors that an
# image-to-image pipeline never uses; an admin reading the start-up log needs none of it.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402  (after TRANSFORMERS_VERBOSITY is set)
import torch  # noqa: E402  (after TRANSFORMERS_VERBOSITY is set)

from engine.api import (
    EngineJob,
    EngineOutput,
    ModelLoadError,
    ProgressCallback,
    RestyleEngine,
    batch_key,
    random_seed,
    scheduled_steps,
)
from engine.compiled import CUDA_GRAPHS_NEED_CUDA, ShapeRouted, compile_pipeline, parse_size, warm_up
from engine.loading import (
    DEFAULT_MODEL,
    DTYPES,
    _dtype_name,
    _first_line,
    _is_out_of_memory,
    _load_failure,
    _load_tiny_vae,
    _one_line_per_hub_warning,
    find_model,
    hub_reachable,
    looks_turbo,
    resolve_device,
    resolve_dtype,
)
from engine.pictures import PictureError, encode_picture, prepare_picture
from engine.prompt_cache import PromptEmbeddings

log = logging.getLogger("engine")

STOPPED = "This job was stopped before it finished."
FAILED = "The picture engine failed on this job; try again."
BLOCKED = "The model's safety filter blocked this result; try another prompt or picture."
BAD_STRENGTH = "The strength must be more than 0 and at most 1."

DEFAULT_GUIDANCE = 7.5  # classic Stable Diffusion; turbo-class models use 0 (no CFG)
# Prompt embeddings kept (each 77 x hidden size in the model's dtype: ~160 KB for SD 2.x in
# float16, so 256 take ~40 MB of device memory); members repeat prompts, styles repeat more.
PROMPT_CACHE_SIZE = 256
SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


# The engine --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Planned:
    """A job with its place in the input and its effective settings."""

    index: int
    job: EngineJob
    steps: int  # scheduled (raised where strength x steps < 1)


class DiffusersEngine:
    """A RestyleEngine on one diffusers image-to-image pipeline that stays loaded.

    `run` is blocking and serialised (one pipeline call at a time); call it off the event loop.
    `interrupt` may be called from any thread."""

    def __init__(
        self,
        pipe: Any,
        *,
        model: str,
        device: str,
        steps: int = 4,
        guidance_scale: float = 0.0,
        max_batch: int = 4,
        turbo: bool = False,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.pipe = pipe
        # Looked up once here, for diffusers' calls and ours (see pin_execution_device).
        self.execution_device = pin_execution_device(pipe)
        self.model = model
        self.device = device
        self.steps = steps
        self.guidance_scale = float(guidance_scale)
        self.max_batch = max_batch
        self.turbo = turbo
        self._base_scheduler = pipe.scheduler  # never run; each call gets a deep copy
        self._call_lock = threading.Lock()
        self._stop = threading.Event()
        self.prompt_cache = PromptEmbeddings(pipe, PROMPT_CACHE_SIZE) if PromptEmbeddings.supports(pipe) else None
        # Pictures go to the device as uint8 and are normalised, VAE-encoded (one call for the
        # batch) and turned back into uint8 there (see _encode_on_device); False: diffusers
        # does it all from PIL images on the CPU, as before.
        self.device_pictures = PromptEmbeddings.supports(pipe)
        # diffusers' ModelMixin.dtype walks the model's modules on every read (0.8 ms for
        # SD-Turbo's VAE on the dev VM): read once, as the device is.
        self.vae_dtype = pipe.vae.dtype if self.device_pictures else None
        # Seeds should mean the same noise on any machine of a kind; Apple's GPU generator is
        # less settled than CPU's, so MPS draws its noise on the CPU.
        self._generator_device = "cpu" if device == "mps" else device
        self.compiled: list[ShapeRouted] = []  # [engine] compile: the UNet's and VAE's routed forwards

    @classmethod
    def load(
        cls,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "auto",
        dtype: str = "auto",
        steps: int = 4,
        guidance_scale: float | None = None,
        max_batch: int = 4,
        turbo: bool | None = None,
        local_files_only: bool = False,
        hub_probe: Callable[[], bool] = hub_reachable,
        vae: str = "full",
        tiny_vae: str = "madebyollin/taesd",
        cudnn_benchmark: bool = False,
        compile: bool = False,
        cuda_graphs: bool = False,
        compile_sizes: Sequence[str] = ("512x512",),
        compile_backend: str = "inductor",
    ) -> DiffusersEngine:
        """Load `model` (a hub id or a local folder) for image-to-image.

        Raises ModelLoadError (one sentence naming the setting to change, cause chained) for any
        model that cannot be had or cannot restyle pictures. `hub_probe` says whether the model
        hub can be reached; it is asked only for a hub id when downloads are allowed."""
        _one_line_per_hub_warning()
        model = str(model).strip()
        if not model:
            raise ModelLoadError(
                f"[engine] model is empty; set it to a hub id such as {DEFAULT_MODEL} or a local folder."
            )
        resolved_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, resolved_device)
        if cuda_graphs and not resolved_device.startswith("cuda"):
            raise ModelLoadError(CUDA_GRAPHS_NEED_CUDA.format(device=resolved_device))
        try:
            warm_sizes = [parse_size(size) for size in compile_sizes] if compile or cuda_graphs else []
        except ValueError as exc:
            raise ModelLoadError(f"[engine] compile_sizes: {exc}; fix [engine] compile_sizes.") from None
        local, local_files_only = find_model(model, local_files_only, hub_probe)
        # Imported after the checks above: diffusers takes seconds to import, and a start that
        # cannot succeed should say so at once.
        from diffusers import AutoPipelineForImage2Image

        started = time.perf_counter()
        try:
            with warnings.catch_warnings():  # newer diffusers call it `dtype`; older know only this
                warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
                warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")  # hub-internal noise
                pipe = AutoPipelineForImage2Image.from_pretrained(
                    str(local) if local else model, torch_dtype=torch_dtype, local_files_only=local_files_only
                )
        except Exception as exc:
            raise _load_failure(model, local, exc, local_files_only) from exc
        if vae == "tiny":
            pipe.vae = _load_tiny_vae(tiny_vae, torch_dtype, local_files_only)
        elif vae != "full":
            raise ModelLoadError(f"[engine] vae '{vae}' is not one of full or tiny; fix [engine] vae.")
        try:
            pipe = pipe.to(resolved_device)
        except Exception as exc:
            raise _load_failure(model, local, exc, local_files_only) from exc
        if cudnn_benchmark and resolved_device.startswith("cuda"):
            # Process-wide: picks the fastest convolution kernels per input shape, timed on
            # first use; batches by size (api.batch_key) keep the set of shapes small.
            torch.backends.cudnn.benchmark = True
        pipe.set_progress_bar_config(disable=True)

        is_turbo = looks_turbo(model, pipe.scheduler.config) if turbo is None else turbo
        if is_turbo and pipe.scheduler.config.get("timestep_spacing") != "trailing":
            # Distilled few-step models are trained on the last timesteps; "leading" spacing
            # with 1-2 steps barely changes the picture.
            pipe.scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config, timestep_spacing="trailing")
        if guidance_scale is None:
            guidance_scale = 0.0 if is_turbo else DEFAULT_GUIDANCE
        engine = cls(
            pipe,
            model=model,
            device=resolved_device,
            steps=steps,
            guidance_scale=guidance_scale,
            max_batch=max_batch,
            turbo=is_turbo,
        )
        if warm_sizes:
            routers = compile_pipeline(
                pipe, cuda_graphs=cuda_graphs, shapes_per_module=2 * len(warm_sizes) + 1, backend=compile_backend
            )
            try:
                warm_up(engine, routers, warm_sizes)
            except Exception as exc:
                raise ModelLoadError(
                    f"[engine] {'cuda_graphs' if cuda_graphs else 'compile'} failed while compiling the model "
                    f"({_first_line(exc)}); set it to false."
                ) from exc
            engine.compiled = routers
        log.info("engine loaded in %.1f s: %s", time.perf_counter() - started, engine.settings_summary())
        return engine

    # Facts --------------------------------------------------------------------------------------

    @property
    def dtype_name(self) -> str:
        dtype = self.pipe.dtype
        return _dtype_name(dtype) if dtype in DTYPES.values() else str(dtype)

    @property
    def uses_cfg(self) -> bool:
        """Classifier-free guidance (doubles the UNet batch, takes negative prompts)."""
        unet_config = getattr(getattr(self.pipe, "unet", None), "config", None)
        guidance_embedded = getattr(unet_config, "time_cond_proj_dim", None) is not None  # LCM-style
        return self.guidance_scale > 1.0 and not guidance_embedded

    def settings_summary(self) -> str:
        return (
            f"model={self.model} device={self.device} dtype={self.dtype_name} steps={self.steps} "
            f"guidance={self.guidance_scale:g} turbo={'yes' if self.turbo else 'no'} max_batch={self.max_batch} "
            f"scheduler={type(self._base_scheduler).__name__}"
            + (f" compiled={len(self.compiled[0].shapes)} shapes" if self.compiled else "")
        )

    # Running ------------------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Stop the run in progress: the current pipeline call ends after its current step, the
        rest of the run is skipped, and all its unfinished jobs come back with STOPPED. An
        interrupt while nothing runs is forgotten when the next run starts."""
        self._stop.set()

    def run(self, jobs: Sequence[EngineJob], on_progress: ProgressCallback | None = None) -> list[EngineOutput]:
        """One output per job, in input order. Jobs are grouped by api.batch_key and each group
        is cut into chunks of max_batch; one pipeline call per chunk. A chunk that fails fails
        only its own jobs."""
        self._stop.clear()  # an interrupt aimed at an earlier run must not stop this one
        outputs: dict[int, EngineOutput] = {}
        groups: dict[str, list[_Planned]] = {}
        for index, job in enumerate(jobs):
            steps = job.steps or self.steps
            try:
                key = batch_key(job.picture.width, job.picture.height, steps, job.strength)
                planned = _Planned(index, job, scheduled_steps(steps, job.strength))
            except ValueError:
                outputs[index] = EngineOutput(job.job_id, job.seed, steps, 0.0, error=BAD_STRENGTH)
                continue
            groups.setdefault(key, []).append(planned)
        for group in groups.values():
            for start in range(0, len(group), self.max_batch):
                chunk = group[start : start + self.max_batch]
                for planned, output in zip(chunk, self._run_chunk(chunk, on_progress), strict=True):
                    outputs[planned.index] = output
        return [outputs[index] for index in range(len(jobs))]

    def _run_chunk(self, chunk: list[_Planned], on_progress: ProgressCallback | None) -> list[EngineOutput]:
        if self._stop.is_set():
            return [_failed(p, 0.0, STOPPED) for p in chunk]
        started = time.perf_counter()
        try:
            result = self._call_pipeline(chunk, on_progress)
        except Exception as exc:
            seconds = time.perf_counter() - started
            if _is_out_of_memory(exc) and len(chunk) > 1:
                log.warning("out of memory on a batch of %d; trying it in halves", len(chunk))
                _free_device_memory()
                half = len(chunk) // 2
                return self._run_chunk(chunk[:half], on_progress) + self._run_chunk(chunk[half:], on_progress)
            if self._stop.is_set():
                return [_failed(p, seconds, STOPPED) for p in chunk]
            log.exception("engine failed on jobs %s", ", ".join(p.job.job_id for p in chunk))
            if _is_out_of_memory(exc):
                _free_device_memory()
            return [_failed(p, seconds, FAILED) for p in chunk]
        seconds = time.perf_counter() - started
        if self._stop.is_set():
            return [_failed(p, seconds, STOPPED) for p in chunk]
        flagged = getattr(result, "nsfw_content_detected", None) or [False] * len(chunk)
        return [
            _failed(p, seconds, BLOCKED)
            if blocked
            else EngineOutput(p.job.job_id, p.job.seed, p.steps, seconds, picture=picture)
            for p, picture, blocked in zip(chunk, result.images, flagged, strict=True)
        ]

    def _call_pipeline(self, chunk: list[_Planned], on_progress: ProgressCallback | None) -> Any:
        """One pipeline call. Strength is the first job's: jobs share a batch key, so the same
        number of denoising steps from the same first timestep (see api.batch_key)."""
        first = chunk[0]
        job_ids = [p.job.job_id for p in chunk]
        generators = [torch.Generator(self._generator_device).manual_seed(p.job.seed) for p in chunk]

        def step_end(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
            if on_progress is not None:
                total = getattr(pipe, "_num_timesteps", None) or 1
                fraction = min(1.0, (step + 1) / total)
                for job_id in job_ids:
                    try:
                        on_progress(job_id, fraction)
                    except Exception:  # a listener's bug must not fail the pictures
                        log.exception("progress callback failed for job %s", job_id)
            if self._stop.is_set():
                pipe._interrupt = True  # diffusers skips the remaining steps (it still decodes)
            return tensors

        kwargs: dict[str, Any] = {
            "strength": first.job.strength,
            "num_inference_steps": first.steps,
            "guidance_scale": self.guidance_scale,
            # One job: one generator, exactly as diffusers is called by hand with a seed.
            "generator": generators[0] if len(chunk) == 1 else generators,
            "output_type": "pt" if self.device_pictures else "pil",
            "callback_on_step_end": step_end,
        }
        with self._call_lock:
            if self.device_pictures:
                kwargs["image"] = self._encode_on_device(chunk, generators)
            else:
                kwargs["image"] = [_rgb(p.job.picture) for p in chunk]
            if self.prompt_cache is not None:
                embeds = [
                    self.prompt_cache.get(p.job.prompt, p.job.negative_prompt or "", self.uses_cfg) for p in chunk
                ]
                kwargs["prompt_embeds"] = torch.cat([positive for positive, _ in embeds])
                if self.uses_cfg:
                    kwargs["negative_prompt_embeds"] = torch.cat([negative for _, negative in embeds])
            else:
                kwargs["prompt"] = [p.job.prompt for p in chunk]
                if self.uses_cfg:
                    kwargs["negative_prompt"] = [p.job.negative_prompt or "" for p in chunk]
            # Schedulers keep per-run state: every call starts from a pristine copy.
            self.pipe.scheduler = copy.deepcopy(self._base_scheduler)
            result = self.pipe(**kwargs)
            if self.device_pictures:
                result.images = _to_pictures(result.images)
            return result

    def _encode_on_device(self, chunk: list[_Planned], generators: list[torch.Generator]) -> torch.Tensor:
        """The batch's scaled VAE latents, which diffusers' img2img takes in place of pictures
        (a 4-channel `image` skips its own encode), so the noise it then draws from each job's
        generator follows the same draws as before.

        The float ops are diffusers' own (x / 255, 2x - 1 in float32, then the model's dtype),
        done on the device from uint8 sent through pinned memory. One VAE call for the batch
        where diffusers, given a generator per picture, encodes one picture at a time; each
        job's latent sample still comes from its own generator. Measured on the CPU in float32:
        a job alone is identical; in a batch of 4 the latents are within 4.2e-7 of the
        one-at-a-time encode (a few float32 ULPs; tested to 1e-5) and the pictures within 1
        level of 255 (tests/test_engine.py). On a GPU in float16, bench/gpu.py reports it."""
        vae = self.pipe.vae
        image = self._device_pixels(chunk)
        with torch.no_grad():
            encoded = vae.encode(image)
        if not hasattr(encoded, "latent_dist"):  # AutoencoderTiny: latents, nothing to sample
            return vae.config.scaling_factor * encoded.latents
        dist = encoded.latent_dist
        samples = []
        for i, generator in enumerate(generators):
            mean, std = dist.mean[i : i + 1], dist.std[i : i + 1]
            noise = randn_like_diffusers(mean, generator)
            samples.append(mean + std * noise)
        return vae.config.scaling_factor * torch.cat(samples)

    def _device_pixels(self, chunk: list[_Planned]) -> torch.Tensor:
        """The batch's pictures on the device in [-1, 1] and the VAE's dtype: uint8 through
        pinned memory, then diffusers' float ops (x / 255, 2x - 1 in float32) there. A method
        of its own so that bench/gpu.py can time it as the "pre" stage."""
        device = self.execution_device
        pixels = torch.from_numpy(np.stack([np.asarray(_rgb(p.job.picture)) for p in chunk]))
        if device.type == "cuda":
            pixels = pixels.pin_memory().to(device, non_blocking=True)
        else:
            pixels = pixels.to(device)
        image = pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return (2.0 * image - 1.0).to(dtype=self.vae_dtype)


def pin_execution_device(pipe: Any) -> torch.device:
    """The device diffusers runs `pipe` on, looked up once: from then on `pipe._execution_device`
    answers it at once, where diffusers walks every module of every component looking for
    offload hooks, on every call (1,235 modules in SD-Turbo: 15 ms a lookup on the dev VM's
    CPU, host time that batch 1 waits for on a GPU). Exact: the device is the same; the engine
    never offloads or moves its pipeline after loading. Done by giving `pipe` a subclass of its
    own class (same name) whose property returns the device; `_engine_pinned_from` names the
    class it came from (bench/gpu.py uses it to time diffusers as it comes)."""
    cls = type(pipe)
    if "_engine_pinned_from" in cls.__dict__:
        return pipe._execution_device
    device = pipe._execution_device
    pinned = type(cls.__name__, (cls,), {
        "_execution_device": property(lambda self: device, doc="The device, looked up once (pin_execution_device)."),
        "_engine_pinned_from": cls,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    })  # fmt: skip
    pipe.__class__ = pinned
    return device


def randn_like_diffusers(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The normal draw DiagonalGaussianDistribution.sample makes for `like` (its mean)."""
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def _to_pictures(images: torch.Tensor) -> list[Any]:
    """diffusers' output_type="pt" (denormalised to 0..1, in the model's dtype) to PIL, with
    the ops of its "pil" path — .float(), x 255, round half to even, uint8 — done on the
    device, so only uint8 crosses back."""
    from PIL import Image

    as_uint8 = (images.float() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(array) for array in as_uint8]


def _rgb(picture: Any) -> Any:
    return picture if picture.mode == "RGB" else picture.convert("RGB")


def _failed(planned: _Planned, seconds: float, error: str) -> EngineOutput:
    return EngineOutput(planned.job.job_id, planned.job.seed, planned.steps, seconds, error=error)


def _free_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# The admin's one-off restyle --------------------------------------------------------------------


def restyle_file(
    engine: RestyleEngine,
    in_path: Path,
    out_path: Path,
    *,
    prompt: str,
    strength: float,
    seed: int | None,
    steps: int | None,
    max_side: int = 512,
) -> EngineOutput:
    """Restyle one picture file into another; the output format follows out_path's suffix
    (.png, .jpg, .jpeg, .webp). Returns the engine's output (with the seed used); writes
    nothing if the job failed. PictureError for an unreadable input or an unknown suffix."""
    in_path, out_path = Path(in_path), Path(out_path)
    fmt = SUFFIX_FORMATS.get(out_path.suffix.lower())
    if fmt is None:
        raise PictureError(f"Can't write '{out_path.name}': name the output .png, .jpg, .jpeg or .webp.")
    picture = prepare_picture(in_path.read_bytes(), max_side=max_side, max_bytes=1_000_000_000)
    job = EngineJob(
        job_id="cli",
        picture=picture,
        prompt=prompt,
        strength=strength,
        seed=random_seed() if seed is None else seed,
        steps=steps,
    )
    (output,) = engine.run([job])
    if output.picture is not None:
        out_path.write_bytes(encode_picture(output.picture, fmt))
    return output
