"""Loading the model as an owner's machine does it: with accelerate (no warning at start), and
with the model hub out of reach (one sentence at once, or the cached copy, never a retry storm)."""

from __future__ import annotations

import logging
import shutil
import socket

import pytest

from engine.api import ModelLoadError
from tests.engine_fixtures import tiny_model_dir  # noqa: F401  (pytest fixture)

pytest.importorskip("diffusers")


@pytest.fixture
def hub_out_of_reach(monkeypatch, tmp_path):
    """An empty hub cache and a hub endpoint that refuses connections (a port just closed)."""
    from huggingface_hub import constants

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_accelerate_is_installed_and_loading_does_not_warn_about_it(tiny_model_dir, caplog):
    from engine.pipeline import DiffusersEngine

    with caplog.at_level(logging.WARNING):
        DiffusersEngine.load(str(tiny_model_dir), device="cpu", local_files_only=True)
    assert "accelerate" not in caplog.text


def test_probe_says_a_closed_port_is_out_of_reach(hub_out_of_reach):
    from engine.loading import hub_reachable

    assert hub_reachable() is False


@pytest.mark.timeout(15)  # the hub client's retries take ~23 s: this bounds the old behaviour, not a speed target
def test_unreachable_hub_and_no_cached_copy_is_one_sentence_without_retries(hub_out_of_reach, caplog):
    from engine.pipeline import DiffusersEngine

    with caplog.at_level(logging.WARNING), pytest.raises(ModelLoadError) as error:
        DiffusersEngine.load("someone/some-model", device="cpu")
    assert str(error.value) == (
        "Could not load the model 'someone/some-model' set in [engine] model: it is not on this machine and the "
        "model hub cannot be reached; download it once with network access, or set [engine] model to a local folder."
    )
    assert "Retry" not in caplog.text


def test_unreachable_hub_loads_the_cached_copy_without_asking_the_hub(hub_out_of_reach, tiny_model_dir, caplog):
    from engine.pipeline import DiffusersEngine

    # The layout huggingface_hub writes: models--owner--name/{refs/main, snapshots/<commit>/...}
    repo = hub_out_of_reach / "models--someone--cached-model"
    commit = "0123456789abcdef" * 2 + "01234567"  # the hub client wants a 40-hex commit id
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    with caplog.at_level(logging.WARNING):
        engine = DiffusersEngine.load("someone/cached-model", device="cpu", hub_probe=lambda: False)
    assert engine.model == "someone/cached-model"
    assert "Retry" not in caplog.text and "loading 'someone/cached-model' from this machine's cache" in caplog.text


def test_the_hub_is_not_probed_when_downloads_are_off(monkeypatch):
    from engine.pipeline import DiffusersEngine

    def probe() -> bool:
        raise AssertionError("probed")

    with pytest.raises(ModelLoadError, match="forbids downloading"):
        DiffusersEngine.load("nobody-here/no-such-model-xyz", device="cpu", local_files_only=True, hub_probe=probe)




def test_a_hub_warning_is_printed_once_where_the_application_logs(tiny_model_dir):
    import io

    from huggingface_hub.utils import logging as hub_logging

    from engine.pipeline import DiffusersEngine

    hub_logging.get_logger("huggingface_hub.probe")  # sets up the hub's own stderr handler
    stderr = io.StringIO()  # stands for the terminal both handlers write to
    for handler in logging.getLogger("huggingface_hub").handlers:
        if type(handler) is logging.StreamHandler:
            handler.setStream(stderr)
    ours = logging.StreamHandler(stderr)  # what logging.basicConfig in `python -m bot` adds
    root = logging.getLogger()
    root.addHandler(ours)
    try:
        DiffusersEngine.load(str(tiny_model_dir), device="cpu", local_files_only=True)
        hub_logging.get_logger("huggingface_hub.probe").warning("hub-warning-probe")
    finally:
        root.removeHandler(ours)
    assert stderr.getvalue().count("hub-warning-probe") == 1, stderr.getvalue()
