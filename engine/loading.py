"""Finding and loading the model: the device and dtype it runs on, the folder or hub id it comes
from, and, when any of that fails, one sentence for the operator naming the setting to change.

Imports torch; huggingface_hub and diffusers only inside the functions that need them (diffusers
takes seconds to import, and a start that cannot succeed should say so at once).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

# transformers warns at import time about torchvision-less image processors that an
# image-to-image pipeline never uses; an admin reading the start-up log needs none of it.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402  (after TRANSFORMERS_VERBOSITY is set)

from engine.api import ModelLoadError

log = logging.getLogger("engine")

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
DEFAULT_MODEL = "stabilityai/sd-turbo"


# Device and dtype --------------------------------------------------------------------------------


def describe_device(device: str) -> str:
    """A resolved device in words (for `doctor`): a GPU's name and memory."""
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(int(device.partition(":")[2] or 0))
        return f"{device}: {props.name}, {props.total_memory / 2**30:.0f} GiB"
    return device


def resolve_device(device: str) -> str:
    """'auto' → cuda, then mps, then cpu; a named device is checked. ModelLoadError if unusable."""
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    if name == "cpu":
        return "cpu"
    if name == "mps":
        if not _mps_available():
            raise ModelLoadError(
                "[engine] device is 'mps' but this machine has no usable Apple GPU; set [engine] device to 'auto' or 'cpu'."
            )
        return "mps"
    if name == "cuda" or name.startswith("cuda:"):
        index = name.partition(":")[2]
        if index and not index.isdigit():
            raise ModelLoadError(
                f"[engine] device '{device}' is not a device name; use 'cuda' or 'cuda:N' (N a GPU number)."
            )
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"[engine] device is '{device}' but no CUDA GPU is usable here (is the CUDA build of torch installed?); "
                "set [engine] device to 'auto' or 'cpu'."
            )
        if index and int(index) >= torch.cuda.device_count():
            raise ModelLoadError(
                f"[engine] device is '{device}' but this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                "numbered from 0; fix [engine] device."
            )
        return name
    raise ModelLoadError(
        f"[engine] device '{device}' is not one of auto, cpu, cuda, cuda:N or mps; fix [engine] device."
    )


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """'auto' → float16 on CUDA, float32 elsewhere (CPU half precision is slow or unsupported,
    and float16 on Apple GPUs can give black pictures with some VAEs)."""
    name = dtype.strip().lower()
    aliases = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32"}
    name = aliases.get(name, name)
    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if name not in DTYPES:
        raise ModelLoadError(
            f"[engine] dtype '{dtype}' is not one of auto, float16, bfloat16 or float32; fix [engine] dtype."
        )
    if name == "bfloat16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise ModelLoadError(
            "[engine] dtype is bfloat16 but this GPU does not support it; set [engine] dtype to float16 or auto."
        )
    if name == "float16" and device == "cpu":
        log.warning(
            "[engine] dtype float16 on the CPU is slow and some layers may not support it; float32 is the usual choice"
        )
    return DTYPES[name]


def _dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


def looks_turbo(model: str, scheduler_config: Any) -> bool:
    """Turbo-class (few-step, distilled) models: 'turbo' anywhere in the hub id or folder path
    (the hub cache keeps 'models--stabilityai--sd-turbo' in its paths), or a scheduler saved with
    trailing timestep spacing. A wrong guess is what [engine] turbo = true/false is for."""
    return "turbo" in model.lower() or scheduler_config.get("timestep_spacing") == "trailing"


# Finding and loading the model -------------------------------------------------------------------


def _looks_like_path(model: str) -> bool:
    """Hub ids are 'name' or 'owner/name'; anything else with a slash is meant as a folder."""
    return (
        model.startswith(("/", ".", "~", "\\"))
        or model.count("/") > 1
        or "\\" in model
        or (len(model) > 1 and model[1] == ":")  # C:\models
    )


def _hub_error(exc: BaseException, name: str) -> bool:
    """Whether exc, or anything it was raised from, is huggingface_hub's error `name`."""
    try:
        from huggingface_hub import errors as hub_errors
    except ImportError:  # older huggingface_hub: the classes lived in utils
        from huggingface_hub import utils as hub_errors  # type: ignore[no-redef]  # the same name, older home
    cls = getattr(hub_errors, name, None)
    seen: BaseException | None = exc
    while seen is not None:
        if cls is not None and isinstance(seen, cls):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _chain_text(exc: BaseException) -> str:
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 8:
        parts.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts).lower()


def _hub_offline(local_files_only: bool) -> bool:
    if local_files_only:
        return True
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except (ImportError, AttributeError):
        return False


