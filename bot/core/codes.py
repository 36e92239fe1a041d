"""Redeem codes (minted by the admin CLI) and account links between apps, behind one guess
counter kept in the database (a restart or another front end sees the same count)."""

from __future__ import annotations

import logging

from bot.clock import Clock, utc_day
from bot.config import Config
from bot.core import texts
from bot.core.billing import Billing
from bot.core.jobs import Jobs
from bot.core.types import Member, MemberView, Reason, Refused, when
from bot.i18n import Translator, translator
from bot.moderation import BANNED
from bot.store import Store
from bot.upgrades import (
    DAY_S,
    GUESS_LIMIT,
    GUESS_WINDOW_S,
    LINK_CODE_TTL_S,
    code_hash,
    extended,
    merged,
    new_link_code,
    new_redeem_code,
)

log = logging.getLogger("bot.core.codes")


class Codes:
    def __init__(self, config: Config, store: Store, clock: Clock, jobs: Jobs, billing: Billing) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.jobs = jobs
        self.billing = billing

    async def _count_guess(self, member: Member) -> Refused | None:
        """Count a code attempt before the code is looked up, in the database: attempts that
        arrive together cannot all pass a check made before any of them is counted, and a
        restart or another front end sees the same count. A right code is forgiven after."""
        now = self.clock.now()
        tries, window_start = await self.store.count_guess(member.key, now, GUESS_WINDOW_S)
        if tries <= GUESS_LIMIT:
            return None
        wait = window_start + GUESS_WINDOW_S - now
        log.info("%s tried a code past the limit (%d attempts this window)", member.key, tries)
        message = translator(member.lang).gettext(texts.TOO_MANY_GUESSES)
        return Refused(Reason.GUESSING, message.format(minutes=int(wait // 60) + 1))

    async def redeem(self, member: Member, code: str) -> MemberView | Refused:
        """Spend a redeem code minted with `python -m bot codes mint`."""
        refused = await self._count_guess(member)
        if refused is not None:
            return refused
        now = self.clock.now()
        row = await self.store.code(code_hash(code))
        # Each refusal here was counted as a wrong guess already.
        if row is None:
            return Refused(Reason.BAD_CODE, _tr(member).gettext(texts.BAD_CODE))
        if row["used_at"] is not None:
            return Refused(Reason.USED_CODE, _tr(member).gettext(texts.USED_CODE))
        if row["valid_until"] <= now:
            message = _tr(member).gettext(texts.EXPIRED_CODE)
            return Refused(Reason.EXPIRED_CODE, message.format(date=when(row["valid_until"], member.lang)))
        await self.store.forgive_guess(member.key)
        account_id, tier, expiry = await self.billing.current(member)
        if await self.store.is_banned(account_id):
            return Refused(Reason.BANNED, _tr(member).gettext(BANNED))
        new = extended(self.config, tier, expiry, row["tier"], row["days"], now)
        if new is None:
            return self.billing.downgrade_refusal(tier, expiry, row["tier"], member.lang)
        if not await self.store.use_code(row["hash"], account_id, new[0], new[1], changed_by=member.key, now=now):
            return Refused(Reason.USED_CODE, _tr(member).gettext(texts.USED_CODE))
        log.info("%s redeemed a %s code: %s until %s", member.key, row["tier"], new[0], when(new[1]))
        await self.jobs.rerank_member(account_id, self.config.tier(new[0]))
        return await self.jobs.me(member)

    async def mint_codes(self, tier: str, days: int, count: int, valid_days: float = 90.0) -> list[str]:
        """New single-use redeem codes (for the admin CLI); only their hashes are stored."""
        if tier not in self.config.tiers or tier == "free":
            raise ValueError(f"tier must be one of {', '.join(t for t in self.config.tiers if t != 'free')}")
        now = self.clock.now()
        codes = [new_redeem_code() for _ in range(count)]
        await self.store.add_codes([code_hash(c) for c in codes], tier, days, now + valid_days * DAY_S, now)
        return codes

    async def link_start(self, member: Member) -> tuple[str, float] | Refused:
        """A code (and its lifetime in seconds) that `/link CODE` on another app accepts."""
        now = self.clock.now()
        account = await self.store.account_for(member.platform, member.user_id, now, member.name)
        if await self.store.is_banned(account.id):
            return Refused(Reason.BANNED, _tr(member).gettext(BANNED))
        code = new_link_code()
        await self.store.add_link_code(code_hash(code), account.id, member.platform, now + LINK_CODE_TTL_S, now)
        return code, LINK_CODE_TTL_S

    async def link_finish(self, member: Member, code: str) -> MemberView | Refused:
        """Join this identity to the account that made `code`: one tier, expiry and quota."""
        refused = await self._count_guess(member)
        if refused is not None:
            return refused
        now = self.clock.now()
        row = await self.store.link_code(code_hash(code))
        if row is None or row["expires_at"] <= now:
            return Refused(Reason.BAD_CODE, _tr(member).gettext(texts.BAD_LINK_CODE))
        mine = await self.store.account_for(member.platform, member.user_id, now, member.name)
        keep = row["account_id"]
        if mine.id == keep:
            await self.store.forgive_guess(member.key)  # the member's own code
            return Refused(Reason.LINKED, _tr(member).gettext(texts.LINKED_ALREADY))
        if any(p == member.platform for p, _ in await self.store.identities(keep)):
            message = _tr(member).gettext(texts.LINK_FROM_SAME_PLATFORM)
            return Refused(Reason.LINKED, message.format(platform=member.platform))
        # A live code from the other app: the member holds it, so it was no guess. (One made on
        # this app stays counted: a guesser must not learn codes here to use them there.)
        await self.store.forgive_guess(member.key)
        if await self.store.is_banned(mine.id) or await self.store.is_banned(keep):
            return Refused(Reason.BANNED, _tr(member).gettext(BANNED))
        if await self.store.member_active_jobs(mine.id):
            return Refused(Reason.BUSY, _tr(member).gettext(texts.LINK_WHILE_BUSY))
        other = await self.store.account(keep)
        new = merged(self.config, (mine.tier, mine.tier_expires_at), (other.tier, other.tier_expires_at), now)
        await self.store.merge_accounts(
            keep, mine.id, row["hash"], tier=new[0], expires_at=new[1], day=utc_day(now), changed_by=member.key, now=now
        )
        log.info("%s linked to account %d (%s)", member.key, keep, new[0])
        await self.jobs.rerank_member(keep, self.config.tier(new[0]))
        return await self.jobs.me(member)


def _tr(member: Member) -> Translator:
    return translator(member.lang)
