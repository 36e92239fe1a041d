"""bench/gpu.py's --tiny smoke mode, end to end on the CPU with the tiny random model: every
variant measured, the exact path's pictures identical to plain diffusers calls, the pipelined
worker row, the budget, and the one sentence a box without diffusers gets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu.py"
STAGES = {"text", "pre", "encode", "unet", "decode", "post", "rest"}
# Pictures of a batch against each alone (tests/test_engine.py BATCH_TOLERANCE: measured 1).
BATCH_TOLERANCE = 3


def run_bench(tmp_path: Path, *args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("OUT", None)
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.timeout(300)  # ~17 s alone; the machine's other work can make it several times that
def test_the_tiny_smoke_run_measures_every_variant_and_the_worker(tmp_path):
    done, results = run_bench(tmp_path)
    assert results["errors"] == [] and results["skipped"] == [], (results["errors"], results["skipped"])
    rows = {(r["variant"], r["batch"]): r for r in results["rows"]}
    eager = {"baseline", "prompt_cache", "device_pictures", "pinned_device", "tiny_vae", "exact", "all_eager"}  # cudnn: CUDA only
    # The worker runs at the batch the exact path measured fastest: on a busy CPU that can be 1.
    best = max((rows[("exact", b)] for b in (1, 2)), key=lambda r: r["pictures_per_s"]["median"])["batch"]
    assert set(rows) == {("naive", 1), ("worker", best)} | {(v, b) for v in eager for b in (1, 2)}
    for (variant, batch), row in rows.items():
        if variant == "worker":
            continue
        assert row["repeats"] == 2 and row["ms_per_picture"]["median"] > 0
        assert set(row["stages_ms_per_call"]) == STAGES
        assert row["sizes"] == ["64x64", "96x64"]  # mixed sizes, batched by size
    assert rows[("naive", 1)]["vs_naive"] == "reference"
    profiled = {key for key, row in rows.items() if "profile" in row}
    assert profiled == {("baseline", 1), ("exact", 1)}
    assert rows[("exact", 1)]["profile"]["aten_ops_per_call"] > 100 and "aten::" in rows[("exact", 1)]["profile"]["top_ops"]
    # The exact changes, alone and together, give plain diffusers' pictures for a job alone and
    # the batch tolerance in a batch; the text encoder does not run once the prompts are cached.
    for variant in ("baseline", "prompt_cache", "device_pictures", "pinned_device", "exact"):
        assert rows[(variant, 1)]["vs_naive"] == {"max_abs_delta": 0, "min_psnr_db": "inf", "pictures": 4}
        assert rows[(variant, 2)]["vs_naive"]["max_abs_delta"] <= BATCH_TOLERANCE
    assert rows[("exact", 1)]["stages_ms_per_call"]["text"] == 0 < rows[("baseline", 1)]["stages_ms_per_call"]["text"]
    assert rows[("tiny_vae", 2)]["random_weights_vae"] and rows[("tiny_vae", 2)]["vs_naive"]["max_abs_delta"] > 20
    worker = rows[("worker", best)]
    # --tiny gives the worker 8 jobs per picture of its batch (bench/gpu.py, worker_phase).
    assert worker["delivered"] == worker["jobs"] == 8 * best and not worker["stopped_at_budget"]
    assert 0 < worker["engine_busy_fraction"] <= 1 and worker["sizes"] == {"64x64": 8 * best}
    assert "| exact path: prompt cache + device pictures + device once (the default) | 2 |" in done.stdout  # the table


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_budget_stops_the_variants_and_the_json_is_still_written(tmp_path):
    """A budget that ends before the variants: each is said to be skipped, none half-measured;
    the child is refused its start; the run ends normally with its JSON."""
    done, results = run_bench(tmp_path, "--budget-s", "1", "--compile", "compile", "--compile-backend", "eager")
    assert results["rows"] == []
    skipped = " ".join(f"{s['what']}: {s['why']}" for s in results["skipped"])
    assert "the budget was reached" in skipped and "pipelined worker" in skipped and "[engine] compile" in skipped
    assert results["meta"]["total_s"] > 0 and "total" in done.stdout


def test_a_box_without_diffusers_is_told_so_in_one_sentence():
    hide = (
        "import runpy, sys; sys.modules['diffusers'] = None; sys.argv = ['bench/gpu.py', '--tiny']; "
        "runpy.run_path('bench/gpu.py', run_name='__main__')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", hide], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    message = done.stderr.strip()
    assert message.startswith("bench/gpu.py needs diffusers, which this Python") and "--wheels DIR" in message
    assert "\n" not in message and message.count(". ") == 0 and "Traceback" not in message


def test_wheels_from_an_empty_folder_are_refused_in_one_sentence(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--wheels", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1 and "there are no .whl files there" in done.stderr and "Traceback" not in done.stderr
