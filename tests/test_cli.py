"""`python -m bot restyle IN OUT` and start-up failures, as an admin meets them in a shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.engine_fixtures import tiny_model_dir  # noqa: F401  (a pytest fixture)

ROOT = Path(__file__).resolve().parent.parent


def run_bot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.slow  # a `python -m bot restyle` process: torch and the model load
def test_restyle_command_writes_a_picture_in_the_format_its_suffix_names(tmp_path, tiny_model_dir):
    config = tmp_path / "config.toml"
    config.write_text(f'[engine]\nmodel = "{tiny_model_dir}"\nlocal_files_only = true\ndevice = "cpu"\n')
    source = tmp_path / "in.jpg"
    Image.new("RGB", (96, 64), (30, 90, 200)).save(source)
    out = tmp_path / "out.webp"
    result = run_bot(
        "restyle", str(source), str(out), "--prompt", "oil painting", "--strength", "0.5", "--seed", "3",
        "--config", str(config), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "seed 3" in result.stdout
    with Image.open(out) as img:
        assert img.format == "WEBP"
        assert img.width % 8 == 0 and img.height % 8 == 0 and img.width > img.height


@pytest.mark.slow  # a `python -m bot restyle` process: torch and the model load
def test_restyle_command_explains_a_missing_model_in_one_sentence(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[engine]\nmodel = "{tmp_path / "no-such-model"}"\n')
    source = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(source)
    result = run_bot("restyle", str(source), str(tmp_path / "out.png"), "--prompt", "x", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "[engine] model" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a `python -m bot restyle` process: torch and the model load
def test_restyle_command_refuses_a_file_that_is_not_a_picture(tmp_path, tiny_model_dir):
    config = tmp_path / "config.toml"
    config.write_text(f'[engine]\nmodel = "{tiny_model_dir}"\nlocal_files_only = true\ndevice = "cpu"\n')
    source = tmp_path / "notes.jpg"
    source.write_text("not a picture")
    result = run_bot("restyle", str(source), str(tmp_path / "o.png"), "--prompt", "x", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "picture" in result.stderr.lower()


def test_bad_config_stops_start_up_naming_the_key(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[tiers.free]\nmin_turnaround_s = \"forty\"\n")
    result = run_bot("--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "[tiers.free] min_turnaround_s" in result.stderr and "Traceback" not in result.stderr


def test_unwritable_data_dir_stops_start_up_with_a_clear_message(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    config = tmp_path / "config.toml"
    config.write_text(f'[bot]\ndata_dir = "{blocker}"\n')
    result = run_bot("--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "[bot] data_dir" in result.stderr and "Traceback" not in result.stderr
