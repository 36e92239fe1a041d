"""Discord upgrades on the fake gateway: /upgrade with premium buttons, ENTITLEMENT_CREATE /
UPDATE / DELETE and the entitlements on every interaction, codes, /link, /grant and /revoke."""

from __future__ import annotations

import asyncio

import pytest

from bot.clock import FakeClock
from bot.core.types import Member
from tests.harness.discord_bot import OTHER, USER, Harness, ephemerals, h, private_answers  # noqa: F401  (h is a fixture)

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


async def tier_is(h, tier, expiry="any", member=ME) -> bool:
    view = await h.service.jobs.me(member)
    return view.tier == tier and (expiry == "any" or view.tier_expires_at == (expiry if expiry is None else pytest.approx(expiry)))


async def reasons(h, user_id=USER) -> list[str]:
    account = await h.app.store.account_for("discord", str(user_id), h.clock.now())
    return [c["reason"] for c in await h.app.store.tier_changes(account.id)]


async def test_upgrade_shows_plans_with_the_premium_button(h):
    h.fake.sku(SKU)
    await h.start(PLANS)
    await h.fake.slash("upgrade", {})
    text = await last_ephemeral(h, 1)
    assert "You are on the **free** tier." in text and "priority in the queue" in text and "Pro · month" in text
    [call] = private_answers(h.fake)
    components = [c for row in call.json["components"] for c in row["components"]]
    assert [(c["type"], c["style"], str(c["sku_id"])) for c in components] == [(2, 6, str(SKU))]


async def test_a_bad_sku_is_one_clear_log_line_and_upgrade_still_answers(h, caplog):
    h.fake.sku(SKU, kind=6)  # the subscription group's id, not the subscription's
    await h.start(PLANS)
    assert [r.getMessage() for r in caplog.records if "discord_sku" in r.getMessage()] == [
        f"[plans.pro_month] discord_sku {SKU} is a subscription group; use the id of the subscription SKU in it:"
        " /upgrade leaves its button out"
    ]
    await h.fake.slash("upgrade", {})
    assert "Pro · month" in await last_ephemeral(h, 1)
    assert not private_answers(h.fake)[0].json.get("components")


async def test_an_sku_the_start_check_could_not_see_is_one_log_line_and_upgrade_still_answers(h, caplog):
    # SKU is not one of this application's (no h.fake.sku), and the start-up check cannot tell:
    # listing the SKUs fails. Discord then refuses the premium button itself (400).
    h.fake.fail("GET", r"^/applications/\d+/skus$", 400, code=50035, message="Invalid Form Body")
    await h.start(PLANS)
    for count in (1, 2):
        await h.fake.slash("upgrade", {})
        assert "Pro · month" in await last_ephemeral(h, count)
    refusals = [c for c in h.fake.calls if c.path.startswith("/webhooks/") and c.status == 400]
    assert len(refusals) == 1  # the second /upgrade does not offer the button again
    assert not any(c.json.get("components") for c in private_answers(h.fake))
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and str(SKU) in r.getMessage()]
    assert len(lines) == 1 and f"[plans.pro_month] discord_sku {SKU}" in lines[0] and "/upgrade answers without" in lines[0]


async def test_upgrade_without_plans_says_so_and_redeems_codes(h):
    await h.start()
    await h.fake.slash("upgrade", {})
    assert "has not set up payments" in await last_ephemeral(h, 1)
    assert not private_answers(h.fake)[0].json.get("components")
    [code] = await h.service.codes.mint_codes("max", 7, 1)
    await h.fake.slash("upgrade", {"code": code})
    assert "Code accepted. You are on the **max** tier until" in await last_ephemeral(h, 2)
    await h.fake.slash("upgrade", {"code": code}, user_id=OTHER)
    assert "already been used" in await last_ephemeral(h, 3)


