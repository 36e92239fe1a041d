"""What the bot says to members and admins, the same on every platform (styled by the surface),
in the member's language: each text is an English msgid (bot/i18n.py); the constants are said
with `tr.gettext(CONSTANT)`, the functions take the member's translator `tr` (English without)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.chat.surface import Style
from bot.commands import Recipe, describe_strength
from bot.config import TierSettings
from bot.core.types import JobView, MemberView
from bot.i18n import N_, Text, Translator, translator

ENGLISH = translator(None)
NOT_ADMIN = N_("Sorry, only the bot's admins can use /{command}.")
NO_JOBS = N_("You have no jobs waiting or running.")
QUEUE_IN_PRIVATE = N_("For members' privacy, use /queue in a private chat with me.")
CANCELLED = N_("Cancelled.")  # where a cancelled job's status was
CANCELLED_BY_COMMAND = N_("Cancelled with /cancel.")
NO_LOG = N_("No jobs in the log.")


def fit_lines(lines: list[str], limit: int, tr: Translator = ENGLISH) -> str:
    """Lines joined, cut at whole lines (with "...and N more lines") to fit one message."""
    out: list[str] = []
    for i, line in enumerate(lines):
        left = len(lines) - i
        more = tr.ngettext("…and {count} more line", "…and {count} more lines", left).format(count=left)
        if sum(len(x) + 1 for x in out) + len(line) + len(more) + 1 > limit:
            out.append(more)
            break
        out.append(line)
    return "\n".join(out)


def clip(text: str, n: int) -> str:
    """One line of at most n characters."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def duration(seconds: float, tr: Translator = ENGLISH) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return tr.gettext("{seconds} s").format(seconds=seconds)
    return tr.gettext("{minutes} min").format(minutes=round(seconds / 60))


def progress(job: JobView, tr: Translator = ENGLISH) -> str:
    if job.status == "running":
        return tr.gettext("restyling, {percent}%").format(percent=int((job.progress or 0) * 100))
    place = (job.position or 0) + 1
    if job.eta_s:
        return tr.gettext("queued, #{place} in line, about {eta}").format(place=place, eta=duration(job.eta_s, tr))
    return tr.gettext("queued, #{place} in line").format(place=place)


def result_facts(job: JobView, tr: Translator) -> str:
    """A result's settings, the same under it on every platform, so a member can repeat it."""
    return tr.ngettext(
        "strength {strength:g} ({word}) · seed {seed} · {count} step",
        "strength {strength:g} ({word}) · seed {seed} · {count} steps",
        job.steps,
    ).format(strength=job.strength, word=describe_strength(job.strength, tr), seed=job.seed, count=job.steps)


def held_result(seconds: float, tier: str, style: Style, tr: Translator = ENGLISH) -> str:
    """A finished result held back until the tier's minimum wait is over (the status message
    says it once, until the result arrives)."""
    return tr.gettext(
        "Ready — it arrives in about {wait} on the {tier} plan. {upgrade} to get results as soon as they're done."
    ).format(wait=duration(seconds, tr), tier=tier, upgrade=style.code("/upgrade"))


def next_tier_gains(current: TierSettings, better: TierSettings, tr: Translator = ENGLISH) -> list[str]:
    """What moving from `current` up to `better` changes, in a member's words; only what differs."""
    gains = []
    if better.min_turnaround_s < current.min_turnaround_s:
        if better.min_turnaround_s == 0:
            gains.append(tr.gettext("results as soon as they are ready (now at least {now:g} s)")
                         .format(now=current.min_turnaround_s))  # fmt: skip
        else:
            gains.append(tr.gettext("results after {better:g} s at the least (now {now:g} s)")
                         .format(better=better.min_turnaround_s, now=current.min_turnaround_s))  # fmt: skip
    if better.rank > current.rank:
        if current.name == "free":
            gains.append(tr.gettext("a place in line ahead of free members"))
        else:
            gains.append(tr.gettext("a place in line ahead of {tier} members").format(tier=current.name))
    if better.daily_quota > current.daily_quota:
        gains.append(tr.ngettext("{count} restyle a day (now {now})", "{count} restyles a day (now {now})",
                                 better.daily_quota).format(count=better.daily_quota, now=current.daily_quota))  # fmt: skip
    if better.max_side > current.max_side:
        gains.append(
            tr.gettext("pictures up to {side} px (now {now})").format(side=better.max_side, now=current.max_side)
        )
    if better.max_queued > current.max_queued:
        gains.append(tr.ngettext("{count} job at once (now {now})", "{count} jobs at once (now {now})",
                                 better.max_queued).format(count=better.max_queued, now=current.max_queued))  # fmt: skip
    if better.max_steps > current.max_steps:
        gains.append(
            tr.gettext("up to {steps} steps (now {now})").format(steps=better.max_steps, now=current.max_steps)
        )
    if better.sweep and not current.sweep:
        gains.append(tr.gettext("strength sweeps (strength=sweep: three strengths side by side)"))
    return gains


