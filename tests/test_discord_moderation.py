"""Access and moderation on Discord, end to end against the fake Discord: [access] allow-lists
and DMs on every way in, admins' /ban, /unban and /queue (the harness of tests/harness/discord_bot.py)."""

from __future__ import annotations

import asyncio

import pytest

from bot.moderation import BANNED, NO_DMS, NOT_HERE
from tests.fake_discord import EPHEMERAL
from tests.fakes import picture_bytes
from tests.harness.discord_bot import CHANNEL, GUILD, OTHER, USER, Harness, callbacks, ephemerals, h  # noqa: F401

ADMIN = 9001
ADMINS = 'admins = ["discord:9001"]'


async def mention(h: Harness, *, guild_id: int | None = GUILD, channel_id: int = CHANNEL) -> dict:
    msg = h.fake.message(channel_id, guild_id=guild_id, author=h.fake.user(USER, "member"),
                         content=f"<@{h.fake.bot_user['id']}> watercolor",
                         attachments=[h.fake.attachment(picture_bytes())])  # fmt: skip
    msg["mentions"] = [h.fake.bot_user]
    await h.fake.message_create(msg)
    return msg


def channel_posts(h: Harness, channel_id: int = CHANNEL) -> list:
    return h.fake.find("POST", rf"^/channels/{channel_id}/messages$")


async def test_outside_the_allowed_servers_a_mention_is_answered_once_and_slash_privately(h):
    await h.start(f"message_replies = true\n[access]\ndiscord_guilds = [{GUILD + 1}]")
    first = await mention(h)
    await h.fake.wait_for(lambda: channel_posts(h), what="the refusal")
    [answer] = channel_posts(h)
    assert answer.content == NOT_HERE and str(answer.json["message_reference"]["message_id"]) == first["id"]
    await mention(h)
    await mention(h)
    await h.messages_handled(3)
    assert len(channel_posts(h)) == 1  # then silence
    # An interaction must be answered: privately, every time, and nothing is downloaded.
    await h.restyle()
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the private refusal")
    assert ephemerals(h.fake) == [NOT_HERE]
    assert not callbacks(h.fake, 5) and not h.fake.find("GET", r"^/files/")
    assert await h.jobs() == []


async def test_with_dms_off_requests_in_a_dm_are_refused_and_the_server_still_works(h):
    await h.start("message_replies = true\n[access]\ndirect_messages = false", guilds="[]")
    await mention(h, guild_id=None, channel_id=4444)
    await h.fake.wait_for(lambda: channel_posts(h, 4444), what="the DM refusal")
    await mention(h, guild_id=None, channel_id=4444)
    await h.messages_handled(2)
    assert [c.content for c in channel_posts(h, 4444)] == [NO_DMS]  # said once
    # An interaction must be answered, so /restyle there still gets a private answer.
    await h.fake.slash("restyle", {"image": h.fake.attachment(picture_bytes()), "prompt": "oil", "strength": 0.5},
                       guild_id=None, channel_id=4444)  # fmt: skip
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the refusal")
    assert ephemerals(h.fake) == [NO_DMS]
    assert await h.jobs() == []
    await h.result_of(await h.restyle())  # in the server it works


async def test_again_button_in_a_channel_taken_off_the_list_is_refused(h, tmp_path):
    await h.start()
    first = await h.result_of(await h.restyle())
    job_id = (await h.jobs())[0].id
    await h.app.stop()
    await h.fake.close()
    h.app = None
    h2 = Harness(tmp_path)
    try:
        await h2.start(f"[access]\ndiscord_channels = [{CHANNEL + 1}]")
        kept = h2.fake.keep_message({**first, "id": str(h2.fake.new_id())})  # Discord still has the result
        await h2.fake.click(kept, f"restyle:again:{job_id}")
        await h2.fake.wait_for(lambda: ephemerals(h2.fake), what="the refusal")
        assert ephemerals(h2.fake) == [NOT_HERE]
        assert not callbacks(h2.fake, 5)  # no public "thinking"
        assert all(m["flags"] & EPHEMERAL for m in h2.fake.messages.values() if m is not kept)
        assert len(await h2.jobs()) == 1
    finally:
        await h2.close()


async def test_admin_commands_are_registered_for_administrators_only(h):
    await h.start()
    [sync] = h.fake.find("PUT", r"/guilds/\d+/commands$")
    permissions = {c["name"]: c.get("default_member_permissions") for c in sync.json}
    assert {str(permissions[name]) for name in ("ban", "unban", "queue")} == {"8"}  # ADMINISTRATOR
    assert permissions["restyle"] is None and permissions["me"] is None


