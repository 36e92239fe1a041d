"""The real engine (diffusers, real from_pretrained) on the tiny random-weight model, on the CPU.

Pictures are 64x64 (8x8 latents): a pipeline call takes about 0.1 s."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import AutoPipelineForImage2Image  # noqa: E402

from engine.api import EngineJob, ModelLoadError, batch_key, denoising_steps  # noqa: E402
from engine.pipeline import FAILED, STOPPED, DiffusersEngine, restyle_file  # noqa: E402
from tests.engine_fixtures import tiny_engine, tiny_model_dir  # noqa: E402, F401  (fixtures)

# Measured on this machine (torch 2.13 CPU, 2 cores): the same job alone and inside a batch of
# three differs by at most 1 pixel level (of 255) — float rounding of batched convolutions and
# attention. Allow 3, so a kernel-dispatch change doesn't make this flaky.
BATCH_TOLERANCE = 3


def picture(seed: int = 0, size: tuple[int, int] = (64, 64)) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray(rng.randint(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def job(job_id: str, *, prompt: str = "a watercolour cat", seed: int = 7, strength: float = 0.5, **kwargs) -> EngineJob:
    kwargs.setdefault("picture", picture())
    return EngineJob(job_id=job_id, prompt=prompt, strength=strength, seed=seed, **kwargs)


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


class CallSpy:
    """Records what each pipeline call was given (keyword arguments), then runs it for real."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, engine: DiffusersEngine) -> None:
        self.calls: list[dict] = []
        real = type(engine.pipe).__call__

        def spy(pipe, *args, **kwargs):
            self.calls.append(kwargs)
            return real(pipe, *args, **kwargs)

        monkeypatch.setattr(type(engine.pipe), "__call__", spy)

    def sizes(self) -> list[int]:
        return [len(call["image"]) for call in self.calls]


def sibling(engine: DiffusersEngine, **changes) -> DiffusersEngine:
    """Another engine on the same loaded pipeline (so no second load), with other settings."""
    settings = dict(
        model=engine.model, device=engine.device, steps=engine.steps, guidance_scale=engine.guidance_scale,
        max_batch=engine.max_batch, turbo=engine.turbo,
    )  # fmt: skip
    settings.update(changes)
    return DiffusersEngine(engine.pipe, **settings)


# Loading ---------------------------------------------------------------------------------------


