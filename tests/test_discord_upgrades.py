"""Discord upgrades on the fake gateway: /upgrade with premium buttons, ENTITLEMENT_CREATE /
UPDATE / DELETE and the entitlements on every interaction, codes, /link, /grant and /revoke."""

from __future__ import annotations

import asyncio

import pytest

from bot.service import Member
from tests.test_discord import USER, OTHER, callbacks, ephemerals, h  # noqa: F401  (h is a fixture)

pytestmark = pytest.mark.timeout(30)

DAY = 86400.0
SKU = 1300000000000000001
PLANS = f"""
[plans.pro_month]
tier = "pro"
days = 30
stars = 250
subscription = true
discord_sku = {SKU}
[plans.max_week]
tier = "max"
days = 7
stars = 150
"""
ADMIN = 9001
ME = Member("discord", str(USER))


async def eventually(check, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def last_ephemeral(h, count: int) -> str:
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) >= count, what=f"{count} ephemeral answers")
    return ephemerals(h.fake)[-1]


async def test_upgrade_shows_plans_with_the_premium_button(h):
    await h.start(PLANS)
    await h.fake.slash("upgrade", {})
    text = await last_ephemeral(h, 1)
    assert "You are on the **free** tier." in text and "priority in the queue" in text and "Pro · month" in text
    [call] = callbacks(h.fake, 4)
    components = [c for row in call.json["data"]["components"] for c in row["components"]]
    assert components == [{"type": 2, "style": 6, "sku_id": str(SKU)}] or (
        [(c["type"], c["style"], str(c["sku_id"])) for c in components] == [(2, 6, str(SKU))]
    )


async def test_upgrade_without_plans_says_so_and_redeems_codes(h):
    await h.start()
    await h.fake.slash("upgrade", {})
    assert "has not set up payments" in await last_ephemeral(h, 1)
    assert "components" not in callbacks(h.fake, 4)[0].json["data"] or not callbacks(h.fake, 4)[0].json["data"]["components"]
    [code] = await h.service.mint_codes("max", 7, 1)
    await h.fake.slash("upgrade", {"code": code})
    assert "Code accepted. You are on the **max** tier until" in await last_ephemeral(h, 2)
    await h.fake.slash("upgrade", {"code": code}, user_id=OTHER)
    assert "already been used" in await last_ephemeral(h, 3)


async def test_entitlement_events_set_renew_and_end_the_tier(h):
    await h.start(PLANS)
    now = h.clock.now()
    entitlement = h.fake.entitlement(USER, SKU, starts_at=now, ends_at=now + 30 * DAY)
    await h.fake.entitlement_event("create", entitlement)

    async def tier_is(tier, expiry=None):
        view = await h.service.me(ME)
        return view.tier == tier and (expiry is None or view.tier_expires_at == pytest.approx(expiry))

    await eventually(lambda: tier_is("pro", now + 30 * DAY))
    await h.fake.slash("me", {})
    assert "Tier: **pro** until" in await last_ephemeral(h, 1)
    renewed = {**entitlement, "ends_at": h.fake.entitlement(USER, SKU, ends_at=now + 60 * DAY)["ends_at"]}
    await h.fake.entitlement_event("update", renewed)
    await eventually(lambda: tier_is("pro", now + 60 * DAY))
    await h.fake.entitlement_event("delete", {**renewed, "deleted": True})
    await eventually(lambda: tier_is("free"))
    account = await h.app.store.account_for("discord", str(USER), now)
    changes = await h.app.store.tier_changes(account.id)
    assert [c["reason"] for c in changes] == ["discord-entitlement", "discord-entitlement", "refund"]
    assert changes[0]["changed_by"] == f"discord-entitlement:{entitlement['id']}"


async def test_entitlements_on_interactions_set_the_tier_once(h):
    await h.start(PLANS)
    now = h.clock.now()
    h.fake.user_entitlements[USER] = [h.fake.entitlement(USER, SKU, ends_at=now + 30 * DAY)]
    await h.fake.slash("help", {})

    async def pro():
        return (await h.service.me(ME)).tier == "pro"

    await eventually(pro)
    await h.fake.slash("help", {})
    await h.fake.slash("me", {})
    await last_ephemeral(h, 3)
    account = await h.app.store.account_for("discord", str(USER), now)
    assert len(await h.app.store.tier_changes(account.id)) == 1


async def test_link_with_a_code_from_telegram(h):
    await h.start()
    ana_tg = Member("telegram", "1001", "Ana")
    await h.service.set_tier(ana_tg, "pro", h.clock.now() + 5 * DAY, reason="admin", changed_by="test")
    code, _ = await h.service.link_start(ana_tg)
    await h.fake.slash("link", {"code": code})
    assert "Linked" in await last_ephemeral(h, 1) and "**pro**" in ephemerals(h.fake)[-1]
    assert (await h.service.me(ME)).tier == "pro"
    await h.fake.slash("link", {}, user_id=OTHER)
    text = await last_ephemeral(h, 2)
    assert "Your link code: `" in text and "10 minutes" in text


async def test_admin_grant_and_revoke(h):
    await h.start(bot=f'admins = ["discord:{ADMIN}"]')
    target = h.fake.user(USER, "ana")
    await h.fake.slash("grant", {"member": target, "tier": "max", "days": 30}, user_id=OTHER)
    assert "Only the bot's admins" in await last_ephemeral(h, 1)
    assert (await h.service.me(ME)).tier == "free"
    await h.fake.slash("grant", {"member": target, "tier": "max", "days": 30}, user_id=ADMIN)
    assert "**max** tier until" in await last_ephemeral(h, 2)
    assert (await h.service.me(ME)).tier == "max"
    await h.fake.slash("revoke", {"member": target}, user_id=ADMIN)
    assert "**free**" in await last_ephemeral(h, 3)
    assert (await h.service.me(ME)).tier == "free"