def _load_failure(model: str, local: Path | None, exc: BaseException, local_files_only: bool) -> ModelLoadError:
    """One sentence for the operator, naming the setting to change."""
    where = f"the model '{model}' set in [engine] model"
    text = _chain_text(exc)
    unsupported = re.search(r"AutoPipeline can't find a pipeline linked to (\w+)", str(exc))
    if isinstance(exc, ValueError) and unsupported:
        return ModelLoadError(
            f"Could not load {where}: it is a {unsupported.group(1)}, which cannot restyle pictures; "
            f"set [engine] model to an image model such as {DEFAULT_MODEL}."
        )
    if _is_out_of_memory(exc):
        return ModelLoadError(
            f"Could not load {where}: the device ran out of memory; "
            "set [engine] dtype to float16, [engine] device to another GPU, or [engine] model to a smaller model."
        )
    if local is not None:
        return ModelLoadError(
            f"Could not load {where}: the folder is incomplete or damaged ({_first_line(exc)}); "
            "save the pipeline there again, or set [engine] model to another folder or hub id."
        )
    if _hub_error(exc, "HFValidationError"):
        return ModelLoadError(
            f"Could not load {where}: it is neither a folder on this machine nor a model hub id like {DEFAULT_MODEL}; "
            "fix [engine] model."
        )
    if _hub_error(exc, "GatedRepoError"):
        return ModelLoadError(
            f"Could not load {where}: the model hub only gives it to accounts that accept its licence; "
            "accept it on huggingface.co and run `hf auth login`, or set [engine] model to another model."
        )
    if _hub_error(exc, "RepositoryNotFoundError"):
        return ModelLoadError(
            f"Could not load {where}: the model hub has no such model (or it is private); check the spelling of [engine] model."
        )
    if _hub_error(exc, "LocalEntryNotFoundError") or "couldn't connect" in text or "offline" in text:
        if _hub_offline(local_files_only):
            return ModelLoadError(
                f"Could not load {where}: it is not on this machine and [engine] local_files_only (or HF_HUB_OFFLINE) "
                "forbids downloading it; download it once with network access, or set [engine] model to a local folder."
            )
        return ModelLoadError(
            f"Could not load {where}: it is not on this machine and the model hub cannot be reached; "
            "download it once with network access, or set [engine] model to a local folder."
        )
    if _hub_error(exc, "EntryNotFoundError") or "model_index.json" in text:
        return ModelLoadError(
            f"Could not load {where}: it is not a diffusers pipeline (it has no model_index.json); "
            f"set [engine] model to a diffusers image model such as {DEFAULT_MODEL}."
        )
    return ModelLoadError(f"Could not load {where} ({_first_line(exc)}); check [engine] model.")


def _first_line(exc: BaseException, limit: int = 160) -> str:
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _is_out_of_memory(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


def hub_reachable(timeout_s: float = 1.0) -> bool:
    """Whether the model hub answers at all within `timeout_s` (any HTTP status counts).

    Asked before a download only: huggingface_hub retries a refused connection five times with
    backoff (about 23 s, one warning a try) before it gives up."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    try:
        with urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout_s):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):  # URLError, refused, timed out, DNS; ValueError: a malformed HF_ENDPOINT
        return False


def _in_hub_cache(model: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(model, "model_index.json"), str)
    except Exception:  # an id the hub client rejects: from_pretrained gives the precise error
        return False


def _one_line_per_hub_warning() -> None:
    """huggingface_hub gives its loggers a stderr handler of their own and still passes each
    record on to the root logger: where the application has set up logging (the bot does),
    every hub warning printed twice. Its records then go through the application's handlers only."""
    import logging as _logging

    if not _logging.getLogger().handlers:
        return  # nothing else would print them
    hub = _logging.getLogger("huggingface_hub")
    for handler in list(hub.handlers):
        if type(handler) is _logging.StreamHandler:
            hub.removeHandler(handler)


def _check_folder(model: str) -> Path | None:
    """The local folder `model` names, if it names one; ModelLoadError for a path that leads nowhere."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"Could not load the model '{model}' set in [engine] model: that folder has no model_index.json, "
                "so it is not a diffusers pipeline; point [engine] model at a folder saved with save_pretrained, "
                f"or at a hub id such as {DEFAULT_MODEL}."
            )
        return path
    if path.exists():
        raise ModelLoadError(
            f"Could not load the model '{model}' set in [engine] model: that is a file, not a model folder; "
            "set [engine] model to the pipeline's folder (the one holding model_index.json) or to a hub id."
        )
    if _looks_like_path(model):
        raise ModelLoadError(
            f"Could not load the model '{model}' set in [engine] model: there is no such folder; "
            f"fix the path, or set [engine] model to a hub id such as {DEFAULT_MODEL}."
        )
    return None


def find_model(model: str, local_files_only: bool, hub_probe: Callable[[], bool]) -> tuple[Path | None, bool]:
    """Where `model` loads from: its local folder (None: a hub id), and whether to stay off the
    hub (`local_files_only`, or True where the hub cannot be reached but the model is in its cache).
    ModelLoadError where it cannot be had at all. `hub_probe` is asked only for a hub id when
    downloads are allowed."""
    local = _check_folder(model)
    if local is None and not _hub_offline(local_files_only) and not hub_probe():
        if not _in_hub_cache(model):
            raise ModelLoadError(
                f"Could not load the model '{model}' set in [engine] model: it is not on this machine and the "
                "model hub cannot be reached; download it once with network access, or set [engine] model "
                "to a local folder."
            )
        log.warning("the model hub cannot be reached; loading '%s' from this machine's cache", model)
        local_files_only = True  # the cache is all there is; asking the hub would only retry
    return local, local_files_only


def _load_tiny_vae(name: str, torch_dtype: torch.dtype, local_files_only: bool) -> Any:
    from diffusers import AutoencoderTiny

    folder = Path(name).expanduser() if _looks_like_path(name) else None
    try:
        return AutoencoderTiny.from_pretrained(
            str(folder) if folder else name, torch_dtype=torch_dtype, local_files_only=local_files_only
        )
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the tiny VAE '{name}' set in [engine] tiny_vae ({_first_line(exc)}); "
            "set it to an AutoencoderTiny such as madebyollin/taesd, or set [engine] vae to full."
        ) from exc
