"""Upgrades: the plans on sale, Telegram Stars payloads and payments, refunds, Discord
entitlements and admins' grants (redeem codes and account links: bot.core.codes).

Every change of tier is written once (a payment per charge id, a code once) and re-ranks the
member's waiting jobs (Jobs.rerank_member)."""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

from bot.clock import Clock
from bot.config import Config, PlanSettings, is_admin
from bot.core import texts
from bot.core.jobs import Jobs
from bot.core.types import Member, MemberView, PaymentResult, Reason, Refused, UpgradeInfo, when
from bot.i18n import translator
from bot.metrics import ServiceMetrics
from bot.moderation import BANNED
from bot.store import Store
from bot.upgrades import (
    DAY_S,
    MAX_GRANT_DAYS,
    PlanView,
    extended,
    is_active,
    looks_like_payload,
    payload_key,
    payload_keys,
    plan_for_sku,
    plan_view,
    plans_on,
    read_payload,
    reverted,
    sign_payload,
    tier_perks,
    tiers_by_rank,
)

log = logging.getLogger("bot.core.billing")


class Billing:
    def __init__(self, config: Config, store: Store, clock: Clock, jobs: Jobs, metrics: ServiceMetrics) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.jobs = jobs
        self.metrics = metrics

    @functools.cached_property
    def _payload_key(self) -> bytes:
        return payload_key(self.config, self.store.data_dir)

    async def plans_for(self, member: Member) -> UpgradeInfo:
        """What /upgrade shows: the member's tier and expiry, the plans on sale on their app and
        every tier's perks (also when no plan is configured)."""
        view = await self.jobs.me(member)
        free = self.config.tiers["free"]
        tr = translator(member.lang)
        return UpgradeInfo(
            tier=view.tier,
            tier_expires_at=view.tier_expires_at,
            plans=plans_on(self.config, member.platform, tr),
            tiers=[(t.name, tier_perks(t, free, tr)) for t in tiers_by_rank(self.config)],
        )

    async def current(self, member: Member) -> tuple[int, str, float | None]:
        now = self.clock.now()
        account = await self.store.account_for(member.platform, member.user_id, now, member.name)
        tier = account.effective_tier(now)
        return account.id, tier, account.tier_expires_at if tier != "free" else None

    def _plan(self, name: str) -> PlanSettings | None:
        return self.config.plans.get(name)

    def downgrade_refusal(self, current: str, expiry: float | None, wanted: str, lang: str | None = None) -> Refused:
        tr = translator(lang)
        if expiry:
            message = tr.gettext(texts.HAS_BETTER_UNTIL)
        else:
            message = tr.gettext(texts.HAS_BETTER)
        return Refused(Reason.DOWNGRADE, message.format(tier=current, date=when(expiry, lang), wanted=wanted))

    async def invoice_payload(self, member: Member, plan_name: str) -> tuple[PlanView, str] | Refused:
        """A signed payload for a Telegram invoice of this plan, made for this member only."""
        plan = self._plan(plan_name)
        tr = translator(member.lang)
        if plan is None or plan.stars is None:
            return Refused(Reason.NOT_FOUND, tr.gettext(texts.PLAN_GONE))
        account_id, tier, expiry = await self.current(member)
        if await self.store.is_banned(account_id):
            return Refused(Reason.BANNED, tr.gettext(BANNED))
        if extended(self.config, tier, expiry, plan.tier, plan.days, self.clock.now()) is None:
            return self.downgrade_refusal(tier, expiry, plan.tier, member.lang)
        return plan_view(self.config, plan, tr), sign_payload(self._payload_key, member.key, plan.name)

    @functools.cached_property
    def _payload_keys(self) -> list[bytes]:
        return payload_keys(self.config, self.store.data_dir)

    def _plan_of_payload(self, member: Member, payload: str) -> PlanSettings | None:
        name = read_payload(self._payload_keys, payload, member.key)
        return self._plan(name) if name else None

    def _payload_problem(self, member: Member, payload: str) -> str:
        """Why a payload gives no plan for this member: "other_member" (signed by this bot's
        format, but not for them), "plan_gone" (theirs, for a plan no longer configured) or
        "unreadable"."""
        if read_payload(self._payload_keys, payload, member.key) is not None:
            return "plan_gone"
        return "other_member" if looks_like_payload(payload) else "unreadable"

    async def check_pre_checkout(
        self, member: Member, payload: str, amount: int, currency: str = "XTR"
    ) -> Refused | None:
        """Telegram's last question before it takes the Stars (answer within 10 s): None to go
        ahead, else why not (Telegram shows the message to the member)."""
        plan = self._plan_of_payload(member, payload)
        tr = translator(member.lang)
        if plan is None:
            if self._payload_problem(member, payload) == "other_member":
                return Refused(Reason.NOT_YOURS, tr.gettext(texts.INVOICE_NOT_YOURS))
            return Refused(Reason.PAYLOAD, tr.gettext(texts.INVOICE_INVALID))
        if currency != "XTR" or amount != plan.stars:
            return Refused(Reason.PRICE, tr.gettext(texts.PRICE_CHANGED))
        account_id, tier, expiry = await self.current(member)
        if await self.store.is_banned(account_id):
            return Refused(Reason.BANNED, tr.gettext(BANNED))
        if extended(self.config, tier, expiry, plan.tier, plan.days, self.clock.now()) is None:
            return self.downgrade_refusal(tier, expiry, plan.tier, member.lang)
        return None

    async def record_payment(
        self,
        member: Member,
        payload: str,
        charge_id: str,
        amount: int,
        *,
        currency: str = "XTR",
        subscription_expiry: float | None = None,
        recurring: bool = False,
        source: str = "telegram-stars",
    ) -> PaymentResult | Refused:
        """A payment went through: extend the tier, once per charge id (a replayed update, or a
        renewal seen twice, changes nothing the second time)."""
        now = self.clock.now()
        charge_key = f"{source}:{charge_id}"
        known = await self.store.payment(charge_key)
        if known is not None:
            self.metrics.payments.labels(source=source, outcome="duplicate").inc()
            return PaymentResult(await self.jobs.me(member), duplicate=True, plan=known["plan"])
        plan = self._plan_of_payload(member, payload)
        account_id, tier, expiry = await self.current(member)
        problem = None if plan is None else await self._price_problem(account_id, plan, amount, currency, recurring)
        if plan is None:
            problem = self._payload_problem(member, payload)
        if problem is not None:
            self.metrics.payments.labels(source=source, outcome="held").inc()
            return await self._hold_payment(member, account_id, charge_key, charge_id, problem, {
                "payload": payload, "plan": plan.name if plan else None, "amount": amount, "currency": currency,
                "expected": plan.stars if plan else None, "recurring": recurring,
            }, now)  # fmt: skip
        assert plan is not None
        new = extended(self.config, tier, expiry, plan.tier, plan.days, now)
        if new is None:
            # A lower tier paid while a higher one runs (the pre-checkout refuses such a purchase,
            # but a subscription renewal cannot be refused): the member paid for the time, so it
            # is added to the tier they hold. A higher tier without an end has nothing to extend.
            new = (tier, None if expiry is None else expiry + plan.days * 86400)
        recorded = await self.store.record_payment(
            {
                "charge_id": charge_key, "platform": member.platform, "platform_user_id": member.user_id,
                "account_id": account_id, "plan": plan.name, "tier": new[0], "amount": amount, "currency": currency,
                "prev_tier": tier, "prev_expires_at": expiry, "expires_at": new[1],
                "subscription_expires_at": subscription_expiry, "status": "paid", "at": now,
            },
            reason="payment",
            changed_by=charge_key,
            now=now,
        )  # fmt: skip
        if not recorded:
            self.metrics.payments.labels(source=source, outcome="duplicate").inc()
            return PaymentResult(await self.jobs.me(member), duplicate=True, plan=plan.name)
        log.info("%s paid %d %s for %s (%s): %s until %s", member.key, amount, currency, plan.name,
                 "renewal" if recurring else "new", new[0], when(new[1]))  # fmt: skip
        await self.jobs.rerank_member(account_id, self.config.tier(new[0]))
        self.metrics.payments.labels(source=source, outcome="paid").inc()
        return PaymentResult(await self.jobs.me(member), duplicate=False, plan=plan.name)

    async def _price_problem(
        self, account_id: int, plan: PlanSettings, amount: int, currency: str, recurring: bool
    ) -> str | None:
        """None when a payment is what its plan costs. The pre-checkout already checked it;
        this is the second lock. A renewal may also cost what this member paid for the plan
        before: a subscription keeps the price it was started at when the admin changes it."""
        if currency == "XTR" and amount == plan.stars:
            return None
        if recurring and await self.store.paid_before(account_id, plan.name, amount, currency):
            return None
        return "price"

    async def _hold_payment(
        self,
        member: Member,
        account_id: int,
        charge_key: str,
        charge_id: str,
        problem: str,
        detail: dict[str, Any],
        now: float,
    ) -> Refused:
        """A payment that arrived but buys nothing as it stands: the tier is left alone, and it is
        written down (admin_actions, once per charge id) so that an admin can refund or grant by
        hand; it is never only a log line."""
        first = await self.store.record_payment_problem(charge_key, account_id, problem, detail, now)
        if first:
            log.error("payment %s from %s held, tier not changed (%s: %s); refund it or grant by hand",
                      charge_key, member.key, problem, detail)  # fmt: skip
        tr = translator(member.lang)
        why = texts.PAYMENT_PROBLEMS[problem]
        return Refused(
            Reason.PAYMENT_HELD,
            tr.gettext(texts.PAYMENT_HELD).format(why=tr.gettext(why), charge=charge_id),
            quiet=not first,
        )

    async def payment_to_refund(self, admin: Member, charge_id: str) -> dict[str, Any] | Refused:
        """For an admin's /refund: the payment (platform, platform_user_id, amount ...) before
        the platform is asked to give the money back."""
        tr = translator(admin.lang)
        if not is_admin(self.config, admin.platform, admin.user_id):
            return Refused(Reason.NOT_ADMIN, tr.gettext(texts.NOT_ADMIN))
        for key in (charge_id, f"telegram-stars:{charge_id}"):
            row = await self.store.payment(key)
            if row is not None:
                break
        else:
            return Refused(Reason.NOT_FOUND, tr.gettext(texts.NO_SUCH_PAYMENT).format(charge=charge_id))
        if row["status"] == "refunded":
            return Refused(Reason.REFUNDED, tr.gettext(texts.REFUNDED_ALREADY).format(charge=charge_id))
        return row

    async def refund(self, admin: Member, charge_id: str) -> MemberView | Refused:
        """Revert the tier a payment bought (after the platform gave the money back)."""
        row = await self.payment_to_refund(admin, charge_id)
        if isinstance(row, Refused):
            return row
        return await self._revert_payment(row, admin.key, charge_id, admin.lang)

    async def refunded_elsewhere(self, member: Member, charge_key: str) -> MemberView | None:
        """The platform says a payment was refunded (Telegram's refunded_payment: by its support,
        or after our own /refund): take back the time it bought, once. None: not a payment of
        this member's, or reverted already."""
        row = await self.store.payment(charge_key)
        if row is None or row["status"] == "refunded":
            return None
        if (row["platform"], row["platform_user_id"]) != (member.platform, member.user_id):
            log.warning("%s: a refund notice for %s, a payment of another member; ignored", member.key, charge_key)
            return None
        result = await self._revert_payment(row, f"{member.platform}-refund", charge_key)
        return None if isinstance(result, Refused) else result

    async def _revert_payment(
        self, row: dict[str, Any], changed_by: str, charge_id: str, lang: str | None = None
    ) -> MemberView | Refused:
        now = self.clock.now()
        account = await self.store.account(row["account_id"])
        tier = account.effective_tier(now)
        new = reverted((tier, account.tier_expires_at if tier != "free" else None), row, now)
        if not await self.store.refund_payment(row["charge_id"], new[0], new[1], changed_by=changed_by, now=now):
            return Refused(Reason.REFUNDED, translator(lang).gettext(texts.REFUNDED_ALREADY).format(charge=charge_id))
        log.info("%s refunded %s: %s is now %s until %s", changed_by, row["charge_id"], row["platform_user_id"],
                 new[0], when(new[1]))  # fmt: skip
        await self.jobs.rerank_member(row["account_id"], self.config.tier(new[0]))
        return await self.jobs.me(Member(row["platform"], row["platform_user_id"]))

    async def apply_entitlement(
        self,
        member: Member,
        entitlement_id: str,
        sku_id: int,
        ends_at: float | None,
        *,
        deleted: bool = False,
        open_ended: bool = False,
    ) -> MemberView | None:
        """A Discord entitlement appeared, ended or was deleted. Idempotent: the same entitlement
        seen again (on every interaction) writes nothing. None: not one of our SKUs.

        `open_ended`: a subscription (or a test entitlement for one). Since Discord's 2024
        entitlement migration a live subscription entitlement has no `ends_at` ("granted
        indefinitely") and ENTITLEMENT_UPDATE comes only when it ends, so the tier it gives lasts
        until Discord ends it, not for the plan's days. A one-time purchase gives the plan's days."""
        plan = plan_for_sku(self.config, sku_id)
        if plan is None:
            return None
        now = self.clock.now()
        charge_key = f"discord-entitlement:{entitlement_id}"
        row = await self.store.payment(charge_key)
        if deleted or (ends_at is not None and ends_at <= now):
            # DELETE: refunded or removed by Discord; an end in the past: the subscription ended.
            if row is not None and row["status"] == "paid":
                await self._take_back_entitlement(row, now, reason="refund" if deleted else "discord-entitlement-ended")
            return await self.jobs.me(member)
        account_id, tier, expiry = await self.current(member)
        if row is None:
            until: float | None = ends_at if ends_at is not None or open_ended else now + plan.days * DAY_S
            new: tuple[str, float | None]
            if tier == plan.tier:
                new = (tier, None if expiry is None or until is None else max(expiry, until))
            elif extended(self.config, tier, expiry, plan.tier, 0, now) is None:
                new = (tier, expiry)  # a higher tier runs: keep it
            else:
                new = (plan.tier, until)
            await self.store.record_payment(
                {
                    "charge_id": charge_key, "platform": "discord", "platform_user_id": member.user_id,
                    "account_id": account_id, "plan": plan.name, "tier": new[0], "amount": 0, "currency": "SKU",
                    "prev_tier": tier, "prev_expires_at": expiry, "expires_at": new[1],
                    "subscription_expires_at": ends_at, "status": "paid", "at": now,
                },
                reason="discord-entitlement",
                changed_by=charge_key,
                now=now,
            )  # fmt: skip
            await self.jobs.rerank_member(account_id, self.config.tier(new[0]))
            return await self.jobs.me(member)
        if (
            row["status"] == "paid"
            and ends_at is not None
            and tier == plan.tier
            and ((expiry is not None and ends_at > expiry) or (expiry is None and row["expires_at"] is None))
        ):
            # the end moved on (a renewal of an entitlement that had one), or an open-ended
            # subscription now has an end still to come: the tier runs until then, or longer where
            # the same tier ran before it for longer (what it ran on comes back)
            until = ends_at
            if (
                expiry is None
                and row["prev_tier"] == plan.tier
                and is_active(row["prev_tier"], row["prev_expires_at"], now)
            ):
                until = None if row["prev_expires_at"] is None else max(ends_at, row["prev_expires_at"])
            await self.store.set_payment_expiry(charge_key, until)
            return await self.jobs.set_tier(
                member, plan.tier, until, reason="discord-entitlement", changed_by=charge_key
            )
        return await self.jobs.me(member)

    async def _take_back_entitlement(self, row: dict[str, Any], now: float, *, reason: str) -> None:
        """End what a Discord entitlement gave, once (the payment row is then no longer 'paid')."""
        account = await self.store.account(row["account_id"])
        tier = account.effective_tier(now)
        current = (tier, account.tier_expires_at if tier != "free" else None)
        if row["expires_at"] is None and tier == row["tier"] and current[1] is None:
            # an open-ended subscription ran: what ran before it comes back if still running
            prev = (row["prev_tier"], row["prev_expires_at"])
            new = prev if is_active(prev[0], prev[1], now) else ("free", None)
        else:
            new = reverted(current, row, now)
        charge_key = row["charge_id"]
        if await self.store.refund_payment(charge_key, new[0], new[1], changed_by=charge_key, now=now, reason=reason):
            await self.jobs.rerank_member(row["account_id"], self.config.tier(new[0]))

    async def end_discord_entitlement(self, entitlement_id: str) -> None:
        """Discord no longer lists the entitlement (it ended or was deleted while the bot was down)."""
        row = await self.store.payment(f"discord-entitlement:{entitlement_id}")
        if row is not None and row["status"] == "paid":
            await self._take_back_entitlement(row, self.clock.now(), reason="discord-entitlement-ended")

    async def discord_entitlements_in_force(self) -> list[tuple[str, str]]:
        """(entitlement id, member's user id) of every Discord entitlement still giving a tier: at
        start the adapter ends those Discord no longer lists (ended or deleted while it was down)."""
        return await self.store.paid_charges("discord-entitlement:")

    async def grant(self, admin: Member, target: Member, tier: str, days: float) -> MemberView | Refused:
        """Admin: give `tier` for `days` (0: without an end), extending the same tier."""
        tr = translator(admin.lang)
        if not is_admin(self.config, admin.platform, admin.user_id):
            return Refused(Reason.NOT_ADMIN, tr.gettext(texts.NOT_ADMIN))
        if tier not in self.config.tiers:
            message = tr.gettext(texts.UNKNOWN_TIER)
            return Refused(Reason.COMMAND, message.format(tier=repr(tier), tiers=", ".join(self.config.tiers)))
        if tier == "free":
            return await self.revoke(admin, target)
        if (
            isinstance(days, bool)
            or not isinstance(days, (int, float))
            or not math.isfinite(days)
            or not (0 <= days <= MAX_GRANT_DAYS)
        ):
            message = tr.gettext(texts.BAD_DAYS)
            return Refused(Reason.COMMAND, message.format(most=MAX_GRANT_DAYS))
        _, current, expiry = await self.current(target)
        if days == 0:
            expires = None
        else:
            new = extended(self.config, current, expiry, tier, days, self.clock.now())
            expires = new[1] if new is not None else self.clock.now() + days * DAY_S
        log.info("%s granted %s to %s until %s", admin.key, tier, target.key, when(expires))
        return await self.jobs.set_tier(target, tier, expires, reason="admin", changed_by=admin.key)

    async def revoke(self, admin: Member, target: Member) -> MemberView | Refused:
        """Admin: back to free, now."""
        if not is_admin(self.config, admin.platform, admin.user_id):
            return Refused(Reason.NOT_ADMIN, translator(admin.lang).gettext(texts.NOT_ADMIN))
        log.info("%s revoked the tier of %s", admin.key, target.key)
        return await self.jobs.set_tier(target, "free", None, reason="admin", changed_by=admin.key)
