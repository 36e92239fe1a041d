"""The sweep's words, written once for every platform (bot/chat/sweep.py)."""

from __future__ import annotations

from dataclasses import replace

from bot.chat.sweep import keep_choices, sweep_caption, sweep_status
from bot.core.types import JobView, SweepDelivery


def view(job_id: str, strength: float, status: str = "done", **changes) -> JobView:
    base = JobView(
        id=job_id, platform="telegram", user_id="1", reply={}, prompt="rainy night with neon signs",
        negative_prompt=None, strength=strength, seed=42, steps=20, output_format=None, tier="pro",
        status=status, width=64, height=64, created_at=0.0, sweep_id="a", sweep_size=3,
    )  # fmt: skip
    return replace(base, **changes)


def sweep_of(*jobs: JobView) -> SweepDelivery:
    return SweepDelivery("a", list(jobs), b"in", {j.id: b"out" for j in jobs if j.status == "done"}, b"sheet")


def test_a_sweeps_status_says_how_many_strengths_are_done_and_where_the_next_one_is():
    assert sweep_status(view("a", 0.3, "queued", position=1, eta_s=30)) == (
        "Trying 3 strengths — queued, #2 in line, about 30 s"
    )
    running = view("b", 0.5, "running", progress=0.4, sweep_ended=1)
    assert sweep_status(running) == "Trying 3 strengths: 1 of 3 done — restyling 0.5, 40%"


def test_a_sweeps_caption_names_each_strength_and_the_one_that_failed():
    caption = sweep_caption(
        sweep_of(view("a", 0.3), view("b", 0.5), view("c", 0.7, "failed", error="The engine ran out of memory.")),
        1024,
    )
    assert caption.startswith("“rainy night with neon signs”\n")
    assert "0.3 subtle · 0.5 clear · 0.7 failed (The engine ran out of memory.) · seed 42" in caption
    assert caption.endswith("Keep the one you like to go on from it.")


def test_a_long_prompt_is_cut_so_the_caption_fits_and_keeps_its_strengths():
    caption = sweep_caption(sweep_of(replace(view("a", 0.3), prompt="word " * 400), view("b", 0.5)), 200)
    assert len(caption) <= 200 and "0.3 subtle · 0.5 clear" in caption


def test_only_finished_results_can_be_kept():
    choices = keep_choices(sweep_of(view("a", 0.3), view("b", 0.5, "cancelled"), view("c", 0.7)))
    assert choices == [("a", "Keep 0.3"), ("c", "Keep 0.7")]