async def test_a_live_subscription_keeps_the_tier_until_discord_ends_it(h):
    h.fake.sku(SKU)
    await h.start(PLANS)
    entitlement = h.fake.entitlement(USER, SKU, starts_at=h.clock.now())  # live: ends_at null
    await h.fake.entitlement_event("create", entitlement)
    await eventually(lambda: tier_is(h, "pro", None))
    await h.clock.advance(40 * DAY)  # past the plan's 30 days: Discord renewed it without an event
    assert await tier_is(h, "pro", None)
    await h.fake.slash("me", {})
    assert "Tier: **pro**" in await last_ephemeral(h, 1)
    await h.fake.end_subscription(entitlement, h.clock.now() - 1)
    await eventually(lambda: tier_is(h, "free"))
    await h.fake.end_subscription(entitlement, h.clock.now() - 1)  # seen again: ends once
    await h.fake.slash("me", {})
    assert "Tier: **free**" in await last_ephemeral(h, 2)
    assert await reasons(h) == ["discord-entitlement", "discord-entitlement-ended"]


async def test_a_subscription_that_ends_later_runs_until_then_and_a_delete_refunds_it(h):
    h.fake.sku(SKU)
    await h.start(PLANS)
    now = h.clock.now()
    entitlement = h.fake.entitlement(USER, SKU, starts_at=now)
    await h.fake.entitlement_event("create", entitlement)
    await eventually(lambda: tier_is(h, "pro", None))
    await h.fake.end_subscription(entitlement, now + 3 * DAY)  # ends at the end of the paid period
    await eventually(lambda: tier_is(h, "pro", now + 3 * DAY))
    await h.fake.entitlement_event("delete", entitlement)
    await eventually(lambda: tier_is(h, "free"))
    assert await reasons(h) == ["discord-entitlement", "discord-entitlement", "refund"]


async def test_a_subscription_on_top_of_a_code_gives_the_code_back_when_it_ends(h):
    h.fake.sku(SKU)
    await h.start(PLANS)
    now = h.clock.now()
    await h.service.jobs.set_tier(ME, "pro", now + 60 * DAY, reason="admin", changed_by="test")
    entitlement = h.fake.entitlement(USER, SKU, starts_at=now)
    await h.fake.entitlement_event("create", entitlement)
    await eventually(lambda: tier_is(h, "pro", None))
    await h.clock.advance(DAY)
    await h.fake.end_subscription(entitlement, h.clock.now() - 1)
    await eventually(lambda: tier_is(h, "pro", now + 60 * DAY))


async def test_a_subscription_on_top_of_a_code_that_ends_later_keeps_the_code(h):
    h.fake.sku(SKU)
    await h.start(PLANS)
    now = h.clock.now()
    await h.service.jobs.set_tier(ME, "pro", now + 60 * DAY, reason="admin", changed_by="test")
    entitlement = h.fake.entitlement(USER, SKU, starts_at=now)
    await h.fake.entitlement_event("create", entitlement)
    await eventually(lambda: tier_is(h, "pro", None))
    await h.fake.end_subscription(entitlement, now + 2 * DAY)  # ends before the code would
    await eventually(lambda: tier_is(h, "pro", now + 60 * DAY))
    await h.fake.entitlement_event("delete", entitlement)  # refunded: the code's days stay
    await h.fake.wait_for(lambda: h.adapter.upgrades._seen.get(int(entitlement["id"]), (0, False))[1], what="the delete")
    assert await tier_is(h, "pro", now + 60 * DAY)
    assert await reasons(h) == ["admin", "discord-entitlement", "discord-entitlement", "refund"]


async def test_ends_and_deletions_while_the_bot_was_down_are_caught_up_at_start(h, tmp_path):
    h.fake.sku(SKU)
    await h.start(PLANS)
    now = h.clock.now()
    ended = h.fake.entitlement(USER, SKU, starts_at=now)
    deleted = h.fake.entitlement(OTHER, SKU, starts_at=now)
    kept = h.fake.entitlement(3003, SKU, starts_at=now)
    for entitlement in (ended, deleted, kept):
        await h.fake.entitlement_event("create", entitlement)
    for user in (USER, OTHER, 3003):
        await eventually(lambda: tier_is(h, "pro", None, Member("discord", str(user))))
    await h.app.stop()
    await h.fake.close()
    # while the bot is down: one subscription runs out, one is refunded, one is bought
    bought = h.fake.entitlement(4004, SKU, starts_at=now)
    await h.fake.end_subscription(ended, now + DAY, send=False)
    h.fake.entitlements[int(deleted["id"])] = {**deleted, "deleted": True}
    h2 = Harness(tmp_path)
    h2.clock = FakeClock(now + 2 * DAY)
    h2.fake.clock = h2.clock
    h2.fake.entitlements = dict(h.fake.entitlements)
    h2.fake.skus = dict(h.fake.skus)
    try:
        await h2.start(PLANS)  # reconciles before it returns
        assert await tier_is(h2, "free", None, ME)
        assert await tier_is(h2, "free", None, Member("discord", str(OTHER)))
        assert await tier_is(h2, "pro", None, Member("discord", "3003"))
        assert await tier_is(h2, "pro", None, Member("discord", "4004"))
        assert h2.fake.find("GET", rf"^/applications/{h2.fake.app_id}/entitlements$")[0].query["exclude_ended"] == "1"
        assert bought["id"] != kept["id"]
    finally:
        h.app = None
        await h2.close()


