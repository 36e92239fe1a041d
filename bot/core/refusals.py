"""What a member is told when their tier's limits refuse a request: sweeps, steps, the waiting
jobs and the day's quota. Each says the limit in plain words and whether a higher tier helps."""

from __future__ import annotations

from collections.abc import Mapping

from bot.config import TierSettings
from bot.core.types import Reason, Refused
from bot.i18n import Translator, translator


def _below_top(tiers: Mapping[str, TierSettings], tier: TierSettings) -> bool:
    return tier.name != max(tiers.values(), key=lambda t: t.rank).name


def steps(tiers: Mapping[str, TierSettings], tier: TierSettings, lang: str | None) -> Refused:
    return Refused(
        Reason.STEPS,
        translator(lang)
        .gettext("The {tier} tier allows up to {steps} steps; use steps={steps} or fewer.")
        .format(tier=tier.name, steps=tier.max_steps),
        upgrade_hint=_below_top(tiers, tier),
        lang=lang,
    )


def sweep(tiers: Mapping[str, TierSettings], tier: TierSettings, lang: str | None) -> Refused:
    tr: Translator = translator(lang)
    higher = [t for t in tiers.values() if t.rank > tier.rank and t.sweep]
    allowed = min(higher, key=lambda t: t.rank).name if higher else None
    message = tr.gettext("The {tier} tier cannot run strength sweeps; pick one strength, like strength=0.5.")
    message = message.format(tier=tier.name)
    if allowed is not None:
        message += " " + tr.gettext("The {tier} tier runs them.").format(tier=allowed)
    return Refused(Reason.SWEEP, message, upgrade_hint=allowed is not None, lang=lang)


def queue_limit(
    tiers: Mapping[str, TierSettings], tier: TierSettings, lang: str | None, count: int = 1, active: int = 0
) -> Refused:
    tr: Translator = translator(lang)
    if count > 1:
        return Refused(
            Reason.QUEUE_LIMIT,
            tr.ngettext(
                "A sweep runs {count} jobs at once, and the {tier} tier allows {most} waiting; you have {active} "
                "waiting already. Wait for them to finish, /cancel one, or ask for one strength.",
                "A sweep runs {count} jobs at once, and the {tier} tier allows {most} waiting; you have {active} "
                "waiting already. Wait for them to finish, /cancel one, or ask for one strength.",
                count,
            ).format(count=count, tier=tier.name, most=tier.max_queued, active=active),
            upgrade_hint=_below_top(tiers, tier),
            lang=lang,
        )
    return Refused(
        Reason.QUEUE_LIMIT,
        tr.ngettext(
            "You already have {count} job waiting, the most the {tier} tier allows. "
            "Wait for it to finish, or /cancel it.",
            "You already have {count} jobs waiting, the most the {tier} tier allows. "
            "Wait for one to finish, or /cancel one.",
            tier.max_queued,
        ).format(count=tier.max_queued, tier=tier.name),
        upgrade_hint=_below_top(tiers, tier),
        lang=lang,
    )


def quota(
    tiers: Mapping[str, TierSettings], tier: TierSettings, lang: str | None, count: int = 1, used: int = 0
) -> Refused:
    tr: Translator = translator(lang)
    left = max(0, tier.daily_quota - used)
    if count > 1 and left > 0:
        return Refused(
            Reason.QUOTA,
            tr.ngettext(
                "A sweep runs {count} jobs; you have {left} of your {quota} restyles left today. "
                "Ask for one strength instead, or sweep again after midnight UTC.",
                "A sweep runs {count} jobs; you have {left} of your {quota} restyles left today. "
                "Ask for one strength instead, or sweep again after midnight UTC.",
                count,
            ).format(count=count, left=left, quota=tier.daily_quota),
            upgrade_hint=_below_top(tiers, tier),
            lang=lang,
        )
    return Refused(
        Reason.QUOTA,
        tr.ngettext(
            "You have used your {count} restyle of the {tier} tier today. The count starts again at midnight UTC.",
            "You have used all {count} restyles of the {tier} tier today. The count starts again at midnight UTC.",
            tier.daily_quota,
        ).format(count=tier.daily_quota, tier=tier.name),
        upgrade_hint=_below_top(tiers, tier),
        lang=lang,
    )


def first_limit(
    tiers: Mapping[str, TierSettings],
    tier: TierSettings,
    lang: str | None,
    *,
    wants_sweep: bool,
    steps_asked: int,
    count: int,
    active: int,
    used: int,
) -> Refused | None:
    """The first of the tier's limits a request of `count` jobs would pass, in the order a member
    can act on them (a sweep, the steps, the waiting jobs, the day's quota); None if none."""
    if wants_sweep and not tier.sweep:
        return sweep(tiers, tier, lang)
    if steps_asked > tier.max_steps:
        return steps(tiers, tier, lang)
    if active + count > tier.max_queued:
        return queue_limit(tiers, tier, lang, count, active)
    if used + count > tier.daily_quota:
        return quota(tiers, tier, lang, count, used)
    return None
