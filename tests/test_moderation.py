"""Access and moderation in the core: allow-lists, bans, the prompt blocklist, the safety check
on results, and purging old jobs."""

from __future__ import annotations

import pytest

from bot.config import AccessSettings, ModerationSettings
from bot.moderation import NO_DMS, NOT_HERE, Blocklist, Place, place_refusal
from bot.core.types import Accepted, Member, Refused
from tests.fakes import picture_bytes
from tests.harness.service import FREE, FREE2, PRO, Harness, make

ADMIN = Member("web", "admin-1", "Ada")


@pytest.mark.parametrize(
    "prompt, blocked",
    [
        ("a cat in the rain", True),
        ("A CAT in the rain", True),
        ("cat.", True),
        ("category theory diagram", False),  # a blocked word inside a longer word
        ("concatenate", False),
        ("gore", True),  # and the accent in the list does not hide it either
        ("Gôre and more", True),  # accents do not hide a word
        ("a REAL   person", True),  # a phrase across extra spaces
        ("a realistic person", False),
        ("nudes", True),  # pattern
        ("denuded hills", False),
    ],
)
def test_blocklist_matches_whole_words_ignoring_case_and_accents(prompt, blocked):
    blocklist = Blocklist.from_settings(
        ModerationSettings(blocked_words=("cat", "gôre", "real person"), blocked_patterns=(r"\bnude\w*",))
    )
    assert blocklist.blocks(prompt) is blocked


@pytest.mark.parametrize(
    "access, place, refused",
    [
        (AccessSettings(), Place("telegram", chat_id=-100), None),
        (AccessSettings(telegram_chats=(-100,)), Place("telegram", chat_id=-100), None),
        (AccessSettings(telegram_chats=(-100,)), Place("telegram", chat_id=-200), NOT_HERE),
        (AccessSettings(discord_guilds=(1,)), Place("discord", chat_id=5, guild_id=2), NOT_HERE),
        (AccessSettings(discord_guilds=(1,), discord_channels=(5,)), Place("discord", chat_id=5, guild_id=1), None),
        (AccessSettings(discord_guilds=(1,), discord_channels=(5,)), Place("discord", chat_id=6, guild_id=1), NOT_HERE),
        (AccessSettings(direct_messages=False), Place("discord", private=True), NO_DMS),
        (AccessSettings(telegram_chats=(-100,)), Place("telegram", chat_id=42, private=True), None),
    ],
)
def test_allow_lists_on_both_platforms(access, place, refused):
    assert place_refusal(access, place) == refused


async def test_outside_the_allow_list_the_bot_answers_once_then_stays_quiet(tmp_path):
    h = await make(tmp_path, extra_config="[access]\ntelegram_chats = [-100]")
    elsewhere = Place("telegram", chat_id=-200)
    first = h.service.admin.check_place(elsewhere)
    second = h.service.admin.check_place(elsewhere)
    assert isinstance(first, Refused) and not first.quiet and "not enabled" in first.message
    assert second is not None and second.quiet
    assert h.service.admin.check_place(Place("telegram", chat_id=-100)) is None
    await h.close()


async def test_blocked_prompt_is_refused_by_the_rules_without_quota_or_queue(tmp_path):
    h = await make(tmp_path, extra_config='[moderation]\nblocked_words = ["gore"]')
    answer = await h.submit(PRO, "/restyle lots of GORE please")
    assert isinstance(answer, Refused) and answer.reason == "rules"
    assert "gore" not in answer.message.lower() and "rules" in answer.message
    assert (await h.store.count_by_status()).get("queued", 0) == 0 and (await h.service.jobs.me(PRO)).used_today == 0
    assert isinstance(await h.submit(PRO, "/restyle gorge at dawn"), Accepted)
    await h.close()


async def test_ban_cancels_waiting_jobs_refuses_new_ones_and_unban_lifts_it(tmp_path):
    h = await make(tmp_path, extra_config='admins = ["web:admin-1"]')  # lands in [bot]
    waiting = await h.submit(FREE)
    assert (await h.service.admin.ban(FREE2, FREE, "spam")).reason == "not_admin"
    assert await h.service.admin.ban(ADMIN, FREE, "spam") == [waiting.job_id]
    assert (await h.service.jobs.job(waiting.job_id)).status == "cancelled"
    refused = await h.submit(FREE)
    assert isinstance(refused, Refused) and refused.reason == "banned"
    assert await h.service.admin.ban(ADMIN, FREE, "appeal accepted", banned=False) == []
    assert isinstance(await h.submit(FREE), Accepted)
    account = await h.store.account_for("test", FREE.user_id, h.clock.now())
    actions = await h.store.admin_actions(account.id)
    assert [(a["action"], a["detail"], a["done_by"]) for a in actions] == [
        ("ban", "spam", "web:admin-1"),
        ("unban", "appeal accepted", "web:admin-1"),
    ]
    await h.close()


