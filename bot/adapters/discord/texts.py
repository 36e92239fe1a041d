"""What the Discord front end says: its fixed texts, the status and result lines, and
DISCORD_STYLE (how bot/chat's texts are written here: Markdown, <t:…> timestamps, mentions).
Each text is an English msgid (bot/i18n.py): constants are said with `tr.gettext(CONSTANT)`; the
job's texts are said in the language saved with the job (reply["lang"])."""

from __future__ import annotations

from typing import Any

import discord

from bot.chat.surface import Style
from bot.chat.texts import duration, result_facts
from bot.commands import (
    MAX_STEPS,
    MAX_STRENGTH,
    MIN_STEPS,
    MIN_STRENGTH,
    STRENGTH_STEP,
    SWEEP_STRENGTHS,
    describe_strength,
)
from bot.core.types import JobView, Refused
from bot.i18n import N_, Text, Translator, translator

PLATFORM = "discord"
# Past this, the status says where the result will go once this message can't be edited any more.
LATE_NOTE_AFTER_S = 10 * 60
LATE_NOTE = N_("_This is taking a while: when it is ready I will post it in this channel and mention you._")
# Where the bot cannot post as itself (a user-installed app in a server without the bot, a DM
# between other people), the result can only come by DM.
LATE_NOTE_DM = N_("_This is taking a while: when it is ready I will send it to you by direct message._")
NOT_STARTED = N_("This request was not started.")
EXAMPLE = "/restyle image:(your picture) prompt:rainy night with neon signs strength:0.5"
STRENGTH_HINT = "0.2–0.3 subtle, 0.4–0.6 clear, 0.7–0.9 heavy"
BROKE = N_("Something went wrong on my side; please try again in a minute.")
MESSAGE_LIMIT = 2000  # Discord's message length

HELP = N_("""\
**Restyle a picture**
• `/restyle` — attach a picture, describe the new style, pick a strength:
  `{example}`
• Or pick a ready-made style in its `style` option (`/styles` lists them); words in `prompt` are added to it.
• Right-click (long-press) any message with a picture → **Apps → Restyle image**, then fill in the form.
• `/me` — your tier, today's count and your waiting jobs · `/cancel` — stop your waiting jobs.

**Strength** (how much of the picture changes, {min_strength} to {max_strength}):
  0.2–0.3 keeps the layout and nudges colours (subtle)
  0.4–0.6 clear new style, shapes kept (clear)
  0.7–0.9 heavy rework (heavy)
  `sweep: True` (in the form's strength: `sweep`) tries {sweep_strengths} at once, side by side \
(costs {sweep_count} restyles; not on every tier)
Optional: `seed` (same seed, same result), `steps` ({min_steps} to {max_steps}, capped by your tier).
In the form's prompt you may also add `seed=42`, `no="text, watermark"` or `format=webp`.

Under a result: **Again** (new seed), **Subtler** / **Stronger** (strength ∓{step}), \
**Try {sweep_count} strengths** (the same seed at each), and the result as a **PNG**, **WebP** or \
**JPEG** file. Under a sweep: **Keep** one to go on from it, or **Files** for all of them.""")


def help_text(tr: Translator) -> str:
    return tr.gettext(HELP).format(
        example=EXAMPLE, min_strength=MIN_STRENGTH, max_strength=MAX_STRENGTH,
        min_steps=MIN_STEPS, max_steps=MAX_STEPS, step=STRENGTH_STEP,
        sweep_strengths=", ".join(f"{s:g}" for s in SWEEP_STRENGTHS), sweep_count=len(SWEEP_STRENGTHS),
    )  # fmt: skip


def _stale_text(text: str, lang: str | None = None) -> str:
    """The last words of a status message the result did not replace (it went to a new message)."""
    if text.startswith("❌"):
        return text
    return translator(lang).gettext("✅ Done: the result is in a new message.")


def _refusal_text(refused: Refused, example: str = f"`{EXAMPLE}`") -> str:
    if refused.reason in ("command", "picture"):
        return refused.text + "\n" + translator(refused.lang).gettext("For example: {example}").format(example=example)
    return refused.text


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _status_what(job: JobView) -> str:
    tr = translator(job.reply.get("lang"))
    word = describe_strength(job.strength, tr)
    return f"“{_short(job.prompt, 200)}” · " + tr.gettext("strength {strength:g} ({word})").format(
        strength=job.strength, word=word
    )


def _status_text(job: JobView) -> str:
    tr = translator(job.reply.get("lang"))
    what = _status_what(job)
    if job.status == "running":
        done = max(0.0, min(1.0, job.progress or 0.0))
        bar = "▰" * round(done * 10) + "▱" * (10 - round(done * 10))
        return tr.gettext("🎨 Restyling… {bar} {percent}%").format(bar=bar, percent=int(done * 100)) + f"\n{what}"
    position = (job.position or 0) + 1
    if job.eta_s:
        queued = tr.gettext("⏳ Queued: #{place} in line — about {eta}").format(
            place=position, eta=duration(job.eta_s, tr)
        )
    else:
        queued = tr.gettext("⏳ Queued: #{place} in line").format(place=position)
    return f"{queued}\n{what}"


def _result_text(job: JobView) -> str:
    tr = translator(job.reply.get("lang"))
    facts = result_facts(job, tr)
    took = tr.gettext(" · {seconds:.1f} s").format(seconds=job.seconds) if job.seconds else ""
    return f"✨ “{_short(job.prompt, 300)}” · {facts}{took}"


def _member_named(platform: str, user_id: str, name: str) -> str:
    # A mention shows the member's name to the reader; the id is what /ban takes when pasted.
    return f"<@{user_id}> ({user_id})" if platform == PLATFORM else f"{platform}:{user_id}"


def _place(entry: dict[str, Any]) -> str | Text | None:
    if entry.get("platform") != PLATFORM:
        return None
    reply = entry.get("reply") or {}
    return f"<#{reply['channel_id']}>" if reply.get("guild_id") and reply.get("channel_id") else Text("a DM")


# Markdown; <t:…> timestamps show in each reader's own time zone.
DISCORD_STYLE: Style = Style(
    bold=lambda text: f"**{text}**",
    code=lambda text: f"`{text}`",
    date=lambda at: f"<t:{int(at)}:D>",
    moment=lambda at: f"<t:{int(at)}:f>",
    times_note="",
    member=_member_named,
    place=_place,
    queue_log_hint="`/queue show:log`",
    with_style=lambda name: f"`/restyle style:{name}`",
    text_limit=MESSAGE_LIMIT,
)


def _tr(interaction: discord.Interaction) -> Translator:
    """The member's Discord language (interaction.locale, e.g. es-ES), English where none fits."""
    return translator(interaction.locale.value)
