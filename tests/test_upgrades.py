"""Upgrades in the core: plans and perks, signed payloads, payments once per charge id, refunds,
redeem codes (CLI, reuse, expiry, guessing), links between apps, admin grants and revokes."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.clock import FakeClock
from bot.commands import whole_number
from bot.config import Config, ConfigError, load_config
from bot.core.types import Member, MemberView, PaymentResult, Refused
from bot.service import RestyleService
from bot.store import Store
from bot import upgrades as up
from tests.fakes import picture_bytes

DAY = 86400.0
PLANS = """
[bot]
admins = ["telegram:1"]
[payments]
secret = "test-secret"
[plans.pro_month]
tier = "pro"
days = 30
stars = 250
subscription = true
discord_sku = 111
[plans.max_week]
tier = "max"
days = 7
stars = 150
[plans.pro_discord]
tier = "pro"
days = 30
discord_sku = 222
"""
ADMIN = Member("telegram", "1", "Admin")
ANA = Member("telegram", "1001", "Ana")
ANA_DC = Member("discord", "5001", "ana#1")
BEN = Member("telegram", "1002", "Ben")


def config_file(tmp_path: Path, extra: str = PLANS) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[tiers.free]\nmin_turnaround_s = 40\n{extra}\n')
    return path


@pytest.fixture
async def svc(tmp_path):
    config = load_config(config_file(tmp_path), env={})
    store = await Store.open(config.bot.data_dir)
    service = RestyleService(config, store, FakeClock(), rng=random.Random(1))
    await service.start()
    yield service
    await service.close()
    await store.close()


# --- Pure parts -------------------------------------------------------------------------------


def test_perks_are_read_from_the_tier_settings() -> None:
    config = Config()
    free, pro = config.tiers["free"], config.tiers["pro"]
    perks = up.tier_perks(pro, free)
    assert perks[0] == "no wait" and "priority in the queue" in perks
    assert "pictures up to 768 px (larger)" in perks and "200 restyles a day" in perks
    assert up.tier_perks(free, free)[0] == "results after at least 40 s"
    assert "strength sweeps (3 strengths side by side)" in perks  # pro has them, free has not
    assert not any("sweep" in perk for perk in up.tier_perks(free, free))


def test_payload_is_signed_for_one_member_and_short() -> None:
    key = b"k" * 32
    payload = up.sign_payload(key, "telegram:1001", "a" * 32)
    assert len(payload.encode()) <= 128
    assert up.read_payload(key, payload, "telegram:1001") == "a" * 32
    assert up.read_payload(key, payload, "telegram:1002") is None  # someone else's invoice
    assert up.read_payload(b"x" * 32, payload, "telegram:1001") is None  # not our key
    forged = payload.replace("a" * 32, "b" * 32)
    assert up.read_payload(key, forged, "telegram:1001") is None
    assert up.read_payload(key, "garbage", "telegram:1001") is None


def test_extension_rules() -> None:
    config, now = Config(), 1000.0
    assert up.extended(config, "free", None, "pro", 30, now) == ("pro", now + 30 * DAY)
    assert up.extended(config, "pro", now + 5 * DAY, "pro", 30, now) == ("pro", now + 35 * DAY)
    assert up.extended(config, "pro", now - 5, "pro", 30, now) == ("pro", now + 30 * DAY)  # expired
    assert up.extended(config, "pro", now + DAY, "max", 7, now) == ("max", now + 7 * DAY)
    assert up.extended(config, "max", now + DAY, "pro", 30, now) is None  # would waste a running max
    assert up.extended(config, "pro", None, "pro", 30, now) == ("pro", None)


def test_merge_keeps_the_better_tier_and_later_end() -> None:
    config, now = Config(), 1000.0
    assert up.merged(config, ("pro", now + 10), ("max", now + 5), now) == ("max", now + 5)
    assert up.merged(config, ("pro", now + 10), ("pro", now + 50), now) == ("pro", now + 50)
    assert up.merged(config, ("pro", now - 1), ("free", None), now) == ("free", None)
    assert up.merged(config, ("pro", None), ("pro", now + 50), now) == ("pro", None)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[plans.x]\ntier = "pro"\ndays = 30\n', "set stars"),
        ('[plans.x]\ntier = "free"\ndays = 30\nstars = 5\n', "tier must be one of pro, max"),
        ('[plans.x]\ntier = "pro"\nstars = 5\n', "days is required"),
        ('[plans.x]\ntier = "pro"\ndays = 7\nstars = 5\nsubscription = true\n', "days = 30"),
        ('[plans.x]\ntier = "pro"\ndays = 30\nstars = 20000\n', "stars must be a whole number from 1 to 10000"),
        ('[plans.X]\ntier = "pro"\ndays = 30\nstars = 5\n', "plan name"),
        ('[plans.x]\ntier = "pro"\ndays = 30\nstar = 5\n', "'stars'"),
        ('[plans.a]\ntier = "pro"\ndays = 30\ndiscord_sku = 9\n[plans.b]\ntier = "max"\ndays = 30\ndiscord_sku = 9\n',
         "also used by [plans.a]"),
        ('[payments]\nterms = ""\n', "[payments] terms"),
    ],
)
def test_plan_config_is_checked(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(config_file(tmp_path, text), env={})
    assert fragment in str(caught.value)


def test_plans_load_in_order(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path), env={})
    assert list(config.plans) == ["pro_month", "max_week", "pro_discord"]
    assert config.plans["pro_month"].discord_sku == 111 and config.plans["pro_month"].subscription
    assert [p.name for p in up.plans_on(config, "telegram")] == ["pro_month", "max_week"]
    assert [p.name for p in up.plans_on(config, "discord")] == ["pro_month", "pro_discord"]


def test_the_payload_key_is_a_secret_in_data_dir_not_the_token(tmp_path: Path) -> None:
    from dataclasses import replace

    from bot.config import TelegramSettings

    with_token = Config(telegram=TelegramSettings(token="1:abc"))
    first = up.payload_key(with_token, tmp_path)
    assert (tmp_path / "payment-secret").exists() and up.payload_key(Config(), tmp_path) == first
    # A revoked (leaked) token must not void open invoices or subscription renewals.
    payload = up.sign_payload(first, "telegram:1001", "pro_month")
    new_token = replace(with_token, telegram=TelegramSettings(token="1:xyz"))
    assert up.read_payload(up.payload_key(new_token, tmp_path), payload, "telegram:1001") == "pro_month"


def test_previous_secrets_and_the_token_key_of_older_versions_still_count(tmp_path: Path) -> None:
    from dataclasses import replace

    from bot.config import PaymentSettings, TelegramSettings

    old = Config(payments=PaymentSettings(secret="old secret"))
    signed_with_old = up.sign_payload(up.payload_key(old, tmp_path), "telegram:1001", "pro_month")
    rotated = replace(old, payments=PaymentSettings(secret="new secret"))
    assert up.read_payload(up.payload_keys(rotated, tmp_path), signed_with_old, "telegram:1001") is None
    kept = replace(old, payments=PaymentSettings(secret="new secret", previous_secrets=("old secret",)))
    assert up.read_payload(up.payload_keys(kept, tmp_path), signed_with_old, "telegram:1001") == "pro_month"
    # Payloads signed before the key moved to data_dir were keyed on the bot token.
    legacy = up._key_of("telegram-token:1:abc")
    renewal = up.sign_payload(legacy, "telegram:1001", "pro_month")
    with_token = Config(telegram=TelegramSettings(token="1:abc"))
    assert up.read_payload(up.payload_keys(with_token, tmp_path), renewal, "telegram:1001") == "pro_month"
    after_revoke = Config(telegram=TelegramSettings(token="1:new"), payments=PaymentSettings(previous_secrets=("1:abc",)))
    assert up.read_payload(up.payload_keys(after_revoke, tmp_path), renewal, "telegram:1001") == "pro_month"
    assert up.read_payload(up.payload_keys(after_revoke, tmp_path), renewal, "telegram:1002") is None
    assert up.payload_keys(after_revoke, tmp_path)[0] == up.payload_key(after_revoke, tmp_path)


# --- Payments ---------------------------------------------------------------------------------


async def test_plans_for_lists_plans_and_every_tier(svc: RestyleService) -> None:
    info = await svc.billing.plans_for(ANA)
    assert info.tier == "free" and [p.name for p in info.plans] == ["pro_month", "max_week"]
    assert [name for name, _ in info.tiers] == ["free", "pro", "max"]


async def test_no_plans_means_none_on_sale(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, ""), env={})
    store = await Store.open(config.bot.data_dir)
    service = RestyleService(config, store, FakeClock())
    info = await service.billing.plans_for(ANA)
    assert info.plans == [] and len(info.tiers) == 3
    await store.close()


async def test_payment_flow_extends_once_per_charge(svc: RestyleService) -> None:
    now = svc.clock.now()
    plan, payload = await svc.billing.invoice_payload(ANA, "pro_month")
    assert plan.stars == 250
    assert await svc.billing.check_pre_checkout(ANA, payload, 250) is None
    assert isinstance(await svc.billing.check_pre_checkout(BEN, payload, 250), Refused)  # not Ben's invoice
    assert (await svc.billing.check_pre_checkout(ANA, payload, 1)).reason == "price"
    assert (await svc.billing.check_pre_checkout(ANA, payload + "x", 250)).reason == "payload"
    paid = await svc.billing.record_payment(ANA, payload, "ch-1", 250)
    assert isinstance(paid, PaymentResult) and not paid.duplicate
    assert paid.view.tier == "pro" and paid.view.tier_expires_at == now + 30 * DAY
    again = await svc.billing.record_payment(ANA, payload, "ch-1", 250)  # replayed update
    assert again.duplicate and again.view.tier_expires_at == now + 30 * DAY
    renewal = await svc.billing.record_payment(ANA, payload, "ch-2", 250, recurring=True, subscription_expiry=now + 60 * DAY)
    assert renewal.view.tier_expires_at == now + 60 * DAY
    changes = await svc.store.tier_changes((await svc.store.account_for("telegram", "1001", now)).id)
    assert [c["reason"] for c in changes] == ["payment", "payment"]
    assert changes[0]["changed_by"] == "telegram-stars:ch-1"


@pytest.mark.parametrize("amount, currency", [(1, "XTR"), (250, "USD"), (0, "XTR")])
async def test_a_payment_that_does_not_match_its_plan_is_held_and_granted_nothing(
    svc: RestyleService, caplog: pytest.LogCaptureFixture, amount: int, currency: str
) -> None:
    _, payload = await svc.billing.invoice_payload(ANA, "pro_month")
    with caplog.at_level("ERROR", logger="bot.core.billing"):
        held = await svc.billing.record_payment(ANA, payload, "ch-cheap", amount, currency=currency)
    assert isinstance(held, Refused) and held.reason == "payment_held" and not held.quiet
    assert "does not match the price" in held.text and "ch-cheap" in held.text and "support" in held.text
    assert (await svc.jobs.me(ANA)).tier == "free"
    assert await svc.store.payment("telegram-stars:ch-cheap") is None
    [row] = await svc.store.held_payments()
    assert row["charge_id"] == "telegram-stars:ch-cheap"
    assert row["detail"]["amount"] == amount and row["detail"]["currency"] == currency
    assert row["detail"]["problem"] == "price" and row["detail"]["plan"] == "pro_month"
    assert any("telegram-stars:ch-cheap" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    # The same update again: written down once, the member told once.
    again = await svc.billing.record_payment(ANA, payload, "ch-cheap", amount, currency=currency)
    assert isinstance(again, Refused) and again.quiet
    assert len(await svc.store.held_payments()) == 1 and (await svc.jobs.me(ANA)).tier == "free"


async def test_a_renewal_keeps_the_price_its_subscription_started_at(svc: RestyleService, tmp_path: Path) -> None:
    now = svc.clock.now()
    _, payload = await svc.billing.invoice_payload(ANA, "pro_month")
    assert isinstance(await svc.billing.record_payment(ANA, payload, "ch-s1", 250), PaymentResult)
    dearer = (tmp_path / "dearer")
    dearer.mkdir()
    config = load_config(config_file(dearer, PLANS.replace("stars = 250", "stars = 300")), env={})
    raised = RestyleService(config, svc.store, svc.clock, rng=random.Random(2))
    renewal = await raised.billing.record_payment(ANA, payload, "ch-s2", 250, recurring=True)
    assert isinstance(renewal, PaymentResult) and renewal.view.tier_expires_at == now + 60 * DAY
    # A new purchase at the old price is not a renewal: held.
    _, payload_b = await raised.billing.invoice_payload(BEN, "pro_month")
    held = await raised.billing.record_payment(BEN, payload_b, "ch-s3", 250)
    assert isinstance(held, Refused) and held.reason == "payment_held"
    # Nor is a renewal at a price this member never paid.
    held = await raised.billing.record_payment(ANA, payload, "ch-s4", 100, recurring=True)
    assert isinstance(held, Refused) and held.reason == "payment_held"


async def test_another_members_invoice_is_called_that(svc: RestyleService) -> None:
    _, bens = await svc.billing.invoice_payload(BEN, "pro_month")
    refused = await svc.billing.check_pre_checkout(ANA, bens, 250)
    assert isinstance(refused, Refused) and "another member" in refused.text
    held = await svc.billing.record_payment(ANA, bens, "ch-other", 250)
    assert isinstance(held, Refused) and "another member" in held.text and "no longer on sale" not in held.text
    assert (await svc.jobs.me(ANA)).tier == "free" and (await svc.jobs.me(BEN)).tier == "free"
    assert [r["detail"]["problem"] for r in await svc.store.held_payments()] == ["other_member"]
    # Garbage is not "another member's"; a plan since removed is "no longer on sale".
    garbage = await svc.billing.record_payment(ANA, "hello", "ch-garbage", 250)
    assert "cannot read" in garbage.text
    gone = up.sign_payload(svc.billing._payload_key, ANA.key, "old_plan")
    assert "no longer on sale" in (await svc.billing.record_payment(ANA, gone, "ch-gone", 250)).text
    assert len(await svc.store.held_payments()) == 3


async def test_lower_plan_refused_while_a_higher_one_runs(svc: RestyleService) -> None:
    await svc.jobs.set_tier(ANA, "max", svc.clock.now() + DAY, reason="admin", changed_by="t")
    refused = await svc.billing.invoice_payload(ANA, "pro_month")
    assert isinstance(refused, Refused) and "max" in refused.message
    assert isinstance(await svc.billing.invoice_payload(ANA, "nope"), Refused)


async def test_lower_tier_renewal_during_a_higher_tier_still_gives_the_time_paid_for(svc: RestyleService) -> None:
    now = svc.clock.now()
    _, payload = await svc.billing.invoice_payload(ANA, "pro_month")
    await svc.billing.record_payment(ANA, payload, "ch-20", 250)  # pro for 30 days
    await svc.jobs.set_tier(ANA, "max", now + 10 * DAY, reason="admin", changed_by="t")
    renewal = await svc.billing.record_payment(ANA, payload, "ch-21", 250, recurring=True)
    assert isinstance(renewal, PaymentResult) and not renewal.duplicate
    # Not charged for nothing: the 30 days paid for are added to the tier held.
    assert renewal.view.tier == "max" and renewal.view.tier_expires_at == now + 40 * DAY


async def test_refund_reverts_the_tier(svc: RestyleService) -> None:
    now = svc.clock.now()
    _, payload = await svc.billing.invoice_payload(ANA, "max_week")
    await svc.billing.record_payment(ANA, payload, "ch-9", 150)
    assert (await svc.jobs.me(ANA)).tier == "max"
    assert (await svc.billing.refund(BEN, "ch-9")).reason == "not_admin"
    assert (await svc.billing.refund(ADMIN, "nope")).reason == "not_found"
    view = await svc.billing.refund(ADMIN, "ch-9")
    assert view.tier == "free" and (await svc.jobs.me(ANA)).tier == "free"
    assert (await svc.billing.refund(ADMIN, "ch-9")).reason == "refunded"
    # A refund of the second of two purchases of the same tier takes off only its period.
    _, payload = await svc.billing.invoice_payload(ANA, "pro_month")
    await svc.billing.record_payment(ANA, payload, "ch-10", 250)
    await svc.billing.record_payment(ANA, payload, "ch-11", 250)
    assert (await svc.jobs.me(ANA)).tier_expires_at == now + 60 * DAY
    assert (await svc.billing.refund(ADMIN, "ch-11")).tier_expires_at == now + 30 * DAY


async def test_payment_moves_waiting_jobs_up(svc: RestyleService) -> None:
    await svc.jobs.submit(BEN, picture_bytes(), "/restyle one", {})
    await svc.jobs.submit(ANA, picture_bytes(), "/restyle two", {})
    ana_job = (await svc.jobs.me(ANA)).active_jobs[0]
    assert ana_job.position == 1
    _, payload = await svc.billing.invoice_payload(ANA, "max_week")
    paid = await svc.billing.record_payment(ANA, payload, "ch-3", 150)
    assert paid.view.active_jobs[0].position == 0 and paid.view.active_jobs[0].tier == "max"


async def test_discord_entitlements_set_renew_and_end_the_tier(svc: RestyleService) -> None:
    now = svc.clock.now()
    view = await svc.billing.apply_entitlement(ANA_DC, "e1", 222, now + 30 * DAY)
    assert view.tier == "pro" and view.tier_expires_at == now + 30 * DAY
    await svc.billing.apply_entitlement(ANA_DC, "e1", 222, now + 30 * DAY)  # seen again: nothing written
    account = await svc.store.account_for("discord", "5001", now)
    assert len(await svc.store.tier_changes(account.id)) == 1
    assert (await svc.billing.apply_entitlement(ANA_DC, "e1", 222, now + 60 * DAY)).tier_expires_at == now + 60 * DAY
    assert await svc.billing.apply_entitlement(ANA_DC, "e2", 999, None) is None  # not our SKU
    assert (await svc.billing.apply_entitlement(ANA_DC, "e1", 222, now + 60 * DAY, deleted=True)).tier == "free"
    reasons = [c["reason"] for c in await svc.store.tier_changes(account.id)]
    assert reasons == ["discord-entitlement", "discord-entitlement", "refund"]


# --- Codes ------------------------------------------------------------------------------------


async def test_codes_redeem_once_and_expire(svc: RestyleService) -> None:
    now = svc.clock.now()
    codes = await svc.codes.mint_codes("pro", 30, 3, valid_days=10)
    assert len(set(codes)) == 3 and all(up.looks_like_redeem_code(c) for c in codes)
    view = await svc.codes.redeem(ANA, codes[0].lower().replace("-", " "))  # typed loosely
    assert view.tier == "pro" and view.tier_expires_at == now + 30 * DAY
    used = await svc.codes.redeem(BEN, codes[0])
    assert used.reason == "used_code" and "already been used" in used.message
    assert (await svc.codes.redeem(BEN, "RS-AAAA-BBBB-CCCC")).reason == "bad_code"
    await svc.clock.advance(11 * DAY)
    expired = await svc.codes.redeem(BEN, codes[1])
    assert expired.reason == "expired_code" and "expired" in expired.message
    row = await svc.store.code(up.code_hash(codes[0]))
    assert row is not None and codes[0] not in str(row)  # stored hashed



async def test_a_code_refusal_is_said_in_the_members_language(svc: RestyleService) -> None:
    codes = await svc.codes.mint_codes("pro", 30, 1)
    await svc.codes.redeem(ANA, codes[0])
    spanish, russian = Member("telegram", "1003", "Lucía", lang="es"), Member("discord", "5003", "ivan", lang="ru")
    assert (await svc.codes.redeem(spanish, codes[0])).message == "Ese código ya se ha usado."
    assert (await svc.codes.redeem(russian, "RS-AAAA-BBBB-CCCC")).message.startswith("Этот код недействителен.")
    assert (await svc.codes.link_finish(spanish, "ABCDEFGH")).message.startswith("Ese código de vinculación no es válido")
    assert (await svc.billing.invoice_payload(russian, "no-such-plan")).message.startswith("Этот тариф больше не продаётся")


async def test_guessing_is_rate_limited(svc: RestyleService) -> None:
    codes = await svc.codes.mint_codes("max", 7, 1)
    for _ in range(5):
        assert (await svc.codes.redeem(BEN, "RS-WRNG-WRNG-WRNG")).reason == "bad_code"
    limited = await svc.codes.redeem(BEN, codes[0])  # even the right code waits now
    assert limited.reason == "guessing" and "Try again in" in limited.message
    assert (await svc.codes.redeem(ANA, codes[0])).tier == "max"  # per member
    await svc.clock.advance(3601)
    assert (await svc.codes.redeem(BEN, "RS-WRNG-WRNG-WRNG")).reason == "bad_code"


def test_cli_mints_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path)
    assert main(["codes", "mint", "--tier", "pro", "--days", "30", "--count", "4", "--config", str(path)]) == 0
    codes = capsys.readouterr().out.split()
    assert len(codes) == 4 and all(up.looks_like_redeem_code(c) for c in codes)
    assert main(["codes", "mint", "--tier", "gold", "--days", "30", "--config", str(path)]) == 2


async def test_cli_codes_redeem_in_the_service(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path)
    import asyncio

    assert await asyncio.to_thread(main, ["codes", "mint", "--tier", "max", "--days", "7", "--config", str(path)]) == 0
    code = capsys.readouterr().out.split()[0]
    config = load_config(path, env={})
    store = await Store.open(config.bot.data_dir)
    service = RestyleService(config, store, FakeClock())
    assert (await service.codes.redeem(ANA, code)).tier == "max"
    await store.close()


# --- Links ------------------------------------------------------------------------------------


async def test_link_shares_tier_and_quota(svc: RestyleService) -> None:
    now = svc.clock.now()
    await svc.jobs.set_tier(ANA, "pro", now + 10 * DAY, reason="admin", changed_by="t")
    await svc.jobs.submit(ANA_DC, picture_bytes(), "/restyle x", {})
    await svc.jobs.cancel(ANA_DC)
    await svc.jobs.submit(ANA_DC, picture_bytes(), "/restyle y", {})
    busy = await svc.codes.link_finish(ANA_DC, (await svc.codes.link_start(ANA))[0])
    assert busy.reason == "busy"
    await svc.jobs.cancel(ANA_DC)
    code, ttl = await svc.codes.link_start(ANA)
    assert ttl == 600 and len(code) == 8
    view = await svc.codes.link_finish(ANA_DC, code)
    assert view.tier == "pro" and view.tier_expires_at == now + 10 * DAY
    assert (await svc.jobs.me(ANA)).tier == "pro"
    account = await svc.store.account_for("telegram", "1001", now)
    assert await svc.store.identities(account.id) == [("discord", "5001"), ("telegram", "1001")]
    # one account now: a change seen from one app shows on the other
    await svc.jobs.set_tier(ANA_DC, "max", None, reason="admin", changed_by="t")
    assert (await svc.jobs.me(ANA)).tier == "max"
    assert (await svc.codes.link_finish(ANA_DC, code)).reason == "bad_code"  # spent


async def test_link_code_expires_and_refuses_same_app(svc: RestyleService) -> None:
    code, _ = await svc.codes.link_start(ANA)
    assert (await svc.codes.link_finish(BEN, code)).reason == "linked"  # two Telegram accounts: no
    await svc.clock.advance(601)
    assert (await svc.codes.link_finish(ANA_DC, code)).reason == "bad_code"


# --- Admins -----------------------------------------------------------------------------------


async def test_admin_grant_and_revoke(svc: RestyleService) -> None:
    now = svc.clock.now()
    assert (await svc.billing.grant(BEN, ANA, "max", 30)).reason == "not_admin"
    assert (await svc.billing.revoke(BEN, ANA)).reason == "not_admin"
    view = await svc.billing.grant(ADMIN, ANA, "pro", 30)
    assert view.tier == "pro" and view.tier_expires_at == now + 30 * DAY
    assert (await svc.billing.grant(ADMIN, ANA, "pro", 5)).tier_expires_at == now + 35 * DAY
    assert (await svc.billing.grant(ADMIN, ANA, "max", 0)).tier_expires_at is None
    assert (await svc.billing.grant(ADMIN, ANA, "gold", 1)).reason == "command"
    assert (await svc.billing.revoke(ADMIN, ANA)).tier == "free"
    account = await svc.store.account_for("telegram", "1001", now)
    changes = await svc.store.tier_changes(account.id)
    assert [c["to_tier"] for c in changes] == ["pro", "pro", "max", "free"]
    assert all(c["changed_by"] == "telegram:1" and c["reason"] == "admin" for c in changes)


@pytest.mark.parametrize("days", [-1, -0.5, float("nan"), float("inf"), float("-inf"), 36501, 99999999999, True])
async def test_grant_refuses_days_out_of_range_with_one_sentence(svc: RestyleService, days) -> None:
    refused = await svc.billing.grant(ADMIN, ANA, "pro", days)
    assert isinstance(refused, Refused) and refused.reason == "command"
    assert refused.text == "Days must be a number from 0 (no end) to 36500."
    assert (await svc.jobs.me(ANA)).tier == "free"


async def test_grant_of_the_longest_allowed_time_has_a_date(svc: RestyleService) -> None:
    view = await svc.billing.grant(ADMIN, ANA, "pro", up.MAX_GRANT_DAYS)
    assert view.tier == "pro" and view.tier_expires_at == svc.clock.now() + up.MAX_GRANT_DAYS * DAY


@pytest.mark.parametrize(
    "text, lo, hi, expected",
    [
        ("42", 0, 100, 42), ("0", 0, 100, 0), ("²", 0, 100, None), ("٣", 0, 100, None), ("-1", 0, 100, None),
        ("1e3", 0, 10**6, None), (" 4", 0, 100, None), ("", 0, 100, None), ("101", 0, 100, None),
        ("9" * 5000, 0, 100, None),
    ],
)
def test_whole_number_takes_ascii_digits_in_range_only(text, lo, hi, expected) -> None:
    assert whole_number(text, lo, hi) == expected


# --- Guess limits: counted before the lookup, kept in the database ------------------------------


def _service_on(store: Store, tmp_path: Path) -> RestyleService:
    config = load_config(config_file(tmp_path), env={})
    return RestyleService(config, store, FakeClock(), rng=random.Random(1))


def _count_lookups(store: Store) -> list[str]:
    """Spy on the code lookups; each waits for the database like a real one under load."""
    looked_up: list[str] = []
    for name in ("code", "link_code"):
        original = getattr(store, name)

        async def lookup(code_hash: str, _original=original, _name=name):
            looked_up.append(_name)
            await asyncio.sleep(0.001)
            return await _original(code_hash)

        setattr(store, name, lookup)
    return looked_up


@pytest.mark.parametrize("attempt", ["redeem", "link_finish"])
async def test_forty_concurrent_wrong_guesses_check_at_most_the_limit(store, tmp_path, attempt) -> None:
    service = _service_on(store, tmp_path)
    looked_up = _count_lookups(store)
    guess = getattr(service.codes, attempt)
    answers = await asyncio.gather(*(guess(BEN, f"RS-WRNG-WRNG-{i:04d}") for i in range(40)))
    reasons = [answer.reason for answer in answers]
    assert len(looked_up) <= up.GUESS_LIMIT
    assert reasons.count("bad_code") == up.GUESS_LIMIT
    assert reasons.count("guessing") == 40 - up.GUESS_LIMIT


async def test_the_guess_limit_survives_a_restart(tmp_path) -> None:
    store = await Store.open(tmp_path)
    service = _service_on(store, tmp_path)
    code = (await service.codes.mint_codes("max", 7, 1))[0]
    for _ in range(up.GUESS_LIMIT):
        assert (await service.codes.redeem(BEN, "RS-WRNG-WRNG-WRNG")).reason == "bad_code"
    await store.close()
    store = await Store.open(tmp_path)
    try:
        refused = await _service_on(store, tmp_path).codes.redeem(BEN, code)
        assert refused.reason == "guessing"
    finally:
        await store.close()


async def test_two_front_ends_on_one_postgresql_share_the_guess_limit(pg_url, tmp_path) -> None:
    first, second = await Store.open(tmp_path / "a", pg_url), await Store.open(tmp_path / "b", pg_url)
    try:
        one, other = _service_on(first, tmp_path), _service_on(second, tmp_path)
        code = (await one.codes.mint_codes("max", 7, 1))[0]
        answers = await asyncio.gather(
            *((one if i % 2 else other).codes.link_finish(BEN, f"WRONG{i:03d}") for i in range(20))
        )
        assert sum(answer.reason == "bad_code" for answer in answers) == up.GUESS_LIMIT
        assert (await one.codes.redeem(BEN, code)).reason == "guessing"
        assert (await other.codes.redeem(BEN, code)).reason == "guessing"
        assert (await other.codes.redeem(ANA, code)).tier == "max"  # per member
    finally:
        await first.close()
        await second.close()


async def test_a_right_code_is_not_counted_as_a_wrong_guess(svc: RestyleService) -> None:
    codes = await svc.codes.mint_codes("pro", 7, up.GUESS_LIMIT + 2)
    for code in codes:  # more right codes than the limit allows wrong ones
        assert isinstance(await svc.codes.redeem(BEN, code), MemberView)
    assert (await svc.codes.redeem(BEN, "RS-WRNG-WRNG-WRNG")).reason == "bad_code"


async def test_a_live_link_code_from_the_same_app_counts_as_a_guess(svc: RestyleService) -> None:
    # Ana's code, tried by Ben on the same app: a guesser must not learn live codes that way.
    code, _ = await svc.codes.link_start(ANA)
    for _ in range(up.GUESS_LIMIT):
        assert (await svc.codes.link_finish(BEN, code)).reason == "linked"
    assert (await svc.codes.link_finish(BEN, code)).reason == "guessing"