async def test_an_admin_bans_a_member_whose_waiting_jobs_are_cancelled_then_unbans_them(h):
    await h.start(bot=ADMINS)
    gate = h.hold_engine()
    await h.restyle("keeps the engine busy", user_id=USER)
    await asyncio.to_thread(h.engine.started.wait, 5)
    spam = [await h.restyle(f"spam {i}", user_id=OTHER) for i in range(2)]
    for interaction in spam:
        await h.fake.wait_for(lambda i=interaction: "Queued" in ((h.fake.original(i) or {}).get("content") or ""),
                              what="queued")  # fmt: skip

    await h.fake.slash("ban", {"member": h.fake.user(OTHER, "spammer"), "reason": "flooding the channel"}, user_id=ADMIN)
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the ban")
    assert ephemerals(h.fake) == [f"Banned <@{OTHER}> ({OTHER}): flooding the channel. Cancelled 2 waiting jobs."]
    for interaction in spam:
        await h.fake.wait_for(lambda i=interaction: h.fake.original(i)["content"] == "Cancelled.", what="cancelled")
        assert h.fake.original(interaction)["components"] == []
    assert [j.status for j in await h.jobs()][1:] == ["cancelled", "cancelled"]

    await h.restyle("spam again", user_id=OTHER)
    await h.fake.wait_for(lambda: BANNED in ephemerals(h.fake), what="the refusal")

    await h.fake.slash("unban", {"member": h.fake.user(OTHER, "spammer")}, user_id=ADMIN)
    unbanned = f"Unbanned <@{OTHER}> ({OTHER}); they can use the bot again."
    await h.fake.wait_for(lambda: unbanned in ephemerals(h.fake), what="the unban")
    back = await h.restyle("a calm one", user_id=OTHER)
    await h.fake.wait_for(lambda: "Queued" in ((h.fake.original(back) or {}).get("content") or ""), what="queued")
    gate.set()


async def test_members_who_are_not_admins_are_refused_politely(h):
    await h.start(bot=ADMINS)
    await h.fake.slash("ban", {"member": h.fake.user(OTHER), "reason": "no reason"}, user_id=USER)
    await h.fake.slash("unban", {"member": h.fake.user(OTHER)}, user_id=USER)
    await h.fake.slash("queue", {}, user_id=USER)
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 3, what="three refusals")
    assert sorted(ephemerals(h.fake)) == [f"Sorry, only the bot's admins can use /{c}." for c in ("ban", "queue", "unban")]
    await h.result_of(await h.restyle(user_id=OTHER))  # nobody was banned


async def test_queue_shows_who_is_waiting_and_the_log_shows_who_asked_what_where(h):
    await h.start(bot=ADMINS)
    await h.fake.slash("queue", {}, user_id=ADMIN)
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="/queue")
    assert ephemerals(h.fake)[0].startswith("Nobody is waiting (free 0 · pro 0 · max 0)")
    gate = h.hold_engine()
    await h.restyle("running now", user_id=USER)
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.clock.advance(5)
    second = await h.restyle("second in line", user_id=OTHER)
    await h.fake.wait_for(lambda: "Queued" in ((h.fake.original(second) or {}).get("content") or ""), what="queued")

    await h.fake.slash("queue", {}, user_id=ADMIN)
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 2, what="/queue")
    lines = ephemerals(h.fake)[1].splitlines()
    assert lines[0] == "**Waiting:** free 1 · pro 0 · max 0"
    assert lines[1].startswith("#1 free · job `") and f"<@{OTHER}>" in lines[1] and "“second in line”" in lines[1]
    assert len(lines) == 3  # the running job is not waiting; the last line says how to see the log

    await h.fake.slash("queue", {"show": "log"}, user_id=ADMIN)
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 3, what="/queue show:log")
    lines = ephemerals(h.fake)[2].splitlines()
    assert lines[0] == "**Latest 2 jobs**, newest first:"
    assert f"<@{OTHER}> ({OTHER}) in <#{CHANNEL}> · “second in line” · queued" in lines[1]
    assert f"<@{USER}> ({USER}) in <#{CHANNEL}> · “running now” · running" in lines[2]
    gate.set()


def test_queue_texts_fit_one_discord_message():
    from bot.adapters.discord.texts import DISCORD_STYLE
    from bot.chat.texts import job_log

    entries = [{"id": f"job{i}", "platform": "telegram", "user_id": "1", "reply": {"chat_id": 1, "group": True},
                "prompt": "x" * 500, "status": "failed", "error": "e" * 500, "created_at": 0.0, "finished_at": 1.0}
               for i in range(50)]  # fmt: skip
    text = job_log(entries, DISCORD_STYLE)
    assert len(text) <= 2000 and text.endswith("more lines") and "Telegram chat 1" in text