async def test_a_consumable_is_applied_once_and_consumed(h):
    h.fake.sku(SKU + 1, kind=3, name="Max week")
    await h.start(PLANS.replace("days = 7\nstars = 150", f"days = 7\nstars = 150\ndiscord_sku = {SKU + 1}"))
    now = h.clock.now()
    pack = h.fake.entitlement(USER, SKU + 1, starts_at=now, kind=1)
    await h.fake.entitlement_event("create", pack)
    await eventually(lambda: tier_is(h, "max", now + 7 * DAY))
    await h.fake.wait_for(lambda: h.fake.entitlements[int(pack["id"])]["consumed"], what="the entitlement consumed")
    await h.fake.slash("me", {})  # the consumed entitlement comes with the interaction: nothing more
    await last_ephemeral(h, 1)
    assert len(h.fake.find("POST", r"/consume$")) == 1
    assert await reasons(h) == ["discord-entitlement"]


async def test_a_test_entitlement_for_the_subscription_works_like_a_real_one(h):
    h.fake.sku(SKU)
    await h.start(PLANS)
    test = h.fake.entitlement(USER, SKU, kind=4)
    await h.fake.entitlement_event("create", test)
    await eventually(lambda: tier_is(h, "pro", None))
    await h.clock.advance(40 * DAY)
    assert await tier_is(h, "pro", None)
    await h.fake.entitlement_event("delete", test)
    await eventually(lambda: tier_is(h, "free"))


async def test_entitlements_on_interactions_set_the_tier_once(h):
    h.fake.sku(SKU)
    await h.start(PLANS)
    now = h.clock.now()
    h.fake.user_entitlements[USER] = [h.fake.entitlement(USER, SKU, starts_at=now)]
    await h.fake.slash("help", {})
    await eventually(lambda: tier_is(h, "pro", None))
    await h.fake.slash("help", {})
    await h.fake.slash("me", {})
    await last_ephemeral(h, 3)
    assert len(await reasons(h)) == 1


async def test_link_with_a_code_from_telegram(h):
    await h.start()
    ana_tg = Member("telegram", "1001", "Ana")
    await h.service.jobs.set_tier(ana_tg, "pro", h.clock.now() + 5 * DAY, reason="admin", changed_by="test")
    code, _ = await h.service.codes.link_start(ana_tg)
    await h.fake.slash("link", {"code": code})
    assert "Linked" in await last_ephemeral(h, 1) and "**pro**" in ephemerals(h.fake)[-1]
    assert (await h.service.jobs.me(ME)).tier == "pro"
    await h.fake.slash("link", {}, user_id=OTHER)
    text = await last_ephemeral(h, 2)
    assert "Your link code: `" in text and "10 minutes" in text


async def test_admin_grant_and_revoke(h):
    await h.start(bot=f'admins = ["discord:{ADMIN}"]')
    target = h.fake.user(USER, "ana")
    await h.fake.slash("grant", {"member": target, "tier": "max", "days": 30}, user_id=OTHER)
    assert "Only the bot's admins" in await last_ephemeral(h, 1)
    assert (await h.service.jobs.me(ME)).tier == "free"
    await h.fake.slash("grant", {"member": target, "tier": "max", "days": 30}, user_id=ADMIN)
    assert "**max** tier until" in await last_ephemeral(h, 2)
    assert (await h.service.jobs.me(ME)).tier == "max"
    await h.fake.slash("revoke", {"member": target}, user_id=ADMIN)
    assert "**free**" in await last_ephemeral(h, 3)
    assert (await h.service.jobs.me(ME)).tier == "free"