def test_loads_a_local_folder_through_auto_pipeline(tiny_engine):
    assert type(tiny_engine.pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    assert (tiny_engine.device, tiny_engine.dtype_name, tiny_engine.steps) == ("cpu", "float32", 4)
    assert not tiny_engine.turbo and tiny_engine.guidance_scale == 7.5 and tiny_engine.uses_cfg
    attention = {type(p).__name__ for p in tiny_engine.pipe.unet.attn_processors.values()}
    assert attention == {"AttnProcessor2_0"}  # torch 2 SDPA, diffusers' default
    summary = tiny_engine.settings_summary()
    assert "device=cpu" in summary and "dtype=float32" in summary and "guidance=7.5" in summary


def test_turbo_setting_switches_spacing_and_guidance(tiny_model_dir, tmp_path):
    turbo = DiffusersEngine.load(str(tiny_model_dir), turbo=True, local_files_only=True)
    assert turbo.turbo and turbo.guidance_scale == 0.0 and not turbo.uses_cfg
    assert turbo._base_scheduler.config.timestep_spacing == "trailing"
    named = tmp_path / "my-sd-turbo-copy"
    named.symlink_to(tiny_model_dir, target_is_directory=True)
    assert DiffusersEngine.load(str(named), local_files_only=True).turbo  # guessed from the name
    forced = DiffusersEngine.load(str(named), turbo=False, guidance_scale=3.0, local_files_only=True)
    assert not forced.turbo and forced.guidance_scale == 3.0


def load_error(model: str, **kwargs) -> ModelLoadError:
    with pytest.raises(ModelLoadError) as caught:
        DiffusersEngine.load(model, local_files_only=True, **kwargs)
    message = str(caught.value)
    assert "[engine] model" in message and "\n" not in message, message
    assert "Traceback" not in message
    return caught.value


def test_missing_folder_is_a_model_load_error(tmp_path):
    error = load_error(str(tmp_path / "no-such-model"))
    assert "no such folder" in str(error)


def test_folder_that_is_not_a_pipeline_is_a_model_load_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    assert "model_index.json" in str(load_error(str(tmp_path)))


def test_text_to_video_model_is_a_model_load_error(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "TextToVideoSDPipeline", "_diffusers_version": "0.42.1"}')
    error = load_error(str(tmp_path))
    assert "TextToVideoSDPipeline" in str(error) and "cannot restyle" in str(error)
    assert error.__cause__ is not None  # kept for the logs


def test_damaged_pipeline_folder_is_a_model_load_error(tiny_model_dir, tmp_path):
    (tmp_path / "model_index.json").write_text((tiny_model_dir / "model_index.json").read_text())
    assert "incomplete or damaged" in str(load_error(str(tmp_path)))


def test_hub_id_not_on_this_machine_is_a_model_load_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # belt and braces: load_error passes local_files_only
    error = load_error("nobody-here/no-such-model-xyz")
    assert "not on this machine" in str(error) and "local_files_only" in str(error)
    assert error.__cause__ is not None


def test_unreachable_hub_is_explained(monkeypatch):
    """What a machine without network says when it may download (not run for real: the hub
    client retries for ~25 s before it gives up)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    from engine.loading import _load_failure

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    try:
        try:
            raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub")
        except LocalEntryNotFoundError as cause:
            raise OSError("foo/bar does not appear to have a file named model_index.json.") from cause
    except OSError as exc:
        error = _load_failure("foo/bar", None, exc, local_files_only=False)
    assert str(error) == (
        "Could not load the model 'foo/bar' set in [engine] model: it is not on this machine and the model hub "
        "cannot be reached; download it once with network access, or set [engine] model to a local folder."
    )


def test_bad_device_or_dtype_names_the_setting():
    with pytest.raises(ModelLoadError, match=r"\[engine\] device"):
        DiffusersEngine.load("x", device="tpu")
    with pytest.raises(ModelLoadError, match=r"\[engine\] dtype"):
        DiffusersEngine.load("x", device="cpu", dtype="int8")


# Seeds and batches -----------------------------------------------------------------------------


def test_a_job_alone_equals_diffusers_called_directly(tiny_engine, tiny_model_dir):
    (out,) = tiny_engine.run([job("a", seed=1234)])
    pipe = AutoPipelineForImage2Image.from_pretrained(tiny_model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    direct = pipe(
        "a watercolour cat",
        image=picture(),
        strength=0.5,
        num_inference_steps=4,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(1234),
    ).images[0]
    assert out.error is None and out.seed == 1234 and out.steps == 4
    assert np.array_equal(pixels(out.picture), pixels(direct))


def test_same_job_in_a_batch_of_three_matches_it_alone(tiny_engine, monkeypatch):
    target = job("t", prompt="an oil painting", seed=42, picture=picture(3))
    others = [job("x", prompt="a pencil sketch", seed=5, picture=picture(4)), job("y", prompt="neon", seed=9)]
    spy = CallSpy(monkeypatch, tiny_engine)
    (alone,) = tiny_engine.run([target])
    batch = tiny_engine.run([others[0], target, others[1]])
    assert spy.sizes() == [1, 3]  # really one call for the three
    assert [o.job_id for o in batch] == ["x", "t", "y"]
    difference = int(np.abs(pixels(batch[1].picture) - pixels(alone.picture)).max())
    print(f"batch-of-3 vs alone: max abs pixel difference {difference}")
    assert difference <= BATCH_TOLERANCE
    assert int(np.abs(pixels(batch[0].picture) - pixels(alone.picture)).max()) > 20  # not the same picture


def test_cached_prompt_embeddings_give_the_pictures_prompts_give(tiny_engine):
    """Alone, a job's picture is identical with the cache and without. In a batch the text
    encoder used to see all the prompts at once and now sees each alone: measured here, at most
    1 level of 255 apart, the same float rounding as a job alone vs in a batch (BATCH_TOLERANCE)."""
    jobs = [
        job("a", prompt="an oil painting", seed=3, negative_prompt="blurry"),
        job("b", prompt="a pencil sketch", seed=4, picture=picture(5)),
        job("c", prompt="an oil painting", seed=5, picture=picture(6), negative_prompt="dark"),
    ]
    uncached = sibling(tiny_engine)
    uncached.prompt_cache = None  # diffusers encodes the prompts itself, as before the cache
    cached = sibling(tiny_engine)
    for one in jobs:
        (want,) = uncached.run([one])
        (got,) = cached.run([one])
        assert np.array_equal(pixels(got.picture), pixels(want.picture))  # identical, not close
    expected = uncached.run(jobs)
    warm = cached.run(jobs)  # every prompt cached by now
    for want, got in zip(expected, warm):
        assert int(np.abs(pixels(got.picture) - pixels(want.picture)).max()) <= BATCH_TOLERANCE


def test_the_device_path_gives_the_pictures_of_the_pil_path(tiny_engine):
    """Today's engine (PIL in and out, diffusers encoding each picture alone, prompts as text)
    against the default one: a job alone is identical; a batch within BATCH_TOLERANCE (the
    batched VAE encode rounds like any batched convolution; measured: at most 1 level)."""
    before = sibling(tiny_engine)
    before.prompt_cache, before.device_pictures = None, False
    now = sibling(tiny_engine)
    jobs = [job("a", seed=11), job("b", prompt="ink", seed=12, picture=picture(8)), job("c", seed=13, picture=picture(9))]
    for one in jobs:
        (want,) = before.run([one])
        (got,) = now.run([one])
        assert np.array_equal(pixels(got.picture), pixels(want.picture))
    differences = [int(np.abs(pixels(g.picture) - pixels(w.picture)).max()) for w, g in zip(before.run(jobs), now.run(jobs))]
    print(f"device path vs PIL path, batch of 3: max abs pixel differences {differences}")
    assert max(differences) <= BATCH_TOLERANCE


def test_a_batch_is_vae_encoded_in_one_call(tiny_engine):
    engine = sibling(tiny_engine)
    sizes: list[int] = []
    hook = engine.pipe.vae.encoder.register_forward_hook(lambda module, args, out: sizes.append(args[0].shape[0]))
    try:
        outputs = engine.run([job("a", seed=1), job("b", seed=2), job("c", seed=3)])
    finally:
        hook.remove()
    assert all(o.picture is not None for o in outputs)
    assert sizes == [3]  # diffusers, given one generator per picture, encodes them one by one


# Measured on this machine (torch 2.13 CPU, float32): a batch of 4 VAE-encoded in one call gives
# latents at most 4.2e-7 from each picture encoded alone (latents of magnitude ~0.7: a few float32
# ULPs); allow 1e-5. In pictures that is at most 1 level of 255 (BATCH_TOLERANCE above).
VAE_BATCH_LATENT_TOLERANCE = 1e-5


@pytest.mark.parametrize("size", [(64, 64), (96, 64)])
def test_the_batched_vae_encode_is_within_its_tolerance_of_one_picture_at_a_time(tiny_engine, size):
    from engine.pipeline import _Planned

    chunk = [_Planned(i, job(f"e{i}", seed=20 + i, picture=picture(30 + i, size)), 4) for i in range(4)]

    def generators() -> list:
        return [torch.Generator("cpu").manual_seed(p.job.seed) for p in chunk]

    together = tiny_engine._encode_on_device(chunk, generators())
    alone = torch.cat([tiny_engine._encode_on_device([p], [g]) for p, g in zip(chunk, generators())])
    assert together.shape == alone.shape == (4, 4, size[1] // 8, size[0] // 8)
    difference = float((together - alone).abs().max())
    print(f"batched vs one-at-a-time VAE encode at {size}: max abs latent difference {difference:.2e}")
    assert difference <= VAE_BATCH_LATENT_TOLERANCE
    # Each job's own generator drew its sample: another seed moves the latents by far more.
    reseeded = tiny_engine._encode_on_device(chunk, [torch.Generator("cpu").manual_seed(99)] + generators()[1:])
    assert float((reseeded[0] - together[0]).abs().max()) > 100 * VAE_BATCH_LATENT_TOLERANCE
    assert torch.equal(reseeded[1:], together[1:])


def test_the_tiny_vae_option_loads_and_runs(tiny_model_dir, tmp_path):
    from diffusers import AutoencoderTiny

    from engine.testmodel import make_test_tiny_vae

    folder = make_test_tiny_vae(tmp_path / "taesd")
    engine = DiffusersEngine.load(str(tiny_model_dir), device="cpu", local_files_only=True, vae="tiny", tiny_vae=str(folder))
    assert isinstance(engine.pipe.vae, AutoencoderTiny)
    jobs = [job("a", seed=1), job("b", seed=2, picture=picture(3, (64, 128)))]
    outputs = engine.run(jobs)
    assert [o.error for o in outputs] == [None, None]
    assert [o.picture.size for o in outputs] == [(64, 64), (64, 128)]
    (again,) = engine.run([jobs[0]])
    assert np.array_equal(pixels(again.picture), pixels(outputs[0].picture))  # seeds still repeat


def test_a_missing_tiny_vae_names_the_setting(tiny_model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match=r"\[engine\] tiny_vae"):
        DiffusersEngine.load(str(tiny_model_dir), device="cpu", local_files_only=True, vae="tiny", tiny_vae=str(tmp_path / "none"))


def test_cudnn_benchmark_loads_and_runs_on_the_cpu_and_is_only_for_cuda(tiny_model_dir, tiny_engine, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    engine = DiffusersEngine.load(str(tiny_model_dir), device="cpu", local_files_only=True, cudnn_benchmark=True)
    assert torch.backends.cudnn.benchmark is False  # a CPU engine leaves the process setting alone
    (got,) = engine.run([job("c", seed=5)])
    (want,) = tiny_engine.run([job("c", seed=5)])
    assert np.array_equal(pixels(got.picture), pixels(want.picture))


def test_cuda_graphs_compiles_in_inductors_graph_mode_and_compile_in_its_default(tiny_model_dir, monkeypatch):
    """What the two options ask torch.compile for (cuda_graphs cannot run on a CPU: it is refused
    at start, test_cuda_graphs_are_refused_at_start_without_a_gpu): reduce-overhead is
    inductor's CUDA-graph mode, for the UNet and both halves of the VAE."""
    from engine.compiled import compile_pipeline

    asked: list[dict] = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: asked.append(kwargs) or fn)
    for cuda_graphs, mode in ((True, "reduce-overhead"), (False, "default")):
        asked.clear()
        pipe = AutoPipelineForImage2Image.from_pretrained(tiny_model_dir, local_files_only=True)
        routers = compile_pipeline(pipe, cuda_graphs=cuda_graphs, shapes_per_module=3)
        assert [r is m.forward for r, m in zip(routers, (pipe.unet, pipe.vae.encoder, pipe.vae.decoder))] == [True] * 3
        assert [(a["mode"], a["backend"], a["dynamic"]) for a in asked] == [(mode, "inductor", False)] * 3
        assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_the_device_is_looked_up_once_not_on_every_call(tiny_model_dir, monkeypatch):
    """diffusers' _execution_device walks every module of the pipeline (15 ms for SD-Turbo's
    1,235 on the dev VM) on every call; the engine asks it once, at construction."""
    from diffusers import DiffusionPipeline

    walks: list[int] = []
    walk = DiffusionPipeline._execution_device.fget
    monkeypatch.setattr(DiffusionPipeline, "_execution_device", property(lambda pipe: walks.append(1) or walk(pipe)))
    pipe = AutoPipelineForImage2Image.from_pretrained(tiny_model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    engine = DiffusersEngine(pipe, model="tiny", device="cpu", max_batch=2)
    assert len(walks) == 1 and engine.execution_device == torch.device("cpu")
    outputs = engine.run([job("a", seed=1), job("b", seed=2), job("c", prompt="new", seed=3, picture=picture(1, (64, 128)))])
    assert all(o.picture is not None for o in outputs)
    assert len(walks) == 1  # two pipeline calls, two prompts encoded: no walk
    assert type(pipe).__name__ == "StableDiffusionImg2ImgPipeline" and type(pipe)._engine_pinned_from.__name__ == type(pipe).__name__
    DiffusersEngine(pipe, model="tiny", device="cpu")  # a second engine on the pipeline: pinned already
    assert len(walks) == 1 and "_engine_pinned_from" not in type(pipe)._engine_pinned_from.__dict__


def test_the_vae_dtype_is_read_once_not_on_every_call(tiny_engine, monkeypatch):
    """diffusers' ModelMixin.dtype walks the model's modules on every read (0.8 ms for
    SD-Turbo's VAE on the dev VM); the device path reads the VAE's once, at construction."""
    from diffusers import ModelMixin

    reads: list[str] = []
    read = ModelMixin.dtype.fget
    monkeypatch.setattr(ModelMixin, "dtype", property(lambda model: reads.append(type(model).__name__) or read(model)))
    engine = sibling(tiny_engine)
    assert reads == ["AutoencoderKL"] and engine.vae_dtype == torch.float32
    outputs = engine.run([job("a", seed=1), job("b", seed=2), job("c", seed=3, picture=picture(1, (64, 128)))])
    assert all(o.picture is not None for o in outputs)
    assert reads == ["AutoencoderKL"]  # two pipeline calls: no read of any model's dtype


def test_a_repeated_prompt_is_encoded_once(tiny_engine):
    engine = sibling(tiny_engine)
    encoded: list[int] = []
    hook = engine.pipe.text_encoder.register_forward_hook(lambda module, args, out: encoded.append(args[0].shape[0]))
    try:
        engine.run([job("1", prompt="a cat"), job("2", prompt="a dog")])
        after_first = len(encoded)
        engine.run([job("3", prompt="a dog", seed=1), job("4", prompt="a cat", seed=2)])
    finally:
        hook.remove()
    assert after_first > 0
    assert len(encoded) == after_first  # the second run encoded nothing
    assert engine.prompt_cache.hits >= 2


def test_the_prompt_cache_drops_the_least_recently_used(tiny_engine):
    engine = sibling(tiny_engine)
    engine.prompt_cache.size = 2
    for prompt in ("one", "two", "one", "three"):
        engine.run([job(prompt, prompt=prompt)])
    kept = [key[0] for key in engine.prompt_cache._entries]
    assert kept == ["one", "three"]


def test_different_prompts_make_different_pictures(tiny_engine):
    cat, dog = tiny_engine.run([job("c", prompt="a cat"), job("d", prompt="a dog")])
    assert not np.array_equal(pixels(cat.picture), pixels(dog.picture))
    seed_a, seed_b = tiny_engine.run([job("1", seed=1), job("2", seed=2)])
    assert not np.array_equal(pixels(seed_a.picture), pixels(seed_b.picture))


def test_strength_sharing_a_batch_key_gives_identical_pictures(tiny_model_dir):
    """api.batch_key's claim: strengths with equal effective steps are interchangeable."""
    assert batch_key(64, 64, 4, 0.5) == batch_key(64, 64, 4, 0.6)  # int(4*0.5) == int(4*0.6) == 2
    pipe = AutoPipelineForImage2Image.from_pretrained(tiny_model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def run(strength):
        return pipe("ink", image=picture(), strength=strength, num_inference_steps=4, guidance_scale=0.0,
                    generator=torch.Generator("cpu").manual_seed(3)).images[0]  # fmt: skip

    assert np.array_equal(pixels(run(0.5)), pixels(run(0.6)))
    assert not np.array_equal(pixels(run(0.5)), pixels(run(0.75)))  # 3 steps: a different key


def test_jobs_are_grouped_by_size_and_chunked_by_max_batch(tiny_engine, monkeypatch):
    engine = sibling(tiny_engine, max_batch=2)
    spy = CallSpy(monkeypatch, engine)
    tall = picture(1, (64, 128))
    jobs = [job("s1"), job("t1", picture=tall), job("s2"), job("s3"), job("t2", picture=tall), job("s4"), job("s5")]
    outputs = engine.run(jobs)
    assert [o.job_id for o in outputs] == [j.job_id for j in jobs]
    assert all(o.error is None for o in outputs)
    assert [o.picture.size for o in outputs] == [j.picture.size for j in jobs]
    assert spy.sizes() == [2, 2, 1, 2]  # five squares in chunks of 2, then the two tall ones
    assert tuple(spy.calls[3]["image"].shape) == (2, 4, 16, 8)  # the tall ones' latents: 128 high, 64 wide
    assert isinstance(spy.calls[2]["generator"], torch.Generator)  # a lone job: one generator
    assert isinstance(spy.calls[0]["generator"], list) and len(spy.calls[0]["generator"]) == 2
    assert spy.calls[0]["negative_prompt_embeds"].shape[0] == 2  # CFG is on: negative prompts go along


def test_turbo_engine_sends_no_negative_prompt(tiny_engine, monkeypatch):
    engine = sibling(tiny_engine, guidance_scale=0.0, turbo=True)
    spy = CallSpy(monkeypatch, engine)
    (out,) = engine.run([job("n", negative_prompt="blurry")])
    assert out.picture is not None
    assert "negative_prompt" not in spy.calls[0] and "negative_prompt_embeds" not in spy.calls[0]
    assert spy.calls[0]["guidance_scale"] == 0.0


def test_too_few_steps_for_the_strength_are_raised(tiny_engine, monkeypatch):
    spy = CallSpy(monkeypatch, tiny_engine)
    seen = []
    (out,) = tiny_engine.run([job("low", strength=0.1, steps=2)], lambda job_id, f: seen.append(f))
    assert out.error is None and out.picture is not None
    assert out.steps == 10 and denoising_steps(2, 0.1) == 1  # 2 x 0.1 < 1 → 10 scheduled, 1 run
    assert spy.calls[0]["num_inference_steps"] == 10
    assert seen == [1.0]  # one denoising step


def test_progress_is_reported_for_every_job_of_the_batch(tiny_engine):
    seen: dict[str, list[float]] = {}
    outputs = tiny_engine.run(
        [job("p1", strength=1.0), job("p2", strength=1.0)], lambda job_id, f: seen.setdefault(job_id, []).append(f)
    )
    assert all(o.picture is not None for o in outputs)
    assert seen == {"p1": [0.25, 0.5, 0.75, 1.0], "p2": [0.25, 0.5, 0.75, 1.0]}


def test_interrupt_stops_the_batch_and_the_next_run_is_unaffected(tiny_engine):
    seen: list[tuple[str, float]] = []

    def progress(job_id: str, fraction: float) -> None:
        seen.append((job_id, fraction))
        tiny_engine.interrupt()  # as a /cancel would, from another thread

    jobs = [job("i1", strength=1.0), job("i2", strength=1.0), job("i3", strength=1.0, picture=picture(0, (128, 64)))]
    outputs = tiny_engine.run(jobs, progress)
    assert [o.error for o in outputs] == [STOPPED] * 3 and all(o.picture is None for o in outputs)
    assert seen == [("i1", 0.25), ("i2", 0.25)]  # stopped after one of four steps; i3 never began
    (after,) = tiny_engine.run([job("later")])
    assert after.error is None and after.picture is not None


def test_a_failing_chunk_fails_only_its_own_jobs(tiny_engine, monkeypatch, caplog):
    real = DiffusersEngine._call_pipeline

    def flaky(self, chunk, on_progress):
        if any(p.job.job_id == "bad" for p in chunk):
            raise RuntimeError("simulated CUDA error")
        return real(self, chunk, on_progress)

    monkeypatch.setattr(DiffusersEngine, "_call_pipeline", flaky)
    jobs = [job("ok1"), job("bad", picture=picture(2, (128, 64))), job("ok2", picture=picture(2, (64, 128)))]
    with caplog.at_level(logging.ERROR, logger="engine"):
        outputs = tiny_engine.run(jobs)
    assert [o.job_id for o in outputs] == ["ok1", "bad", "ok2"]
    assert outputs[1].error == FAILED and outputs[1].picture is None
    assert outputs[0].picture is not None and outputs[2].picture is not None
    assert any("bad" in r.getMessage() and r.exc_info for r in caplog.records if r.name == "engine")


def test_bad_strength_fails_that_job_alone(tiny_engine):
    bad, good = tiny_engine.run([job("zero", strength=0.0), job("fine")])
    assert bad.error and bad.picture is None
    assert good.picture is not None


# The admin CLI's restyle_file and the test-model command ----------------------------------------


@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP")])
def test_restyle_file_writes_the_format_its_suffix_names(tiny_engine, tmp_path, suffix, fmt):
    source = tmp_path / "in.jpg"
    picture(0, (96, 64)).save(source, format="JPEG")
    target = tmp_path / f"out{suffix}"
    output = restyle_file(tiny_engine, source, target, prompt="pastel", strength=0.5, seed=None, steps=None, max_side=128)
    assert output.error is None and 0 <= output.seed < 2**32 and output.steps == 4
    with Image.open(io.BytesIO(target.read_bytes())) as written:
        assert written.format == fmt and written.size == (128, 88)  # 96x64 brought up to 128 long, sides /8
        assert written.size == output.picture.size


def test_make_test_model_command(tmp_path, capsys):
    from engine.__main__ import main

    target = tmp_path / "made"
    assert main(["make-test-model", str(target)]) == 0
    assert (target / "model_index.json").is_file() and (target / "unet").is_dir()
    assert str(target) in capsys.readouterr().out


def test_cuda_graphs_are_refused_at_start_without_a_gpu(tiny_model_dir):
    with pytest.raises(ModelLoadError) as refused:
        DiffusersEngine.load(str(tiny_model_dir), device="cpu", local_files_only=True, cuda_graphs=True)
    message = str(refused.value)
    assert message.startswith("[engine] cuda_graphs needs an NVIDIA GPU") and message.count(". ") == 0  # one sentence
    assert "cuda_graphs = false" in message


def test_compile_sizes_that_are_not_sizes_are_refused(tiny_model_dir):
    with pytest.raises(ModelLoadError, match=r"\[engine\] compile_sizes"):
        DiffusersEngine.load(str(tiny_model_dir), device="cpu", local_files_only=True, compile=True, compile_sizes=["512"])


@pytest.mark.slow
def test_compile_loads_and_runs_on_the_cpu_for_its_sizes_only(tiny_model_dir, tiny_engine):
    """[engine] compile: warmed up at start for compile_sizes; those shapes run compiled, any
    other eagerly (nothing compiles after start). With dynamo's "eager" backend (~5 s here: the
    same tracing, routing and channels_last, without inductor's minutes of CPU compile; the
    inductor run is `bench/gpu.py --tiny --compile`)."""
    engine = DiffusersEngine.load(
        str(tiny_model_dir), device="cpu", local_files_only=True, compile=True, compile_sizes=["64x64"],
        max_batch=1, compile_backend="eager",
    )  # fmt: skip
    unet, encoder, decoder = engine.compiled
    assert all(router.shapes for router in engine.compiled)  # warmed up at start
    assert engine.pipe.unet.forward is unet and engine.pipe.vae.decoder.forward is decoder
    before = [(r.compiled_calls, r.eager_calls) for r in engine.compiled]
    (compiled,) = engine.run([job("a", seed=3)])
    (eager,) = tiny_engine.run([job("a", seed=3)])
    assert compiled.error is None
    assert [r.compiled_calls > b[0] and r.eager_calls == b[1] for r, b in zip(engine.compiled, before)] == [True] * 3
    # channels_last changes the CPU's convolution order: within 1 level of 255.
    assert np.abs(pixels(compiled.picture).astype(int) - pixels(eager.picture).astype(int)).max() <= 1
    (other,) = engine.run([job("b", seed=3, picture=picture(1, (64, 128)))])
    assert other.error is None and other.picture.size == (64, 128)
    assert all(r.eager_calls > b[1] for r, b in zip(engine.compiled, before))  # a size not warmed up: eager
