"""diffusers' safety checker through the path the bot uses, on a tiny random-weight checker."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from engine.api import ModelLoadError


def make_tiny_safety_checker(folder: Path, *, flags: bool | None = None) -> Path:
    """A random-weight checker. flags=True: every picture scores over every concept's threshold
    (flagged); False: none can (cosine distances are at most 1); None: the weights as made."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    small = dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1)
    config = CLIPConfig(
        text_config={**small, "vocab_size": 100, "bos_token_id": 0, "eos_token_id": 1},
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(config)
    if flags is not None:
        with torch.no_grad():
            checker.concept_embeds_weights.fill_(-2.0 if flags else 2.0)
            checker.special_care_embeds_weights.fill_(2.0)
    checker.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_safety_checker_loads_from_a_folder_and_judges_a_picture(tmp_path):
    from engine.safety import load_safety_checker

    flagged = load_safety_checker(str(make_tiny_safety_checker(tmp_path / "checker")), local_files_only=True)
    verdict = flagged(Image.new("RGB", (64, 48), (200, 120, 90)))
    assert isinstance(verdict, bool)


@pytest.mark.parametrize("flags", [True, False], ids=["flags-everything", "flags-nothing"])
def test_the_checkers_verdict_is_what_the_bot_gets(tmp_path, flags):
    """A checker that never flags (or always does) must fail one of these."""
    from engine.safety import load_safety_checker

    flagged = load_safety_checker(str(make_tiny_safety_checker(tmp_path / "c", flags=flags)), local_files_only=True)
    pictures = [Image.new("RGB", (64, 48), (200, 120, 90)), Image.new("L", (40, 70), 10)]
    assert [flagged(picture) for picture in pictures] == [flags, flags]


def test_a_batch_is_checked_in_one_call_with_the_verdicts_of_one_at_a_time(tmp_path):
    import numpy as np

    from engine.safety import load_safety_checker

    check = load_safety_checker(str(make_tiny_safety_checker(tmp_path / "c")), local_files_only=True)
    rng = np.random.default_rng(1)
    pictures = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(3)]
    pictures.append(Image.new("RGB", (40, 72), (250, 250, 250)))  # another size in the same batch
    alone = [check(picture) for picture in pictures]
    calls: list[int] = []
    hook = check.checker.vision_model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        together = check.check_batch(pictures)
    finally:
        hook.remove()
    assert together == alone
    assert calls == [3, 1]  # one call per picture size, not one per picture


async def test_the_worker_checks_a_batch_of_results_in_one_call(tmp_path):
    from tests.harness.service import FREE, FREE2, PRO, make

    class BatchChecker:
        def __init__(self) -> None:
            self.batches: list[int] = []

        def __call__(self, picture) -> bool:
            raise AssertionError("checked one picture at a time")

        def check_batch(self, pictures) -> list[bool]:
            self.batches.append(len(pictures))
            return [False, True, False][: len(pictures)]

    h = await make(tmp_path, max_batch=3)
    checker = BatchChecker()
    h.service.batches.safety_check = checker
    try:
        jobs = [(await h.submit(member, "/restyle x")).job_id for member in (PRO, FREE, FREE2)]
        h.start_worker()
        await h.drain(advance=60)
        assert checker.batches == [3]
        statuses = [(await h.store.job(j)).status for j in h.engine.batches[0]]
        assert statuses == ["done", "failed", "done"]  # the second verdict withheld the second result
        assert len(h.frontend.results) == 2
        assert sorted(jobs) == sorted(h.engine.batches[0])
    finally:
        await h.close()


def test_missing_safety_checker_names_the_setting(tmp_path):
    from engine.safety import load_safety_checker

    with pytest.raises(ModelLoadError, match=r"\[moderation\] safety_checker"):
        load_safety_checker(str(tmp_path / "nothing-here"), local_files_only=True)


async def test_app_wires_the_configured_checker_into_the_service(tmp_path):
    from bot.app import App
    from bot.config import load_config
    from bot.core.types import Member
    from tests.fakes import FakeEngine, picture_bytes, wait_until

    checker = make_tiny_safety_checker(tmp_path / "checker", flags=True)
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n[engine]\nlocal_files_only = true\n'
        f'[moderation]\nsafety_checker = "{checker}"\n[web]\nport = 0\n'
    )
    app = await App.create(load_config(config_path, env={}), engine_factory=lambda c: FakeEngine())
    await app.start()
    try:
        await wait_until(lambda: app.health.engine_ready, timeout=10, what="the engine and the safety checker to load")
        assert app.service.batches.safety_check is not None
        # The configured checker flags everything, so a finished job is withheld, not sent.
        member = Member("web", "local")
        answer = await app.service.jobs.submit(member, picture_bytes(), "/restyle x", {})
        await wait_until(lambda: _status(app.service, answer.job_id, ("done", "failed")), what="the job to finish")
        job = await app.service.jobs.job(answer.job_id)
        assert job.status == "failed" and "safety filter" in job.error
        assert (await app.service.jobs.me(member)).used_today == 0
    finally:
        await app.stop()


async def _status(service, job_id: str, statuses: tuple[str, ...]) -> bool:
    job = await service.jobs.job(job_id)
    return job is not None and job.status in statuses
