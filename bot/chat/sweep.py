"""A strength sweep in the chat, the same on every platform: its status line, the caption of its
3-up picture, and its buttons' labels ("Try 3 strengths" under a result, "Keep 0.5" under a
sweep, the three files on request). Front ends add only their platform's markup. Each text is
an English msgid (bot/i18n.py): the constants are said with `tr.gettext(...)` (TRY_SWEEP_BUTTON
with its {count}), the functions take the member's translator (English without)."""

from __future__ import annotations

from bot.chat.texts import clip, duration
from bot.commands import SWEEP_STRENGTHS, describe_strength
from bot.core.types import JobView, Reason, Refused, SweepDelivery
from bot.i18n import N_, Translator, translator

ENGLISH = translator(None)
TRY_SWEEP_TEMPLATE = N_("🎚 Try {count} strengths")
TRY_SWEEP_BUTTON = TRY_SWEEP_TEMPLATE.format(count=len(SWEEP_STRENGTHS))
SWEEP_FILES_BUTTON = N_("📁 Files")
SENDING_SWEEP_FILES = N_("Sending the results as files…")
SWEEP_GONE = N_("That sweep is gone; send the picture again with /restyle strength=sweep.")


def try_sweep_button(tr: Translator = ENGLISH) -> str:
    return tr.gettext(TRY_SWEEP_TEMPLATE).format(count=len(SWEEP_STRENGTHS))


def sweep_file_name(strength: float, extension: str) -> str:
    """A sweep's result as a file, named by its strength: restyle-0.5.png."""
    return f"restyle-{strength:g}.{extension}"


def sweep_refusal(refused: Refused, lang: str | None) -> str:
    """A sweep's button refused: a sweep no longer kept says how to run one again."""
    if refused.reason == Reason.NOT_FOUND:
        return translator(lang).gettext(SWEEP_GONE)
    return refused.text


def keep_label(strength: float, tr: Translator = ENGLISH) -> str:
    return tr.gettext("Keep {strength:g}").format(strength=strength)


def sweep_status(job: JobView, tr: Translator | None = None) -> str:
    """The one status line of a sweep, from any of its jobs' views (they share sweep_ended);
    in the job's member's language unless `tr` says otherwise."""
    tr = tr or translator(job.reply.get("lang"))
    what = tr.gettext("Trying {count} strengths").format(count=job.sweep_size)
    if job.sweep_ended:
        what += tr.gettext(": {ended} of {count} done").format(ended=job.sweep_ended, count=job.sweep_size)
    place = (job.position or 0) + 1
    if job.status == "queued":
        if job.eta_s:
            return tr.gettext("{what} — queued, #{place} in line, about {eta}").format(
                what=what, place=place, eta=duration(job.eta_s, tr)
            )
        return tr.gettext("{what} — queued, #{place} in line").format(what=what, place=place)
    if job.status == "running":
        return tr.gettext("{what} — restyling {strength:g}, {percent}%").format(
            what=what, strength=job.strength, percent=int((job.progress or 0) * 100)
        )
    return what


def sweep_caption(sweep: SweepDelivery, limit: int, tr: Translator | None = None) -> str:
    """Under the 3-up picture: the prompt, each strength with what it does (or why it is
    missing), the shared seed, and what to do next; cut to `limit` characters."""
    lead = sweep.jobs[0]
    tr = tr or translator(lead.reply.get("lang"))
    parts = []
    for job in sweep.jobs:
        if job.status == "done":
            parts.append(f"{job.strength:g} {describe_strength(job.strength, tr)}")
        elif job.status == "cancelled":
            parts.append(tr.gettext("{strength:g} cancelled").format(strength=job.strength))
        elif job.error:
            parts.append(tr.gettext("{strength:g} failed ({error})")
                         .format(strength=job.strength, error=clip(tr.gettext(job.error), 60)))  # fmt: skip
        else:
            parts.append(tr.gettext("{strength:g} failed").format(strength=job.strength))
    facts = " · ".join(parts) + " · " + tr.gettext("seed {seed}").format(seed=lead.seed)
    advice = tr.gettext("Keep the one you like to go on from it.")
    room = limit - len(facts) - len(advice) - 6
    prompt = clip(lead.prompt, max(1, room))
    return f"“{prompt}”\n{facts}\n{advice}"[:limit]


def keep_choices(sweep: SweepDelivery, tr: Translator | None = None) -> list[tuple[str, str]]:
    """(job id, button label) for each result a member can keep, in strength order."""
    tr = tr or translator(sweep.jobs[0].reply.get("lang"))
    return [(job.id, keep_label(job.strength, tr)) for job in sweep.done]
