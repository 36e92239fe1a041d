"""Discord: /upgrade [code] with Discord's premium purchase buttons, entitlements that set and
end the tier, /link [code] and the admins' /grant and /revoke.

Installed by bot/adapters/discord/adapter.py. Purchases are Discord's own: a plan with a `discord_sku`
shows a premium button (`discord.ui.Button(sku_id=...)`); buying creates an entitlement, which
arrives as an ENTITLEMENT_CREATE event and again with every interaction of that member
(`interaction.entitlements`). Both go to the service, which is idempotent about them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager

import discord
from discord import app_commands, ui

from bot.core.types import Member, MemberView, Refused, UpgradeInfo
from bot.i18n import N_, Translator, translator
from bot.service import RestyleService
from bot.upgrades import PlanView, plan_for_sku

log = logging.getLogger("bot.discord")

SEEN_LIMIT = 10_000  # entitlements remembered as applied; beyond it the oldest is forgotten
ENGLISH = translator(None)
NO_PAYMENTS = N_("The admin has not set up payments for this bot, so upgrades are not on sale here.")
LINKED = N_("Linked: both apps share one account now.")
CODE_ACCEPTED = N_("Code accepted.")


def _tier_is(view: MemberView | UpgradeInfo, tr: Translator) -> str:
    """ "You are on the **pro** tier until <date>." (Discord shows the date in the reader's time zone)."""
    tier = f"**{view.tier}**"
    if view.tier == "free":
        return tr.gettext("You are on the {tier} tier.").format(tier=tier)
    if view.tier_expires_at:
        return tr.gettext("You are on the {tier} tier until {date}.").format(
            tier=tier, date=f"<t:{int(view.tier_expires_at)}:D>"
        )
    return tr.gettext("You are on the {tier} tier with no end date.").format(tier=tier)


def upgrade_text(info: UpgradeInfo, tr: Translator = ENGLISH) -> str:
    lines = [_tier_is(info, tr), ""]
    for name, perks in info.tiers:
        lines.append(f"**{name}**: {', '.join(perks)}")
    lines.append("")
    if info.plans:
        plans = "; ".join(p.title_in(tr) for p in info.plans)
        lines.append(tr.gettext("Plans: {plans}. Buy one with a button below.").format(plans=plans))
    else:
        lines.append(tr.gettext(NO_PAYMENTS))
    lines.append(tr.gettext("Have a code? Use `/upgrade code:YOUR-CODE`."))
    return "\n".join(lines)


def changed_text(view: MemberView, what: str, tr: Translator = ENGLISH) -> str:
    return f"{what} {_tier_is(view, tr)}"


def premium_view(info: UpgradeInfo, unusable: frozenset[int] | set[int] = frozenset()) -> ui.View | None:
    skus = [p.discord_sku for p in info.plans if p.discord_sku is not None and p.discord_sku not in unusable]
    if not skus:
        return None
    view = ui.View(timeout=None)
    for sku in skus[:25]:
        view.add_item(ui.Button(style=discord.ButtonStyle.premium, sku_id=sku))
    return view


class DiscordUpgrades:
    """/upgrade, /link, /grant, /revoke and entitlement events: a sub-router the adapter
    installs on its client. It never imports the adapter; what it needs comes in as arguments."""

    def __init__(
        self,
        service: RestyleService,
        member_of: Callable[[discord.abc.User], Member],
        defer_private: Callable[[discord.Interaction], Awaitable[None]],
        handling: Callable[[], AbstractContextManager[None]],
    ) -> None:
        self.service = service
        self.member_of = member_of
        self.defer_private = defer_private
        self.handling = handling
        self._seen: dict[int, tuple[int | None, bool]] = {}  # entitlement id -> (ends_at, deleted) applied
        self.sku_types: dict[int, discord.SKUType] = {}  # the application's SKUs, fetched at start
        self.unusable_skus: set[int] = set()  # configured SKU ids Discord would refuse on a premium button

    def install(self, client: discord.Client, tree: app_commands.CommandTree) -> None:
        # discord.Client calls on_<event> attributes; these add to what the client class defines.
        client.on_entitlement_create = self.on_entitlement  # type: ignore[attr-defined]  # an on_<event> handler: see above
        client.on_entitlement_update = self.on_entitlement  # type: ignore[attr-defined]  # an on_<event> handler: see above
        client.on_entitlement_delete = self.on_entitlement_delete  # type: ignore[attr-defined]  # an on_<event> handler: see above
        client.on_interaction = self.on_interaction  # type: ignore[attr-defined]  # an on_<event> handler: see above
        self.add_commands(tree)

    # Entitlements ------------------------------------------------------------------------------

    async def _apply(self, entitlement: discord.Entitlement, *, deleted: bool = False) -> MemberView | None:
        if entitlement.user_id is None:
            return None  # a server subscription: tiers belong to members
        ends = entitlement.ends_at.timestamp() if entitlement.ends_at else None
        state = (int(ends) if ends else None, deleted or entitlement.deleted)
        if self._seen.get(entitlement.id) == state:
            return None  # seen with every interaction: nothing new
        sku_type = self.sku_types.get(entitlement.sku_id)
        view = await self.service.billing.apply_entitlement(
            Member("discord", str(entitlement.user_id)), str(entitlement.id), entitlement.sku_id, ends,
            deleted=deleted or entitlement.deleted, open_ended=self._is_subscription(entitlement),
        )  # fmt: skip
        if len(self._seen) >= SEEN_LIMIT:
            self._seen.pop(next(iter(self._seen)))  # the oldest: seeing it again only costs a lookup
        self._seen[entitlement.id] = state
        if view is not None and sku_type is discord.SKUType.consumable and not entitlement.consumed and not state[1]:
            # applied (once: the payment row is keyed by the entitlement): use it up, so that
            # Discord lets the member buy it again
            await entitlement.consume()
        return view

    def _is_subscription(self, entitlement: discord.Entitlement) -> bool:
        """A subscription entitlement lasts until Discord ends it. Test entitlements (type 4) carry
        no type of their own: the SKU's type says, or the plan when the SKUs could not be fetched."""
        if entitlement.type is discord.EntitlementType.application_subscription:
            return True
        sku_type = self.sku_types.get(entitlement.sku_id)
        if sku_type is not None:
            return sku_type is discord.SKUType.subscription
        plan = plan_for_sku(self.service.config, entitlement.sku_id)
        return plan is not None and plan.subscription

    async def reconcile(self, client: discord.Client) -> None:
        """At start: check the configured SKUs, then catch up with what happened to entitlements
        while the bot was down (purchases, and ends or deletions, which no event replays)."""
        await self.check_skus(client)
        try:
            in_force = await self.service.billing.discord_entitlements_in_force()  # before listing: a purchase
            # arriving while this runs is applied by its event and not ended below
            live = [e async for e in client.entitlements(limit=None, exclude_ended=True)]
        except Exception as exc:
            log.error(
                "could not list the Discord entitlements (%r); ends while the bot was down are not caught up", exc
            )
            return
        live_ids = set()
        for entitlement in live:
            live_ids.add(str(entitlement.id))
            await self.on_entitlement(entitlement)
        ended = [(eid, uid) for eid, uid in in_force if eid not in live_ids]
        for entitlement_id, user_id in ended:
            try:
                await self.service.billing.end_discord_entitlement(entitlement_id)
                log.info("entitlement %s for discord:%s ended while the bot was down", entitlement_id, user_id)
            except Exception:
                log.exception("could not end entitlement %s", entitlement_id)
        log.info("entitlements reconciled: %d live, %d ended while the bot was down", len(live), len(ended))

    async def check_skus(self, client: discord.Client) -> None:
        plans = [(p, p.discord_sku) for p in self.service.config.plans.values() if p.discord_sku is not None]
        if not plans:
            return
        try:
            skus = {sku.id: sku for sku in await client.fetch_skus()}
        except Exception as exc:
            log.error("could not fetch the application's SKUs (%r); premium buttons are not checked", exc)
            return
        self.sku_types = {sku_id: sku.type for sku_id, sku in skus.items()}
        for plan, sku_id in plans:
            sku = skus.get(sku_id)
            problem = None
            if sku is None:
                problem = "is not an SKU of this application (Developer Portal > Monetization > SKUs lists them)"
            elif sku.type is discord.SKUType.subscription_group:
                problem = "is a subscription group; use the id of the subscription SKU in it"
            elif plan.subscription and sku.type is not discord.SKUType.subscription:
                problem = f"is a {sku.type.name} SKU, but the plan is a subscription"
            elif not sku.flags.available:
                problem = "is not published yet"
            if problem:
                self.unusable_skus.add(sku_id)
                log.error(
                    "[plans.%s] discord_sku %s %s: /upgrade leaves its button out", plan.name, plan.discord_sku, problem
                )

    async def on_entitlement(self, entitlement: discord.Entitlement) -> None:
        try:
            view = await self._apply(entitlement)
            if view is not None:
                log.info("entitlement %s for discord:%s: %s", entitlement.id, entitlement.user_id, view.tier)
        except Exception:
            log.exception("could not apply entitlement %s", entitlement.id)

    async def on_entitlement_delete(self, entitlement: discord.Entitlement) -> None:
        try:
            await self._apply(entitlement, deleted=True)
        except Exception:
            log.exception("could not end entitlement %s", entitlement.id)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        for entitlement in getattr(interaction, "entitlements", None) or []:
            if entitlement.user_id is not None and entitlement.user_id == interaction.user.id:
                await self.on_entitlement(entitlement)

    # Commands ----------------------------------------------------------------------------------

    def add_commands(self, tree: app_commands.CommandTree) -> None:
        upgrades = self

        @tree.command(name="upgrade", description=N_("Plans, perks and your tier; or redeem a code"))
        @app_commands.describe(code=N_("A redeem code, like RS-ABCD-EFGH-JKMN"))
        async def upgrade(interaction: discord.Interaction, code: app_commands.Range[str, 1, 64] | None = None) -> None:
            with upgrades.handling():
                await upgrades.on_upgrade(interaction, code)

        @tree.command(name="link", description=N_("Share your tier with the bot on Telegram"))
        @app_commands.describe(code=N_("The code /link gave you on the other app; leave out to get one"))
        async def link(interaction: discord.Interaction, code: app_commands.Range[str, 1, 32] | None = None) -> None:
            with upgrades.handling():
                await upgrades.on_link(interaction, code)

        @tree.command(name="grant", description=N_("Admins: give a member a tier"))
        @app_commands.describe(member=N_("The member"), tier=N_("pro or max"), days=N_("How long (0: no end)"))
        @app_commands.default_permissions(administrator=True)
        @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
        @app_commands.allowed_installs(guilds=True, users=False)
        async def grant(
            interaction: discord.Interaction, member: discord.User, tier: str, days: app_commands.Range[int, 0, 3650]
        ) -> None:
            with upgrades.handling():
                await upgrades.on_grant(interaction, member, tier, days)

        @tree.command(name="revoke", description=N_("Admins: put a member back on the free tier"))
        @app_commands.describe(member=N_("The member"))
        @app_commands.default_permissions(administrator=True)
        @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
        @app_commands.allowed_installs(guilds=True, users=False)
        async def revoke(interaction: discord.Interaction, member: discord.User) -> None:
            with upgrades.handling():
                await upgrades.on_revoke(interaction, member)

    def _asker(self, interaction: discord.Interaction) -> Member:
        """Who gave the command, in their Discord language (the interaction's locale)."""
        return dataclasses.replace(self.member_of(interaction.user), lang=interaction.locale.value)

    async def _send(self, interaction: discord.Interaction, text: str, view: ui.View | None = None,
                    plans: list[PlanView] | None = None) -> None:  # fmt: skip
        """The answer, as the follow-up to the private defer each command starts with."""
        try:
            if view is not None:
                try:
                    await interaction.followup.send(text, ephemeral=True, view=view)
                    return
                except discord.HTTPException as exc:
                    if exc.status != 400:
                        raise
                    # A premium button Discord refused (an SKU the start-up check could not see):
                    # the member still gets the plans and the code hint, and the buttons are left
                    # out from now on, so the log says it once.
                    shown = [
                        p for p in plans or [] if p.discord_sku is not None and p.discord_sku not in self.unusable_skus
                    ]
                    self.unusable_skus.update(p.discord_sku for p in shown if p.discord_sku is not None)
                    log.error("Discord refused the premium button of %s (%s): check the SKU ids in the Developer Portal"
                              " > Monetization > SKUs; /upgrade answers without them until the bot restarts",
                              ", ".join(f"[plans.{p.name}] discord_sku {p.discord_sku}" for p in shown) or "a plan", exc)  # fmt: skip
            await interaction.followup.send(text, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not answer %s: %s", interaction.user, exc)

    async def on_upgrade(self, interaction: discord.Interaction, code: str | None) -> None:
        await self.defer_private(interaction)
        member = self._asker(interaction)
        tr = translator(member.lang)
        if code:
            result = await self.service.codes.redeem(member, code)
            await self._send(
                interaction,
                result.text if isinstance(result, Refused) else changed_text(result, tr.gettext(CODE_ACCEPTED), tr),
            )
            return
        info = await self.service.billing.plans_for(member)
        await self._send(interaction, upgrade_text(info, tr), premium_view(info, self.unusable_skus), info.plans)

    async def on_link(self, interaction: discord.Interaction, code: str | None) -> None:
        await self.defer_private(interaction)
        member = self._asker(interaction)
        tr = translator(member.lang)
        if code:
            result = await self.service.codes.link_finish(member, code)
            text = result.text if isinstance(result, Refused) else changed_text(result, tr.gettext(LINKED), tr)
            await self._send(interaction, text)
            return
        started = await self.service.codes.link_start(member)
        if isinstance(started, Refused):
            await self._send(interaction, started.text)
            return
        code, ttl = started
        await self._send(
            interaction,
            tr.gettext("Your link code: `{code}` (only you can see this). Send `/link {code}` to the bot on the other "
                       "app (Telegram) within {minutes} minutes; both will then share your tier, its expiry and your "
                       "daily restyles.").format(code=code, minutes=int(ttl // 60)),
        )  # fmt: skip

    async def on_grant(self, interaction: discord.Interaction, user: discord.abc.User, tier: str, days: int) -> None:
        await self.defer_private(interaction)
        admin = self._asker(interaction)
        result = await self.service.billing.grant(admin, self.member_of(user), tier.strip().lower(), days)
        await self._send(
            interaction,
            result.text
            if isinstance(result, Refused)
            else changed_text(result, f"{user.name}:", translator(admin.lang)),
        )

    async def on_revoke(self, interaction: discord.Interaction, user: discord.abc.User) -> None:
        await self.defer_private(interaction)
        admin = self._asker(interaction)
        result = await self.service.billing.revoke(admin, self.member_of(user))
        await self._send(
            interaction,
            result.text
            if isinstance(result, Refused)
            else changed_text(result, f"{user.name}:", translator(admin.lang)),
        )