async def test_flagged_result_is_not_sent_costs_no_quota_and_the_member_is_told(tmp_path):
    h = Harness(tmp_path)
    await h.open()
    h.service.batches.safety_check = lambda picture: True  # a checker the test controls: flags everything
    await h.service.jobs.set_tier(PRO, "pro", None, reason="admin", changed_by="test")
    answer = await h.submit(PRO)
    h.start_worker()
    await h.drain()
    assert h.frontend.results == []
    assert [j.id for j in h.frontend.failures] == [answer.job_id]
    assert "safety filter" in h.frontend.failures[0].error
    assert (await h.service.jobs.me(PRO)).used_today == 0
    assert not await h.store.has_picture(answer.job_id, "result")
    await h.close()


async def test_age_restricted_channel_may_be_exempt_from_the_safety_check(tmp_path):
    h = Harness(tmp_path, extra_config="[moderation]\nexempt_age_restricted = true")
    await h.open()
    h.service.batches.safety_check = lambda picture: True
    await h.service.jobs.set_tier(PRO, "pro", None, reason="admin", changed_by="test")
    answer = await h.service.jobs.submit(PRO, picture_bytes(), "/restyle x", {"age_restricted": True})
    h.start_worker()
    await h.drain()
    assert [d.job.id for d in h.frontend.results] == [answer.job_id]
    await h.close()


async def test_jobs_and_pictures_are_purged_after_the_retention_period(tmp_path):
    h = await make(tmp_path, extra_config="[moderation]\nretention_days = 7")
    old = await h.submit(PRO, "/restyle old")
    h.start_worker()
    await h.drain()
    await h.clock.advance(6 * 86400)
    recent = await h.submit(PRO, "/restyle recent")
    await h.drain()
    assert await h.service.admin.purge_expired() == 0
    await h.clock.advance(1.5 * 86400)
    assert await h.service.admin.purge_expired() == 1
    assert await h.service.jobs.job(old.job_id) is None
    assert await h.service.results.input_picture(old.job_id) is None
    assert (await h.service.jobs.job(recent.job_id)).status == "done"
    assert await h.service.results.input_picture(recent.job_id) is not None
    await h.close()


async def test_the_app_purges_expired_jobs_at_start_and_then_every_hour(tmp_path):
    from bot.app import PURGE_INTERVAL_S, App
    from bot.clock import FakeClock
    from bot.config import load_config
    from tests.fakes import FakeEngine, wait_parked, wait_until
    from tests.harness.service import write_config

    config = load_config(write_config(tmp_path, "[moderation]\nretention_days = 1"), env={})
    clock = FakeClock()
    app = await App.create(config, clock=clock, engine_factory=lambda c: FakeEngine(), adapters=lambda c, s, h: [])
    purged: list[int] = []
    purge = app.service.admin.purge_expired

    async def counting() -> int:
        purged.append(await purge())
        return purged[-1]

    app.service.admin.purge_expired = counting  # type: ignore[method-assign]
    start = clock.now()
    try:
        await app.start()
        await wait_parked(clock, start + PURGE_INTERVAL_S)  # purged once, now waiting an hour
        assert purged == [0]  # at start
        old = await app.service.jobs.submit(PRO, picture_bytes(), "/restyle old", {})
        await wait_until(
            lambda: _status_is(app.service, old.job_id, "done"), what=f"job {old.job_id} to be done"
        )
        await clock.advance(PURGE_INTERVAL_S - 1)
        await wait_parked(clock, start + PURGE_INTERVAL_S)  # still waiting for the hour
        assert purged == [0]  # not before the hour
        await clock.advance(1)
        await wait_parked(clock, start + 2 * PURGE_INTERVAL_S)
        assert purged == [0, 0]  # the job is younger than a day
        await clock.advance(86400)
        await wait_parked(clock, start + 86400 + 2 * PURGE_INTERVAL_S)
        assert purged == [0, 0, 1]
        assert await app.service.jobs.job(old.job_id) is None
        assert await app.service.results.input_picture(old.job_id) is None
    finally:
        await app.stop()
    assert app._purge_task is not None and app._purge_task.done()


async def _status_is(service, job_id: str, status: str) -> bool:
    job = await service.jobs.job(job_id)
    return job is not None and job.status == status
