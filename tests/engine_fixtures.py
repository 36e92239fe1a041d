"""Shared fixtures for tests that need the real engine on the tiny random-weight model.

Use from any test file:

    from tests.engine_fixtures import tiny_model_dir, tiny_engine  # noqa: F401  (pytest fixtures)

The model is written once per test session, however many files import these fixtures
(pytest would otherwise run a session fixture once per module that imports it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_built: dict[str, Any] = {}  # "dir": the model's folder, "engine": the loaded engine


def build_test_model_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's folder, written on first use in this session (about 4 MB, ~1 s)."""
    if "dir" not in _built:
        torch = pytest.importorskip("torch")
        pytest.importorskip("diffusers")
        from engine.testmodel import make_test_model

        # The tiny model gains nothing from threads, and on a shared 2-core machine OpenMP's
        # spin-waiting under contention turned 0.1 s calls into seconds.
        torch.set_num_threads(1)

        _built["dir"] = make_test_model(tmp_path_factory.mktemp("tiny-model"))
    return _built["dir"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_model_once(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir: Path):
    """A DiffusersEngine on the tiny model (CPU, float32, not turbo: guidance 7.5, 4 steps)."""
    if "engine" not in _built:
        from engine.pipeline import DiffusersEngine

        _built["engine"] = DiffusersEngine.load(str(tiny_model_dir), device="cpu", local_files_only=True)
    return _built["engine"]