def me(
    view: MemberView,
    style: Style,
    next_tier: tuple[TierSettings, TierSettings] | None = None,
    tr: Translator = ENGLISH,
) -> str:
    """/me; with `next_tier` (the member's tier and the one above it), what upgrading would change."""
    left = max(0, view.daily_quota - view.used_today)
    tier = style.bold(view.tier)
    if view.tier_expires_at:
        lines = [tr.gettext("Tier: {tier}, until {date}").format(tier=tier, date=style.date(view.tier_expires_at))]
    else:
        lines = [tr.gettext("Tier: {tier}").format(tier=tier)]
    lines.append(
        tr.ngettext(
            "Today: {used} of {count} restyle used, {left} left (the count restarts at midnight UTC)",
            "Today: {used} of {count} restyles used, {left} left (the count restarts at midnight UTC)",
            view.daily_quota,
        ).format(used=view.used_today, count=view.daily_quota, left=left)
    )
    if not view.active_jobs:
        lines.append(tr.gettext("No jobs waiting (up to {most} at once).").format(most=view.max_queued))
    else:
        lines.append(tr.gettext("Your jobs ({count} of up to {most} at once):")
                     .format(count=len(view.active_jobs), most=view.max_queued))  # fmt: skip
        lines += [f"• “{clip(job.prompt, 60)}” — {progress(job, tr)}" for job in view.active_jobs]
    if next_tier is not None:
        gains = next_tier_gains(*next_tier, tr)
        if gains:
            lines.append(tr.gettext("{tier} would give: {gains}. /upgrade")
                         .format(tier=style.bold(next_tier[1].name.capitalize()), gains="; ".join(gains)))  # fmt: skip
    return fit_lines(lines, style.text_limit, tr)


def styles(recipes: Iterable[Recipe], style: Style, tr: Translator = ENGLISH) -> str:
    """/styles: every recipe with its strength, and how to use one."""
    lines = [tr.gettext("{styles}: reply to a picture with {command}; words you add go with the recipe's, "
                        "like {example} with a red umbrella")
             .format(styles=style.bold(tr.gettext("Styles")), command=style.with_style("NAME"),
                     example=style.with_style("neon"))]  # fmt: skip
    for recipe in recipes:
        about = getattr(recipe, "about", None) or recipe.prompt
        lines.append(tr.gettext("• {name} (strength {strength:g}): {about}")
                     .format(name=style.code(recipe.name), strength=recipe.strength, about=clip(about, 120)))  # fmt: skip
    return fit_lines(lines, style.text_limit, tr)


def cancelled(count: int, tr: Translator = ENGLISH) -> str:
    if not count:
        return tr.gettext(NO_JOBS)
    return tr.ngettext("Cancelled {count} job.", "Cancelled {count} jobs.", count).format(count=count)


def banned(who: str, reason: str, cancelled_jobs: int, tr: Translator = ENGLISH) -> str:
    return tr.ngettext(
        "Banned {who}: {reason}. Cancelled {count} waiting job.",
        "Banned {who}: {reason}. Cancelled {count} waiting jobs.",
        cancelled_jobs,
    ).format(who=who, reason=reason or tr.gettext("no reason given"), count=cancelled_jobs)


def unbanned(who: str, tr: Translator = ENGLISH) -> str:
    return tr.gettext("Unbanned {who}; they can use the bot again.").format(who=who)


