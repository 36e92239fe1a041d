"""What the bot says to members and admins, the same on every platform (styled by the surface)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.chat.surface import Style
from bot.commands import Recipe
from bot.config import TierSettings
from bot.core.types import JobView, MemberView

NOT_ADMIN = "Sorry, only the bot's admins can use /{command}."
NO_JOBS = "You have no jobs waiting or running."
QUEUE_IN_PRIVATE = "For members' privacy, use /queue in a private chat with me."
CANCELLED = "Cancelled."  # where a cancelled job's status was
CANCELLED_BY_COMMAND = "Cancelled with /cancel."
NO_LOG = "No jobs in the log."
JOB_GONE = "That job is gone; send the picture again with /restyle."
NOT_YOURS = "Only the member who asked for this picture can use its buttons."


def fit_lines(lines: list[str], limit: int) -> str:
    """Lines joined, cut at whole lines (with "...and N more lines") to fit one message."""
    out: list[str] = []
    for i, line in enumerate(lines):
        more = f"…and {len(lines) - i} more lines"
        if sum(len(x) + 1 for x in out) + len(line) + len(more) + 1 > limit:
            out.append(more)
            break
        out.append(line)
    return "\n".join(out)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def clip(text: str, n: int) -> str:
    """One line of at most n characters."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    return f"{seconds} s" if seconds < 90 else f"{round(seconds / 60)} min"


def progress(job: JobView) -> str:
    if job.status == "running":
        return f"restyling, {int((job.progress or 0) * 100)}%"
    eta = f", about {duration(job.eta_s)}" if job.eta_s else ""
    return f"queued, #{(job.position or 0) + 1} in line{eta}"


def held_result(seconds: float, tier: str, style: Style) -> str:
    """A finished result held back until the tier's minimum wait is over (the status message
    says it once, until the result arrives)."""
    return (
        f"Ready — it arrives in about {duration(seconds)} on the {tier} plan. "
        f"{style.code('/upgrade')} to get results as soon as they're done."
    )


def next_tier_gains(current: TierSettings, better: TierSettings) -> list[str]:
    """What moving from `current` up to `better` changes, in a member's words; only what differs."""
    gains = []
    if better.min_turnaround_s < current.min_turnaround_s:
        gains.append(f"results as soon as they are ready (now at least {current.min_turnaround_s:g} s)"
                     if better.min_turnaround_s == 0 else
                     f"results after {better.min_turnaround_s:g} s at the least (now {current.min_turnaround_s:g} s)")  # fmt: skip
    if better.rank > current.rank:
        gains.append(
            "a place in line ahead of " + ("free members" if current.name == "free" else f"{current.name} members")
        )
    if better.daily_quota > current.daily_quota:
        gains.append(f"{better.daily_quota} restyles a day (now {current.daily_quota})")
    if better.max_side > current.max_side:
        gains.append(f"pictures up to {better.max_side} px (now {current.max_side})")
    if better.max_queued > current.max_queued:
        gains.append(f"{better.max_queued} jobs at once (now {current.max_queued})")
    if better.max_steps > current.max_steps:
        gains.append(f"up to {better.max_steps} steps (now {current.max_steps})")
    if better.sweep and not current.sweep:
        gains.append("strength sweeps (strength=sweep: three strengths side by side)")
    return gains


def me(view: MemberView, style: Style, next_tier: tuple[TierSettings, TierSettings] | None = None) -> str:
    """/me; with `next_tier` (the member's tier and the one above it), what upgrading would change."""
    until = f", until {style.date(view.tier_expires_at)}" if view.tier_expires_at else ""
    left = max(0, view.daily_quota - view.used_today)
    lines = [
        f"Tier: {style.bold(view.tier)}{until}",
        f"Today: {view.used_today} of {view.daily_quota} restyles used, {left} left (the count restarts at midnight UTC)",
    ]
    if not view.active_jobs:
        lines.append(f"No jobs waiting (up to {view.max_queued} at once).")
    else:
        lines.append(f"Your jobs ({len(view.active_jobs)} of up to {view.max_queued} at once):")
        lines += [f"• “{clip(job.prompt, 60)}” — {progress(job)}" for job in view.active_jobs]
    if next_tier is not None:
        gains = next_tier_gains(*next_tier)
        if gains:
            lines.append(f"{style.bold(next_tier[1].name.capitalize())} would give: {'; '.join(gains)}. /upgrade")
    return fit_lines(lines, style.text_limit)


