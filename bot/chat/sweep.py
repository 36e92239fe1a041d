"""A strength sweep in the chat, the same on every platform: its status line, the caption of its
3-up picture, and its buttons' labels ("Try 3 strengths" under a result, "Keep 0.5" under a
sweep, the three files on request). Front ends add only their platform's markup."""

from __future__ import annotations

from bot.chat.texts import clip, duration
from bot.commands import SWEEP_STRENGTHS, describe_strength
from bot.core.types import JobView, SweepDelivery

TRY_SWEEP_BUTTON = f"🎚 Try {len(SWEEP_STRENGTHS)} strengths"
SWEEP_FILES_BUTTON = "📁 Files"
SENDING_SWEEP_FILES = "Sending the results as files…"
SWEEP_GONE = "That sweep is gone; send the picture again with /restyle strength=sweep."


def keep_label(strength: float) -> str:
    return f"Keep {strength:g}"


def sweep_status(job: JobView) -> str:
    """The one status line of a sweep, from any of its jobs' views (they share sweep_ended)."""
    what = f"Trying {job.sweep_size} strengths"
    if job.sweep_ended:
        what += f": {job.sweep_ended} of {job.sweep_size} done"
    if job.status == "queued":
        eta = f", about {duration(job.eta_s)}" if job.eta_s else ""
        return f"{what} — queued, #{(job.position or 0) + 1} in line{eta}"
    if job.status == "running":
        return f"{what} — restyling {job.strength:g}, {int((job.progress or 0) * 100)}%"
    return what


def sweep_caption(sweep: SweepDelivery, limit: int) -> str:
    """Under the 3-up picture: the prompt, each strength with what it does (or why it is
    missing), the shared seed, and what to do next; cut to `limit` characters."""
    lead = sweep.jobs[0]
    parts = []
    for job in sweep.jobs:
        if job.status == "done":
            parts.append(f"{job.strength:g} {describe_strength(job.strength)}")
        elif job.status == "cancelled":
            parts.append(f"{job.strength:g} cancelled")
        else:
            parts.append(f"{job.strength:g} failed" + (f" ({clip(job.error, 60)})" if job.error else ""))
    facts = f"{' · '.join(parts)} · seed {lead.seed}"
    advice = "Keep the one you like to go on from it."
    room = limit - len(facts) - len(advice) - 6
    prompt = clip(lead.prompt, max(1, room))
    return f"“{prompt}”\n{facts}\n{advice}"[:limit]


def keep_choices(sweep: SweepDelivery) -> list[tuple[str, str]]:
    """(job id, button label) for each result a member can keep, in strength order."""
    return [(job.id, keep_label(job.strength)) for job in sweep.done]
