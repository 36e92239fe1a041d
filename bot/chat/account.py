"""A member's own commands: /me, /cancel and /styles."""

from __future__ import annotations

from collections.abc import Mapping

from bot.chat import texts
from bot.chat.surface import CommandSurface
from bot.commands import Recipe
from bot.core.types import Member
from bot.i18n import translator
from bot.service import RestyleService


async def me(service: RestyleService, member: Member, where: CommandSurface) -> None:
    view = await service.jobs.me(member)
    tiers = sorted(service.config.tiers.values(), key=lambda tier: tier.rank)
    current = service.config.tier(view.tier)
    above = [tier for tier in tiers if tier.rank > current.rank]
    await where.reply(texts.me(view, where.style, (current, above[0]) if above else None, translator(member.lang)))


async def cancel(service: RestyleService, member: Member, where: CommandSurface) -> None:
    """Every waiting or running job of the member's: the answer first (it is what they wait
    for), then each job's status message ends."""
    cancelled = await service.jobs.cancel(member)
    tr = translator(member.lang)
    await where.reply(texts.cancelled(len(cancelled), tr))
    for job_id in cancelled:
        await where.finish_status(job_id, texts.CANCELLED_BY_COMMAND)


async def styles(recipes: Mapping[str, Recipe], where: CommandSurface, lang: str | None = None) -> None:
    await where.reply(texts.styles(recipes.values(), where.style, translator(lang)))