def styles(recipes: Iterable[Recipe], style: Style) -> str:
    """/styles: every recipe with its strength, and how to use one."""
    lines = [f"{style.bold('Styles')}: reply to a picture with {style.with_style('NAME')}; words you add go with the "
             f"recipe's, like {style.with_style('neon')} with a red umbrella"]  # fmt: skip
    for recipe in recipes:
        about = getattr(recipe, "about", None) or recipe.prompt
        lines.append(f"• {style.code(recipe.name)} (strength {recipe.strength:g}): {clip(about, 120)}")
    return fit_lines(lines, style.text_limit)


def cancelled(count: int) -> str:
    return f"Cancelled {plural(count, 'job')}." if count else NO_JOBS


def banned(who: str, reason: str, cancelled_jobs: int) -> str:
    return f"Banned {who}: {reason or 'no reason given'}. Cancelled {plural(cancelled_jobs, 'waiting job')}."


def unbanned(who: str) -> str:
    return f"Unbanned {who}; they can use the bot again."


def queue(
    lengths: dict[str, int], waiting: list[tuple[int, str, str, JobView | None]], now: float, style: Style
) -> str:
    """/queue for admins: jobs waiting per tier, then the first ones with who asked."""
    counts = " · ".join(f"{tier} {n}" for tier, n in lengths.items())
    if not waiting:
        return f"Nobody is waiting ({counts}).\n{style.queue_log_hint} lists the latest jobs."
    lines = [f"{style.bold('Waiting:')} {counts}"]
    for position, tier, job_id, job in waiting:
        who = (
            f" · {style.member(job.platform, job.user_id, '')} · waiting {duration(now - job.created_at)}"
            f" · “{clip(job.prompt, 60)}”"
            if job
            else ""
        )
        lines.append(f"#{position + 1} {tier} · job {style.code(job_id)}{who}")
    lines.append(f"{style.queue_log_hint} lists the latest jobs.")
    return fit_lines(lines, style.text_limit)


def job_log(entries: list[dict[str, Any]], style: Style) -> str:
    """/queue log for admins: the latest jobs, newest first: when, who, where, what, outcome."""
    if not entries:
        return NO_LOG
    latest = f"Latest {plural(len(entries), 'job')}"
    lines = [f"{style.bold(latest)}, newest first{style.times_note}:"]
    for entry in entries:
        outcome = entry["status"] + (f" ({clip(entry['error'], 60)})" if entry.get("error") else "")
        lines.append(
            f"{style.moment(entry['created_at'])} · {style.member(entry['platform'], entry['user_id'], '')} in "
            f"{style.place(entry) or _place(entry)} · “{clip(entry['prompt'], 60)}” · {outcome} · job {style.code(entry['id'])}"
        )
    return fit_lines(lines, style.text_limit)


def _place(entry: dict[str, Any]) -> str:
    """Where a job was asked for, said to an admin on any platform."""
    reply = entry.get("reply") or {}
    if reply.get("chat_id") is not None:  # Telegram
        return f"Telegram chat {reply['chat_id']}" if reply.get("group") else "a Telegram private chat"
    if reply.get("channel_id"):  # Discord
        guild = reply.get("guild_id")
        return f"Discord channel {reply['channel_id']} of server {guild}" if guild else "a Discord DM"
    return entry.get("platform") or "?"


# Compare: the original and the result side by side.
SIDE_BY_SIDE_BUTTON = "↔ Side by side"
SENDING_SIDE_BY_SIDE = "Sending the before and after…"
SIDE_BY_SIDE_CAPTION = "Before | after"
COMPARE_BUTTON = "Compare ↗"  # opens the web page's drag-to-compare view ([web] public_url)
RECIPE_BUTTONS_NOTE = (
    "Tap a style to copy its command, then send it as a reply to your picture (add your own words after it):"
)