def queue(
    lengths: dict[str, int],
    waiting: list[tuple[int, str, str, JobView | None]],
    now: float,
    style: Style,
    tr: Translator = ENGLISH,
) -> str:
    """/queue for admins: jobs waiting per tier, then the first ones with who asked."""
    counts = " · ".join(f"{tier} {n}" for tier, n in lengths.items())
    hint = tr.gettext("{command} lists the latest jobs.").format(command=style.queue_log_hint)
    if not waiting:
        return tr.gettext("Nobody is waiting ({counts}).").format(counts=counts) + "\n" + hint
    lines = [f"{style.bold(tr.gettext('Waiting:'))} {counts}"]
    for position, tier, job_id, job in waiting:
        line = tr.gettext("#{place} {tier} · job {job}").format(place=position + 1, tier=tier, job=style.code(job_id))
        if job:
            line += tr.gettext(" · {member} · waiting {wait} · “{prompt}”").format(
                member=style.member(job.platform, job.user_id, ""),
                wait=duration(now - job.created_at, tr),
                prompt=clip(job.prompt, 60),
            )
        lines.append(line)
    lines.append(hint)
    return fit_lines(lines, style.text_limit, tr)


def job_log(entries: list[dict[str, Any]], style: Style, tr: Translator = ENGLISH) -> str:
    """/queue log for admins: the latest jobs, newest first: when, who, where, what, outcome."""
    if not entries:
        return tr.gettext(NO_LOG)
    latest = tr.ngettext("Latest {count} job", "Latest {count} jobs", len(entries)).format(count=len(entries))
    # times_note is a msgid ("" for none: gettext("") would be the catalogue's header)
    note = tr.gettext(style.times_note) if style.times_note else ""
    lines = [tr.gettext("{latest}, newest first{note}:").format(latest=style.bold(latest), note=note)]
    for entry in entries:
        # The error is the stored English sentence: a known one is said in the admin's language.
        error = f" ({clip(tr.gettext(entry['error']), 60)})" if entry.get("error") else ""
        outcome = job_status(entry["status"], tr) + error
        place = style.place(entry)
        lines.append(
            tr.gettext("{when} · {member} in {place} · “{prompt}” · {outcome} · job {job}").format(
                when=style.moment(entry["created_at"]),
                member=style.member(entry["platform"], entry["user_id"], ""),
                place=(place.render(tr) if isinstance(place, Text) else place) or _place(entry, tr),
                prompt=clip(entry["prompt"], 60),
                outcome=outcome,
                job=style.code(entry["id"]),
            )
        )
    return fit_lines(lines, style.text_limit, tr)


def job_status(status: str, tr: Translator = ENGLISH) -> str:
    """A job's status (the jobs table's word) in the admin's language; English as stored."""
    words = {
        "queued": tr.pgettext("job status", "queued"),
        "running": tr.pgettext("job status", "running"),
        "done": tr.pgettext("job status", "done"),
        "failed": tr.pgettext("job status", "failed"),
        "cancelled": tr.pgettext("job status", "cancelled"),
    }
    return words.get(status, status)


def _place(entry: dict[str, Any], tr: Translator = ENGLISH) -> str:
    """Where a job was asked for, said to an admin on any platform."""
    reply = entry.get("reply") or {}
    if reply.get("chat_id") is not None:  # Telegram
        if reply.get("group"):
            return tr.gettext("Telegram chat {chat}").format(chat=reply["chat_id"])
        return tr.gettext("a Telegram private chat")
    if reply.get("channel_id"):  # Discord
        guild = reply.get("guild_id")
        if guild:
            return tr.gettext("Discord channel {channel} of server {guild}").format(
                channel=reply["channel_id"], guild=guild
            )
        return tr.gettext("a Discord DM")
    return entry.get("platform") or "?"


# Compare: the original and the result side by side.
SIDE_BY_SIDE_BUTTON = N_("↔ Side by side")
SENDING_SIDE_BY_SIDE = N_("Sending the before and after…")
SIDE_BY_SIDE_CAPTION = N_("Before | after")
COMPARE_BUTTON = N_("Compare ↗")  # opens the web page's drag-to-compare view ([web] public_url)
RECIPE_BUTTONS_NOTE = N_(
    "Tap a style to copy its command, then send it as a reply to your picture (add your own words after it):"
)
