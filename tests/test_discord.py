"""The Discord front end end to end: the real discord.py client, the whole app in-process (real
SQLite in tmp_path, FakeEngine, FakeClock), and a fake Discord (REST + gateway) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import random
import re
import threading
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route
from PIL import Image

from bot.adapters.discord.adapter import DiscordAdapter, DiscordStartError
from bot.adapters.discord.connection import TOKEN_TTL_S
from bot.adapters.discord.statuses import TOKEN_MARGIN_S
from bot.adapters.discord.texts import _status_text
from bot.clock import FakeClock
from bot.core.types import Member
from bot.core.dispatch import DELIVERY_BACKOFF_S
from tests.fake_discord import EPHEMERAL, Call, FakeDiscord, RecordingProxy
from tests.fakes import count_admissions, picture_bytes, wait_parked, wait_until
from tests.harness.discord_bot import (
    CHANNEL,
    GUILD,
    OTHER,
    USER,
    Harness,
    callbacks,
    ephemerals,
    h,  # noqa: F401  (a fixture)
    private_answers,
    result_edits,
    size_of,
)

# Start ---------------------------------------------------------------------------------------------


async def test_start_returns_on_ready_and_syncs_commands_to_the_configured_guild(h):
    await h.start()
    assert h.fake.identifies == 1
    names = sorted(c["name"] for c in h.fake.commands[str(GUILD)])
    assert names == ["Restyle image", "ban", "cancel", "grant", "help", "link", "me", "queue", "restyle", "revoke", "styles",
                     "unban", "upgrade"]
    restyle = next(c for c in h.fake.commands[str(GUILD)] if c["name"] == "restyle")
    options = {o["name"]: o for o in restyle["options"]}
    # Only the picture is required: a ready-made style brings its own prompt and strength.
    assert [o["name"] for o in restyle["options"] if o.get("required")] == ["image"]
    assert options["style"]["autocomplete"] and options["style"]["max_length"] == 32
    assert options["strength"]["min_value"] == 0.05 and options["strength"]["max_value"] == 1.0
    assert "subtle" in options["strength"]["description"] and options["strength"]["autocomplete"]
    menu = next(c for c in h.fake.commands[str(GUILD)] if c["name"] == "Restyle image")
    assert menu["type"] == 3  # a message context menu


async def test_without_guild_ids_commands_are_synced_globally(h):
    await h.start(guilds="[]")
    assert sorted(c["name"] for c in h.fake.commands["global"]) == [
        "Restyle image", "ban", "cancel", "grant", "help", "link", "me", "queue", "restyle", "revoke", "styles", "unban", "upgrade"
    ]  # fmt: skip


async def test_commands_are_synced_only_when_they_changed_and_a_scope_switch_removes_the_old_copies(h, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bot.discord")
    await h.start()
    assert len(h.fake.commands[str(GUILD)]) == 13 and h.fake.commands["global"] == []
    await h.app.stop()
    await h.fake.close()
    h.app = None
    h2 = Harness(tmp_path)
    h2.fake.commands = dict(h.fake.commands)  # Discord keeps them
    try:
        await h2.start()
        assert not h2.fake.find("PUT", r"/commands$")
        assert "commands unchanged since the last sync" in caplog.text
    finally:
        await h2.close()
    h3 = Harness(tmp_path)
    h3.fake.commands = dict(h2.fake.commands)
    try:
        await h3.start(guilds="[]")
        assert len(h3.fake.commands["global"]) == 13 and h3.fake.commands[str(GUILD)] == []
        assert "commands synced: removed from server 777; 13 globally" in caplog.text
        await h3.result_of(await h3.fake.slash("restyle", {"image": h3.fake.attachment(picture_bytes()), "prompt": "oil",
                                                           "strength": 0.5}, guild_id=None, channel_id=4444))  # fmt: skip
    finally:
        await h3.close()


async def test_two_processes_starting_at_once_sync_the_commands_from_one_of_them(h, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bot.discord")
    h.fake.answer_late("PUT", r"/commands$", 0.3, times=4)  # a sync takes a while: the other process starts meanwhile
    await h.fake.start()
    other = Harness(tmp_path)  # the second process: same database, same Discord application
    other.fake = h.fake
    library_urls = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    try:
        await asyncio.gather(h.start(), other.start())
        puts = h.fake.find("PUT", r"/commands$")
        assert sorted(c.path for c in puts) == ["/applications/4242/commands", f"/applications/4242/guilds/{GUILD}/commands"]
        assert caplog.text.count("commands synced: 13 to server 777") == 1
        assert "another process is syncing the commands now" in caplog.text
    finally:
        # discord.py keeps these URLs on its classes, and each adapter puts back the ones it found
        # at its start: with two in one process, which one found the real ones depends on who
        # started first. So both stop here, and the real ones go back for the tests after this one.
        for app in (other.app, h.app):
            if app is not None:
                await app.stop()
        h.app = None
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = library_urls


async def test_commands_say_where_they_work_and_admin_ones_are_for_servers_only(h):
    await h.start(guilds="[]")
    commands = {c["name"]: c for c in h.fake.commands["global"]}
    assert sorted(commands["restyle"]["contexts"]) == [0, 1, 2] and sorted(commands["restyle"]["integration_types"]) == [0, 1]
    for name in ("ban", "unban", "queue", "grant", "revoke"):
        assert commands[name]["contexts"] == [0] and commands[name]["integration_types"] == [0]
    with pytest.raises(AssertionError, match="offers no command 'ban'"):
        await h.fake.slash("ban", {"member": h.fake.user(USER), "reason": "x"}, guild_id=None, channel_id=4444)


async def test_library_urls_point_at_the_config_while_running_and_are_restored_on_stop(h):
    before = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    await h.start()
    assert Route.BASE == h.fake.api_base
    await h.app.stop()
    h.app = None
    assert (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY) == before


async def test_a_refused_token_fails_start_with_a_clear_error(h):
    h.fake.fail("GET", r"^/users/@me$", 401, message="401: Unauthorized")
    with pytest.raises(DiscordStartError, match="refused the bot token"):
        await h.start()
    assert not h.app.health.store_open  # the failed start closed what it had opened
    h.app = None
    assert Route.BASE.startswith("https://discord.com")


@pytest.mark.slow
async def test_no_ready_from_the_gateway_fails_start_within_the_timeout(h, monkeypatch):
    async def silent(self, request):  # accepts the socket, never says HELLO
        from aiohttp import web

        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:  # until the bot gives up and closes it
            pass
        return ws

    monkeypatch.setattr(FakeDiscord, "_gateway", silent)
    with pytest.raises(DiscordStartError, match="did not answer within"):
        await h.start(ready_timeout_s=0.5)
    h.app = None


# /restyle ------------------------------------------------------------------------------------------


async def test_slash_restyle_defers_shows_queue_and_progress_then_edits_in_original_and_result_with_buttons(h):
    await h.start()
    gate = h.hold_engine()
    interaction = await h.restyle("oil painting", 0.5, seed=42)

    # Deferred at once (a public "thinking" response), the picture fetched from its signed link.
    await h.fake.wait_for(lambda: callbacks(h.fake, 5), what="the defer")
    assert not callbacks(h.fake, 5)[0].flags & EPHEMERAL
    await h.fake.wait_for(lambda: h.fake.find("GET", r"^/files/"), what="the download after the defer")
    # The status message shows the running job with a Cancel button.
    status = await h.fake.wait_for(
        lambda: [c for c in h.fake.find("PATCH", r"^/webhooks/") if "Restyling" in (c.content or "")],
        what="a progress edit",
    )
    job_id = status[-1].custom_ids[0].split(":")[2]
    assert status[-1].custom_ids == [f"restyle:cancel:{job_id}"]
    gate.set()

    message = await h.result_of(interaction)
    assert [a["filename"] for a in message["attachments"]] == [
        f"before-after-{job_id}.jpg", f"original-{job_id}.png", f"restyled-{job_id}.png"
    ]  # the comparison first: Discord shows it largest
    assert "oil painting" in message["content"] and "seed 42" in message["content"]
    assert [c for c in h.fake.messages[int(message["id"])]["components"][0]["components"]][0]["custom_id"] == f"restyle:again:{job_id}"
    edit = result_edits(h.fake)[-1]
    assert edit.custom_ids == [f"restyle:{a}:{job_id}" for a in ("again", "subtler", "stronger", "sweep", "png", "webp", "jpeg")]
    both, original, result = (data for _, data, _ in edit.files)
    assert size_of(original) == size_of(result) == (256, 256)
    assert size_of(both) == (256 + 4 + 256, 256)  # side by side, a thin line between
    job = (await h.jobs())[0]
    assert job.strength == 0.5 and job.seed == 42 and job.reply["kind"] == "interaction"
    assert len(result_edits(h.fake)) == 1


async def test_with_a_public_url_the_result_has_a_compare_link_button(h):
    await h.start('[web]\nport = 0\npublic_url = "https://restyle.example.org"')
    message = await h.result_of(await h.restyle("oil painting"))
    job = (await h.jobs())[0]
    buttons = [c for row in message["components"] for c in row["components"]]
    [link] = [b for b in buttons if b.get("style") == 5]
    assert link["label"] == "Compare ↗" and "custom_id" not in link
    assert link["url"].startswith(f"https://restyle.example.org/compare/{job.id}?until=")
    until, sig = (part.split("=", 1)[1] for part in link["url"].split("?", 1)[1].split("&"))
    links = h.app.service.compare_links
    assert links is not None and links.problem(job.id, until, sig, h.clock.now()) is None


async def test_a_status_message_whose_id_was_never_learnt_is_edited_through_original(h):
    await h.start()
    h.fake.hide_response_message_id = True
    h.fake.fail("GET", r"^/webhooks/\d+/[^/]+/messages/(@|%40)original$", 404, code=10008, times=-1)
    interaction = await h.restyle()
    result = await h.result_of(interaction)
    assert result["components"] and not result["flags"] & EPHEMERAL
    edits = h.fake.find("PATCH", rf"^/webhooks/\d+/{interaction['token']}/messages/(@|%40)original$")
    assert any("Queued" in (c.content or "") for c in edits) and len(edits[-1].files) == 3
    assert not h.fake.find("POST", r"^/channels/")  # not posted anew


async def test_slash_restyle_in_a_dm_with_the_bot_works_the_same(h):
    await h.start(guilds="[]")  # guild commands do not exist in DMs: global ones do
    interaction = await h.fake.slash(
        "restyle", {"image": h.fake.attachment(picture_bytes()), "prompt": "oil painting", "strength": 0.3},
        guild_id=None, channel_id=4444,
    )
    await h.result_of(interaction)
    job = (await h.jobs())[0]
    assert job.reply["guild_id"] is None and job.reply["channel_id"] == "4444" and job.strength == 0.3


async def test_result_files_are_re_encoded_to_fit_the_interactions_upload_limit(h):
    await h.start()
    noise = Image.frombytes("RGB", (256, 256), bytes(random.Random(3).randbytes(256 * 256 * 3)))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 150_000
    interaction = await h.fake.slash(
        "restyle", {"image": h.fake.attachment(buffer.getvalue()), "prompt": "static", "strength": 0.5},
        size_limit=300_000,
    )
    await h.result_of(interaction)
    files = result_edits(h.fake)[-1].files
    assert sum(len(data) for _, data, _ in files) <= 300_000
    assert [data[:4] == b"\x89PNG" for _, data, _ in files] == [False, True, True]  # a JPEG before/after first


async def test_queue_position_is_shown_while_waiting(h):
    await h.start()
    gate = h.hold_engine()
    await h.restyle("first", user_id=USER)
    await asyncio.to_thread(h.engine.started.wait, 5)
    second = await h.restyle("second", user_id=OTHER)
    await h.fake.wait_for(
        lambda: any("Queued: #1" in (c.content or "") for c in h.fake.find("PATCH", rf"/webhooks/\d+/{second['token']}/")),
        what="the queue position",
    )
    gate.set()
    await h.result_of(second)


async def test_a_file_that_is_not_a_picture_gets_an_ephemeral_explanation_with_an_example_and_no_defer(h):
    await h.start()
    pdf = h.fake.attachment(b"%PDF-1.4", filename="notes.pdf", content_type="application/pdf")
    await h.restyle(image=pdf)
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="an ephemeral answer")
    text = ephemerals(h.fake)[0]
    assert "not a picture" in text and "/restyle image:" in text
    assert not callbacks(h.fake, 5) and not h.fake.find("GET", r"^/files/")


async def test_a_picture_over_the_size_limit_is_refused_before_downloading(h):
    await h.start()
    big = h.fake.attachment(picture_bytes(), size=30_000_000)
    await h.restyle(image=big)
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="an ephemeral answer")
    assert "30.0 MB" in ephemerals(h.fake)[0]
    assert not h.fake.find("GET", r"^/files/")


async def test_a_service_refusal_after_the_defer_replaces_the_public_response_with_an_ephemeral_one(h):
    await h.start()
    interaction = await h.restyle(steps=20)  # the free tier allows 8
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the refusal")
    assert "up to 8 steps" in ephemerals(h.fake)[0]
    assert h.fake.find("DELETE", rf"^/webhooks/\d+/{interaction['token']}/messages/@original$")
    assert h.fake.original(interaction) is None
    assert await h.jobs() == []


async def test_a_refusal_never_becomes_public_when_the_deferred_response_cannot_be_deleted(h):
    await h.start()
    h.fake.fail("DELETE", r"^/webhooks/\d+/[^/]+/messages/@original$", 400, code=50035, times=-1)
    interaction = await h.restyle(steps=20)  # the free tier allows 8
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the refusal")
    public = h.fake.original(interaction)
    assert not public["flags"] & EPHEMERAL and "steps" not in public["content"]  # the public message says nothing of it
    assert public["content"] == "This request was not started."
    refusal = h.fake.messages[max(h.fake.messages)]
    assert refusal["flags"] & EPHEMERAL and "up to 8 steps" in refusal["content"]


async def test_a_damaged_picture_is_explained_with_an_example(h):
    await h.start()
    await h.restyle(image=h.fake.attachment(b"\x89PNG\r\n\x1a\n broken", filename="cut.png"))
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the refusal")
    assert "For example: `/restyle image:" in ephemerals(h.fake)[0]


async def test_a_crash_on_our_side_leaves_no_public_thinking_message_and_says_so_privately(h, monkeypatch):
    await h.start()

    async def broken(*args, **kwargs):
        raise RuntimeError("disk on fire (fake)")

    monkeypatch.setattr(h.service.jobs, "submit", broken)
    interaction = await h.restyle()
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the apology")
    assert "Something went wrong on my side" in ephemerals(h.fake)[0]
    assert h.fake.original(interaction) is None


async def test_outside_the_allowed_channels_restyle_is_refused_privately(h):
    await h.start(f"[access]\ndiscord_channels = [{CHANNEL + 1}]")
    await h.restyle()
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the refusal")
    assert "not enabled in this chat" in ephemerals(h.fake)[0]
    assert not callbacks(h.fake, 5) and not h.fake.find("GET", r"^/files/")
    await h.fake.context_menu(h.fake.message(CHANNEL, guild_id=GUILD, attachments=[h.fake.attachment(picture_bytes())]))
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 2, what="the second refusal")
    assert not callbacks(h.fake, 9)


async def test_threads_and_forum_posts_under_an_allowed_channel_are_allowed(h):
    await h.start(f"[access]\ndiscord_channels = [{CHANNEL}]")
    thread = h.fake.thread(CHANNEL)
    post = h.fake.thread(CHANNEL, forum=True)
    elsewhere = h.fake.thread(CHANNEL + 1)
    for channel_id in (thread, post, elsewhere):
        await h.fake.slash("restyle", {"image": h.fake.attachment(picture_bytes()), "prompt": "oil", "strength": 0.5},
                           channel_id=channel_id)  # fmt: skip
    await h.fake.wait_for(lambda: len(result_edits(h.fake)) == 2, what="two results")
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the refusal")
    assert ["not enabled in this chat" in t for t in ephemerals(h.fake)] == [True]
    assert sorted(int(j.reply["channel_id"]) for j in await h.jobs()) == sorted([thread, post])


# "Restyle image" on a message -------------------------------------------------------------------------


async def test_context_menu_opens_a_form_and_its_submission_restyles_the_messages_picture(h):
    await h.start()
    target = h.fake.message(CHANNEL, author=h.fake.user(3003, "poster"), guild_id=GUILD,
                            attachments=[h.fake.attachment(picture_bytes((96, 64)), filename="cat.jpg", content_type="image/jpeg")])  # fmt: skip
    await h.fake.context_menu(target)
    modal_call = (await h.fake.wait_for(lambda: callbacks(h.fake, 9), what="the form"))[0]
    assert sorted(modal_call.custom_ids) == ["prompt", "strength"]
    submit = await h.fake.modal_submit(modal_call, {"prompt": "watercolor seed=7", "strength": "heavy"})
    message = await h.result_of(submit)
    job = (await h.jobs())[0]
    assert (job.prompt, job.strength, job.seed) == ("watercolor", 0.8, 7)
    assert message["attachments"][2]["filename"] == f"restyled-{job.id}.png"


async def test_context_menu_takes_an_embedded_picture(h):
    await h.start()
    url = h.fake.serve_file("linked.png", picture_bytes())
    target = h.fake.message(CHANNEL, guild_id=GUILD, content=url,
                            embeds=[{"type": "image", "url": url, "thumbnail": {"url": url, "proxy_url": url}}])  # fmt: skip
    await h.fake.context_menu(target)
    modal_call = (await h.fake.wait_for(lambda: callbacks(h.fake, 9), what="the form"))[0]
    submit = await h.fake.modal_submit(modal_call, {"prompt": "pencil sketch", "strength": ""})
    await h.result_of(submit)
    assert (await h.jobs())[0].strength == 0.5  # the configured default


async def test_an_embedded_picture_is_fetched_only_from_discords_own_hosts(h):
    await h.start()
    # A link embed's own URL names whatever host the poster chose (here "localhost", which is not
    # where Discord's CDN is in this test: 127.0.0.1); only Discord's copy (proxy_url) would do.
    url = h.fake.serve_file("linked.png", picture_bytes()).replace("127.0.0.1", "localhost")
    target = h.fake.message(CHANNEL, guild_id=GUILD, content=url, embeds=[{"type": "image", "url": url, "thumbnail": {"url": url}}])
    await h.fake.context_menu(target)
    modal_call = (await h.fake.wait_for(lambda: callbacks(h.fake, 9), what="the form"))[0]
    await h.fake.modal_submit(modal_call, {"prompt": "pencil sketch", "strength": ""})
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the refusal")
    assert "only take pictures from Discord" in ephemerals(h.fake)[0]
    assert not h.fake.find("GET", r"^/files/") and await h.jobs() == []


async def test_context_menu_on_a_message_without_a_picture_explains(h):
    await h.start()
    await h.fake.context_menu(h.fake.message(CHANNEL, content="just words", guild_id=GUILD))
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the explanation")
    assert "no picture" in ephemerals(h.fake)[0] and "/restyle image:" in ephemerals(h.fake)[0]


async def test_a_bad_strength_in_the_form_gets_the_grammars_words(h):
    await h.start()
    target = h.fake.message(CHANNEL, guild_id=GUILD, attachments=[h.fake.attachment(picture_bytes())])
    await h.fake.context_menu(target)
    modal_call = (await h.fake.wait_for(lambda: callbacks(h.fake, 9), what="the form"))[0]
    await h.fake.modal_submit(modal_call, {"prompt": "watercolor", "strength": "0,5"})
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the refusal")
    assert "Use a dot: strength=0.5" in ephemerals(h.fake)[0]
    assert not h.fake.find("GET", r"^/files/")


# Buttons ------------------------------------------------------------------------------------------------


async def test_again_and_stronger_run_new_jobs_from_the_same_picture(h):
    await h.start()
    first = await h.result_of(await h.restyle("oil painting", 0.5))
    job_id = (await h.jobs())[0].id
    again = await h.fake.click(first, f"restyle:again:{job_id}")
    await h.follow_up_result(again)
    stronger = await h.fake.click(first, f"restyle:stronger:{job_id}")
    await h.follow_up_result(stronger)
    jobs = await h.jobs()
    assert [j.strength for j in jobs] == [0.5, 0.5, 0.65]  # STRENGTH_STEP
    assert jobs[1].parent_job_id == jobs[2].parent_job_id == job_id
    assert jobs[1].seed != jobs[0].seed
    assert len(h.fake.find("GET", r"^/files/")) == 1  # no new download
    assert len(h.fake.messages[int(first["id"])]["attachments"]) == 3  # the first result stays as it was


@pytest.mark.parametrize("action", ["again", "subtler", "stronger"])
async def test_again_subtler_and_stronger_answer_before_touching_the_database(h, action):
    await h.start()
    first = await h.result_of(await h.restyle())
    job_id = (await h.jobs())[0].id
    await h.service.dispatch.wait_delivered()
    gate = h.hold_database()
    click = await h.fake.click(first, f"restyle:{action}:{job_id}")
    try:
        await h.fake.wait_for(lambda: len(callbacks(h.fake)) == 2, what="the click answered")
    finally:
        gate.set()
    assert callbacks(h.fake)[-1].json["type"] == 6  # an update of the result message: nothing shown yet
    result = await h.follow_up_result(click)
    assert not result["flags"] & EPHEMERAL and result["id"] != first["id"]


async def test_a_refused_again_click_is_said_privately_and_leaves_no_public_message(h):
    await h.start()
    first = await h.result_of(await h.restyle())
    job_id = (await h.jobs())[0].id
    await h.service.dispatch.wait_delivered()
    gate = h.hold_engine()
    await h.restyle("running")
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.restyle("waiting")  # the free tier's 2 jobs at once
    await h.fake.wait_for(lambda: len(callbacks(h.fake)) == 3, what="both answered")
    h.fake.fail("DELETE", r"^/webhooks/\d+/[^/]+/messages/\d+$", 400, code=50035, times=1)  # the first withdrawal fails
    for count in (1, 2):
        await h.fake.click(first, f"restyle:again:{job_id}")
        await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == count, what="the refusal")
    assert all("You already have 2 jobs waiting" in text for text in ephemerals(h.fake))
    ours = [m for m in h.fake.messages.values() if m["author"]["id"] == h.fake.bot_user["id"]
            and int(m["id"]) > int(first["id"]) and not m["attachments"] and not m["components"]]  # fmt: skip
    public = [m for m in ours if not m["flags"] & EPHEMERAL]
    assert [m["content"] for m in public] == ["This request was not started."]  # the one that could not be deleted
    assert len([m for m in ours if m["flags"] & EPHEMERAL]) == 2
    assert len(await h.jobs()) == 3
    gate.set()


async def test_png_button_sends_the_result_file_privately(h):
    await h.start()
    first = await h.result_of(await h.restyle())
    job_id = (await h.jobs())[0].id
    await h.fake.click(first, f"restyle:jpeg:{job_id}")
    sent = await h.fake.wait_for(lambda: [c for c in h.fake.find("POST", r"^/webhooks/\d+/[^/]+$") if c.files],
                                 what="the file")  # fmt: skip
    assert sent[0].flags & EPHEMERAL
    name, data, _ = sent[0].files[0]
    assert name == f"restyled-{job_id}.jpg" and data[:3] == b"\xff\xd8\xff"


async def test_buttons_answer_only_the_member_who_made_the_job(h):
    await h.start()
    first = await h.result_of(await h.restyle())
    job_id = (await h.jobs())[0].id
    for action in ("again", "png", "stronger"):
        await h.fake.click(first, f"restyle:{action}:{job_id}", user_id=OTHER)
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 3, what="three refusals")
    assert set(ephemerals(h.fake)) == {"Only the member who asked for this picture can use its buttons."}
    assert len(await h.jobs()) == 1
    assert not [c for c in callbacks(h.fake, 5)[1:] if not c.flags & EPHEMERAL]  # nothing public for a stranger's click


async def test_the_file_and_cancel_buttons_answer_before_touching_the_database(h):
    await h.start()
    first = await h.result_of(await h.restyle())
    job_id = (await h.jobs())[0].id
    gate = h.hold_database()
    try:
        await h.fake.click(first, f"restyle:png:{job_id}")
        await h.fake.wait_for(lambda: len(callbacks(h.fake)) == 2, what="the click answered")
    finally:
        gate.set()
    assert callbacks(h.fake)[-1].json["type"] == 5 and callbacks(h.fake)[-1].flags & EPHEMERAL
    await h.fake.wait_for(lambda: [c for c in private_answers(h.fake) if c.files], what="the file")

    engine = h.hold_engine()
    await h.restyle("held")
    await asyncio.to_thread(h.engine.started.wait, 5)  # "held" is on the engine: "waits" is behind it
    second = await h.restyle("waits")
    status = await h.fake.wait_for(lambda: (m := h.fake.original(second)) and m["components"] and m, what="status")
    [second_id] = [job.id for job in await h.jobs() if job.prompt == "waits"]
    gate = h.hold_database()
    try:
        await h.fake.click(status, f"restyle:cancel:{second_id}")
        await h.fake.wait_for(lambda: len(callbacks(h.fake)) == 5, what="the cancel answered")
    finally:
        gate.set()
    assert callbacks(h.fake)[-1].json["type"] == 6  # an update of the status message, nothing new shown
    await h.fake.wait_for(lambda: h.fake.original(second)["content"] == "✖️ Cancelled.", what="cancelled")
    assert h.fake.original(second)["components"] == []
    engine.set()


async def test_buttons_keep_working_after_a_restart(h, tmp_path):
    await h.start()
    first = await h.result_of(await h.restyle())
    job_id = (await h.jobs())[0].id
    await h.app.stop()
    await h.fake.close()
    h2 = Harness(tmp_path)
    try:
        await h2.start()
        kept = h2.fake.keep_message({**first, "id": str(h2.fake.new_id())})  # Discord still has the result
        again = await h2.fake.click(kept, f"restyle:again:{job_id}")
        await h2.follow_up_result(again)
        assert len(await h2.jobs()) == 2
    finally:
        h.app = None
        await h2.close()


async def test_cancel_clicked_after_the_job_finished_says_too_late_privately(h):
    await h.start()
    interaction = await h.restyle()
    message = await h.result_of(interaction)
    job_id = (await h.jobs())[0].id
    # A click that raced the result: the status, with its Cancel button, as the member still saw it.
    status = h.fake.keep_message({**message, "id": str(h.fake.new_id()), "components": [{"type": 1, "components": [
        {"type": 2, "style": 4, "label": "Cancel", "custom_id": f"restyle:cancel:{job_id}"}]}]})  # fmt: skip
    await h.fake.click(status, f"restyle:cancel:{job_id}")
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the answer")
    assert ephemerals(h.fake) == ["Too late to cancel: that job has already finished."]
    assert (await h.jobs())[0].status == "done" and h.fake.original(interaction)["content"] == message["content"]


async def test_cancel_button_on_the_status_stops_the_job(h):
    await h.start()
    gate = h.hold_engine()
    first = await h.restyle("first")
    await asyncio.to_thread(h.engine.started.wait, 5)
    second = await h.restyle("second")
    status = await h.fake.wait_for(lambda: (m := h.fake.original(second)) and m["components"] and m, what="status")
    job_id = (await h.jobs())[1].id
    await h.fake.click(status, f"restyle:cancel:{job_id}", user_id=OTHER)
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="a refusal for a stranger")
    await h.fake.click(status, f"restyle:cancel:{job_id}")
    await h.fake.wait_for(lambda: h.fake.original(second)["content"] == "✖️ Cancelled.", what="cancelled")
    assert h.fake.original(second)["components"] == []
    assert (await h.jobs())[1].status == "cancelled"
    gate.set()
    await h.result_of(first)  # the worker moved on past the cancelled job
    await h.service.dispatch.wait_delivered()
    assert [j.status for j in await h.jobs()] == ["done", "cancelled"]
    assert h.fake.original(second)["content"] == "✖️ Cancelled."  # no late status edit


# /me, /help, /cancel ----------------------------------------------------------------------------------


async def test_me_help_and_cancel_answer_privately(h):
    await h.start()
    gate = h.hold_engine()
    interaction = await h.restyle("first")
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.fake.slash("me", {})
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 1, what="/me")
    assert "Tier: **free**" in ephemerals(h.fake)[0] and "restyling" in ephemerals(h.fake)[0]
    await h.fake.slash("help", {})
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 2, what="/help")
    assert "0.7–0.9 heavy rework" in ephemerals(h.fake)[1]
    await h.fake.slash("cancel", {})
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 3, what="/cancel")
    assert ephemerals(h.fake)[2] == "Cancelled 1 job."
    await h.fake.wait_for(lambda: "Cancelled with /cancel" in h.fake.original(interaction)["content"], what="status")
    gate.set()


async def test_cancel_commands_words_outlast_the_plain_cancelled_its_jobs_update_asks_for(h):
    """/cancel ends the status with its own words while the job's "cancelled" update asks for
    the plain "Cancelled." too; whichever reaches the message last, the command's words stay."""
    await h.start()
    gate = h.hold_engine()
    interaction = await h.restyle("first")
    await h.fake.wait_for(lambda: (m := h.fake.original(interaction)) and m["components"], what="the status")
    [job] = await h.jobs()
    cancelled = dataclasses.replace(await h.service.jobs.job(job.id), status="cancelled")
    await asyncio.gather(
        h.adapter._finish_status(job.id, "Cancelled with /cancel."),  # the command's, first in
        h.adapter.job_updated(cancelled),  # the update's, behind it
    )
    assert "Cancelled with /cancel." in h.fake.original(interaction)["content"]
    gate.set()


async def test_a_progress_update_arriving_after_cancel_does_not_reopen_its_status(h):
    """A progress update sent before /cancel but heard after it makes the status known again;
    the job's "cancelled" update behind it must still leave /cancel's words."""
    await h.start()
    gate = h.hold_engine()
    interaction = await h.restyle("first")
    await h.fake.wait_for(lambda: (m := h.fake.original(interaction)) and m["components"], what="the status")
    [job] = await h.jobs()
    running = dataclasses.replace(await h.service.jobs.job(job.id), status="running", progress=0.4)
    await h.adapter._finish_status(job.id, "Cancelled with /cancel.")
    await h.adapter.job_updated(running)  # late: sent before the cancel
    await h.adapter.job_updated(dataclasses.replace(running, status="cancelled"))
    await h.fake.wait_for(lambda: not h.adapter._statuses.follows(job.id), what="the late update to be dropped")
    assert h.fake.original(interaction)["content"] == "Cancelled with /cancel."
    gate.set()


ADMIN = 9001


@pytest.mark.parametrize("name,options", [
    ("me", {}), ("cancel", {}), ("upgrade", {}), ("upgrade", {"code": "RS-AAAA-BBBB-CCCC"}), ("link", {}),
    ("queue", {}), ("ban", {"member": "target", "reason": "spam"}), ("unban", {"member": "target"}),
    ("grant", {"member": "target", "tier": "pro", "days": 3}), ("revoke", {"member": "target"}),
])  # fmt: skip
async def test_every_command_answers_privately_before_touching_the_database(h, name, options):
    await h.start(bot=f'admins = ["discord:{ADMIN}"]')
    gate = h.hold_database()
    options = {k: h.fake.user(USER, "ana") if v == "target" else v for k, v in options.items()}
    await h.fake.slash(name, options, user_id=ADMIN)
    try:
        [defer] = await h.fake.wait_for(lambda: callbacks(h.fake), what="the first answer")
    finally:
        gate.set()
    assert defer.json["type"] == 5 and defer.flags & EPHEMERAL  # deferred, privately
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the answer")
    [answer] = private_answers(h.fake)
    assert answer.path.startswith("/webhooks/")
    # the answer replaced the private "thinking" message: nothing public was left behind
    assert all(m["flags"] & EPHEMERAL for m in h.fake.messages.values() if m["author"]["id"] == h.fake.bot_user["id"]
               and m["channel_id"] == str(CHANNEL))  # fmt: skip


# Tokens, faults -----------------------------------------------------------------------------------------


async def test_a_job_outliving_the_follow_up_token_is_posted_in_the_channel_mentioning_the_member(h):
    await h.start()
    gate = h.hold_engine()
    interaction = await h.restyle()
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.fake.wait_for(lambda: h.fake.original(interaction)["components"], what="status")
    await h.clock.advance(11 * 60)
    h.service.batches.report_progress((await h.jobs())[0].id, 0.5)
    await h.fake.wait_for(lambda: "post it in this channel" in h.fake.original(interaction)["content"], what="the note")
    await h.clock.advance(5 * 60)
    gate.set()
    posted = await h.fake.wait_for(lambda: h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$"), what="a channel post")
    call = posted[0]
    assert call.content.startswith(f"<@{USER}> ✨") and len(call.files) == 3
    assert call.json["allowed_mentions"] == {"parse": [], "users": [USER]}  # the member only
    assert call.custom_ids[0].startswith("restyle:again:")
    # The expired token was never used for the result.
    assert not result_edits(h.fake)


async def test_the_tokens_15_minutes_count_from_the_interactions_creation_not_its_arrival(h):
    await h.start()
    gate = h.hold_engine()
    interaction = await h.fake.slash("restyle", {"image": h.fake.attachment(picture_bytes()), "prompt": "oil", "strength": 0.5},
                                     created_ago_s=2.5)  # the event reached the bot 2.5 s after Discord made it  # fmt: skip
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.fake.wait_for(lambda: (m := h.fake.original(interaction)) and "Restyling" in m["content"], what="running")
    await h.clock.advance(TOKEN_TTL_S - TOKEN_MARGIN_S - 1.0)  # 14:29 after it arrived, 14:31.5 after it was made
    gate.set()
    await h.fake.wait_for(lambda: h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$"), what="the result posted anew")
    assert not [c for c in h.fake.find("PATCH", r"^/webhooks/", ok=False) if c.files]  # nor tried with the token


def test_the_token_clock_starts_at_creation_but_never_long_before_arrival_nor_after_it():
    adapter = DiscordAdapter.__new__(DiscordAdapter)
    adapter.service = SimpleNamespace(clock=FakeClock(1_800_000_000.0))

    def made(t: float) -> Any:
        return SimpleNamespace(created_at=datetime.fromtimestamp(t, timezone.utc))

    assert adapter._created_at(made(1_800_000_000.0 - 2.5)) == pytest.approx(1_800_000_000.0 - 2.5)
    assert adapter._created_at(made(1_800_000_000.0 - 3600)) == 1_800_000_000.0 - 5.0  # our clock is an hour ahead
    assert adapter._created_at(made(1_800_000_000.0 + 60)) == 1_800_000_000.0  # or behind


async def test_past_the_token_the_stale_status_is_ended_as_the_bot(h):
    await h.start()
    gate = h.hold_engine()
    interaction = await h.restyle()
    await asyncio.to_thread(h.engine.started.wait, 5)
    status = await h.fake.wait_for(lambda: (m := h.fake.original(interaction)) and "Restyling" in m["content"] and m,
                                   what="the running status")  # fmt: skip
    assert status["components"]  # with its Cancel button
    await h.clock.advance(16 * 60)
    gate.set()
    await h.fake.wait_for(lambda: h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$"), what="the result posted anew")
    await h.fake.wait_for(lambda: h.fake.find("PATCH", rf"^/channels/{CHANNEL}/messages/{status['id']}$"), what="the status ended")
    assert status["content"] == "✅ Done: the result is in a new message." and status["components"] == []


async def test_a_user_installed_app_promises_and_uses_a_dm_where_the_bot_cannot_post(h):
    await h.start()
    gate = h.hold_engine()
    interaction = await h.fake.slash("restyle", {"image": h.fake.attachment(picture_bytes()), "prompt": "oil",
                                                 "strength": 0.5}, user_installed=True)  # fmt: skip
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.fake.wait_for(lambda: (m := h.fake.original(interaction)) and m["components"], what="status")
    await h.clock.advance(11 * 60)
    h.service.batches.report_progress((await h.jobs())[0].id, 0.5)
    await h.fake.wait_for(lambda: "by direct message" in h.fake.original(interaction)["content"], what="the note")
    assert "post it in this channel" not in h.fake.original(interaction)["content"]
    await h.clock.advance(5 * 60)
    gate.set()
    dm = await dm_of(h)
    assert len(dm.files) == 3
    assert not h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$", ok=False)  # never tried as the bot


async def test_a_deleted_channel_after_the_token_expired_sends_the_result_by_dm(h):
    await h.start()
    gate = h.hold_engine()
    await h.restyle()
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.clock.advance(16 * 60)
    h.fake.delete_channel(CHANNEL)
    gate.set()
    dm_channel = await h.fake.wait_for(lambda: h.fake.dm_channels.get(USER), what="a DM channel")
    dm = await h.fake.wait_for(lambda: h.fake.find("POST", rf"^/channels/{dm_channel}/messages$"), what="the DM")
    assert "channel you asked in is gone" in dm[0].content and len(dm[0].files) == 3


async def test_missing_permission_in_the_channel_sends_the_result_by_dm_saying_why(h):
    await h.start()
    gate = h.hold_engine()
    await h.restyle()
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.clock.advance(16 * 60)
    h.fake.fail("POST", rf"^/channels/{CHANNEL}/messages$", 403, times=-1)
    gate.set()
    dm_channel = await h.fake.wait_for(lambda: h.fake.dm_channels.get(USER), what="a DM channel")
    dm = await h.fake.wait_for(lambda: h.fake.find("POST", rf"^/channels/{dm_channel}/messages$"), what="the DM")
    assert "not allowed to post in" in dm[0].content


async def test_a_deleted_status_message_gets_the_result_as_a_new_channel_message(h):
    await h.start()
    gate = h.hold_engine()
    interaction = await h.restyle()
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.fake.wait_for(lambda: h.fake.original(interaction)["components"], what="status")
    h.fake.delete_message(h.fake.original(interaction)["id"])
    gate.set()
    posted = await h.fake.wait_for(lambda: h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$"), what="a channel post")
    assert posted[0].content.startswith(f"<@{USER}>") and len(posted[0].files) == 3


async def outlive_the_token(h: Harness, **start: Any) -> threading.Event:
    """A job still running when its interaction token has expired: the result must be posted anew."""
    await h.start(**start)
    gate = h.hold_engine()
    await h.restyle()
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.clock.advance(16 * 60)
    return gate


async def dm_of(h: Harness) -> Call:
    dm_channel = await h.fake.wait_for(lambda: h.fake.dm_channels.get(USER), what="a DM channel")
    [dm] = await h.fake.wait_for(lambda: h.fake.find("POST", rf"^/channels/{dm_channel}/messages$"), what="the DM")
    return dm


async def test_an_archived_thread_sends_the_result_by_dm_instead_of_retrying(h):
    gate = await outlive_the_token(h)
    h.fake.archived_threads.add(CHANNEL)
    gate.set()
    dm = await dm_of(h)
    assert "is archived" in dm.content and len(dm.files) == 3
    assert [c.status for c in h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$", ok=False)] == [400]


async def test_pictures_too_large_for_the_channel_go_by_dm_re_encoded_to_its_10_mib(h, monkeypatch):
    import bot.adapters.discord.delivery as delivery_module

    limits: list[int] = []
    real = delivery_module._result_files
    monkeypatch.setattr(delivery_module, "_result_files", lambda d, limit: limits.append(limit) or real(d, limit))
    await h.start()
    gate = h.hold_engine()
    await h.fake.slash("restyle", {"image": h.fake.attachment(picture_bytes()), "prompt": "oil", "strength": 0.5},
                       size_limit=25 * 1024 * 1024)  # a boosted server  # fmt: skip
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.clock.advance(16 * 60)
    h.fake.channel_size_limits[CHANNEL] = 100  # the channel takes less than these pictures
    gate.set()
    dm = await dm_of(h)
    assert "too large" in dm.content and len(dm.files) == 3
    assert limits == [25 * 1024 * 1024, 10 * 1024 * 1024]


async def test_a_missing_permission_is_named_in_the_dm(h):
    gate = await outlive_the_token(h)
    h.fake.denied[CHANNEL] = {"ATTACH_FILES"}
    gate.set()
    dm = await dm_of(h)
    assert "I need Send Messages and Attach Files there" in dm.content


async def test_dms_closed_as_a_400_is_a_permanent_failure_not_a_loop(h):
    gate = await outlive_the_token(h)
    h.fake.delete_channel(CHANNEL)
    h.fake.fail("POST", r"^/channels/\d+/messages$", 400, times=-1, code=50007, message="Cannot send messages to this user")
    gate.set()
    await h.fake.wait_for(lambda: h.service.dispatch.delivery_failures == 1, what="the failure")
    await asyncio.wait_for(h.service.dispatch.wait_delivered(), 5)  # permanent: no retry waits on the clock
    assert h.service.dispatch.delivery_failures == 1


async def test_a_refused_post_that_cannot_succeed_fails_at_once_with_the_reason(h, caplog):
    gate = await outlive_the_token(h)
    h.fake.fail("POST", rf"^/channels/{CHANNEL}/messages$", 400, times=-1, code=50035, message="Invalid Form Body")
    gate.set()
    await h.fake.wait_for(lambda: h.service.dispatch.delivery_failures == 1, what="the failure")
    await asyncio.wait_for(h.service.dispatch.wait_delivered(), 5)
    assert "Discord refused the post in" in caplog.text and "Invalid Form Body" in caplog.text


async def test_a_retried_post_whose_answer_was_lost_is_not_posted_twice(h):
    gate = await outlive_the_token(h, request_timeout_s=0.3)
    h.fake.answer_late("POST", rf"^/channels/{CHANNEL}/messages$", 1.0)  # posted, but the bot gives up waiting
    gate.set()
    await h.fake.wait_for(lambda: h.service.dispatch.delivery_failures == 1, what="the first try to give up")
    await wait_parked(h.clock, h.clock.now() + DELIVERY_BACKOFF_S[0])
    await h.clock.advance(DELIVERY_BACKOFF_S[0])
    await h.fake.wait_for(lambda: len(h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$")) == 2, what="the retry")
    await asyncio.wait_for(h.service.dispatch.wait_delivered(), 5)
    first, second = h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$")
    assert first.json["nonce"] == second.json["nonce"] and first.json["enforce_nonce"] is True
    posted = [m for m in h.fake.messages.values() if m["channel_id"] == str(CHANNEL) and len(m["attachments"]) == 3]
    assert len(posted) == 1


async def test_a_member_who_cannot_be_reached_at_all_is_a_permanent_failure_not_a_loop(h):
    await h.start()
    gate = h.hold_engine()
    await h.restyle()
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.clock.advance(16 * 60)
    h.fake.delete_channel(CHANNEL)
    h.fake.fail("POST", r"^/channels/\d+/messages$", 403, times=-1, code=50007, message="Cannot send messages to this user")
    gate.set()
    await h.fake.wait_for(lambda: h.fake.dm_channels.get(USER), what="a DM attempt")
    await h.fake.wait_for(lambda: h.service.dispatch.delivery_failures == 1, what="the failure")
    # Permanent: the delivery ended (a retry would wait on the fake clock, which never moves here).
    await asyncio.wait_for(h.service.dispatch.wait_delivered(), 5)
    assert h.service.dispatch.delivery_failures == 1


async def test_a_result_left_undelivered_at_shutdown_is_delivered_after_a_restart(h, tmp_path):
    await h.start()
    h.fake.fail("PATCH", r"^/webhooks/", 403, times=-1, when=lambda call: bool(call.files))
    h.fake.fail("POST", r"^/channels/", 403, times=-1)
    await h.restyle()
    await h.fake.wait_for(lambda: h.service.dispatch.delivery_failures == 1, what="the delivery to fail")
    await h.app.stop()
    await h.fake.close()
    h.app = None
    h2 = Harness(tmp_path)
    try:
        await h2.start()  # the service schedules the delivery before Discord is connected
        posted = await h2.fake.wait_for(
            lambda: [c for c in h2.fake.find("POST", rf"^/channels/{CHANNEL}/messages$") if len(c.files) == 3],
            what="the result after the restart",
        )
        assert posted[0].content.startswith(f"<@{USER}>")  # the old token is unknown here: 401, so a channel post
        await asyncio.wait_for(h2.service.dispatch.wait_delivered(), 5)
        assert all(j.delivered_at for j in await h2.jobs())
    finally:
        await h2.close()


async def test_an_expired_attachment_link_is_explained(h):
    await h.start()
    image = h.fake.attachment(picture_bytes())
    h.fake.files.clear()
    await h.restyle(image=image)
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the explanation")
    assert "could not download the picture (HTTP 404)" in ephemerals(h.fake)[0]
    assert await h.jobs() == []


async def test_a_short_rate_limit_on_the_result_is_waited_out(h):
    await h.start()
    h.fake.fail("PATCH", r"^/webhooks/", 429, retry_after=0.05, times=1, when=lambda call: bool(call.files))
    interaction = await h.restyle()
    await h.result_of(interaction)
    assert any(c.status == 429 for c in h.fake.calls)


async def test_a_long_rate_limit_becomes_a_retried_delivery_not_a_silent_hang(h):
    await h.start(request_timeout_s=0.3)
    gate = h.hold_engine()
    interaction = await h.restyle()
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.fake.wait_for(lambda: h.fake.original(interaction)["components"], what="status")
    h.fake.fail("PATCH", r"^/webhooks/", 429, retry_after=30, times=1, when=lambda call: bool(call.files))
    gate.set()
    await h.fake.wait_for(lambda: h.service.dispatch.delivery_failures == 1, what="the delivery to give up this try")
    await wait_parked(h.clock, h.clock.now() + DELIVERY_BACKOFF_S[0])  # the retry waits on the clock
    assert not result_edits(h.fake)
    await h.clock.advance(DELIVERY_BACKOFF_S[0])  # the service's first retry
    await h.result_of(interaction)


async def result_past_the_token(h: Harness) -> dict[str, Any]:
    """A job that outlives its interaction token: the bot ends the stale status (PATCH as the bot)
    and at once posts the result in the channel (POST). Returns the posted message."""
    gate = h.hold_engine()
    interaction = await h.restyle()
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.fake.wait_for(lambda: (m := h.fake.original(interaction)) and "Restyling" in m["content"], what="running")
    await h.clock.advance(16 * 60)
    gate.set()
    await h.fake.wait_for(lambda: h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$"), what="the result posted")
    await asyncio.wait_for(h.service.dispatch.wait_delivered(), 5)
    [posted] = [m for m in h.fake.messages.values() if m["author"]["id"] == h.fake.bot_user["id"] and m.get("nonce")]
    assert len(posted["attachments"]) == 3
    return posted


CHANNEL_MESSAGES = [("POST", r"^/channels/\d+/messages$"), ("PATCH", r"^/channels/\d+/messages/\d+$")]


async def test_an_exhausted_bucket_is_waited_for_before_the_next_request_not_run_into(h):
    await h.start()
    h.fake.rate_limit("channel-messages", CHANNEL_MESSAGES, limit=1, window_s=0.3)  # one bucket for both routes
    await result_past_the_token(h)
    [edit] = h.fake.find("PATCH", rf"^/channels/{CHANNEL}/messages/\d+$", ok=False)
    [post] = h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$", ok=False)
    assert edit.headers["X-RateLimit-Remaining"] == "0" and edit.headers["X-RateLimit-Bucket"] == "channel-messages"
    assert post.status == 200 and post.at - edit.at >= 0.25  # discord.py slept out X-RateLimit-Reset-After


async def test_a_per_route_429_is_waited_out_and_the_result_comes_once(h):
    await h.start()
    # A sub-limit: the headers still show requests left, so discord.py sends, and gets a 429.
    h.fake.rate_limit("channel-messages", CHANNEL_MESSAGES, limit=1, window_s=0.3, shown_limit=5)
    await result_past_the_token(h)
    [limited] = [c for c in h.fake.calls if c.status == 429]
    assert limited.method == "POST" and limited.headers["X-RateLimit-Scope"] == "user"
    assert limited.headers["X-RateLimit-Bucket"] == "channel-messages" and limited.headers["X-RateLimit-Remaining"] == "4"
    posts = h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$", ok=False)
    assert [c.status for c in posts] == [429, 200] and posts[1].at - posts[0].at >= 0.2  # waited retry_after, then once
    assert [j.delivered_at is not None for j in await h.jobs()] == [True]


async def test_a_global_429_is_waited_out_and_nothing_is_lost_or_doubled(h):
    await h.start()
    h.fake.global_rate_limit(limit=1, window_s=0.3)
    await result_past_the_token(h)
    limited = [c for c in h.fake.calls if c.status == 429]
    assert limited and all(c.headers["X-RateLimit-Global"] == "true" for c in limited)
    assert [c.status for c in h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$", ok=False)] == [429, 200]
    assert [j.delivered_at is not None for j in await h.jobs()] == [True]


async def test_a_gateway_reconnect_mid_job_still_delivers_the_result_once(h):
    await h.start()
    gate = h.hold_engine()
    interaction = await h.restyle()
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.fake.force_reconnect(op7=True)
    await h.fake.wait_for(lambda: h.fake.resumes == 1, what="a RESUME")
    gate.set()
    await h.result_of(interaction)
    await h.fake.force_reconnect(op7=False)  # a dropped socket, too
    await h.fake.wait_for(lambda: h.fake.resumes == 2, what="a second RESUME")
    # The gateway keeps working: a new command after the reconnects is answered.
    second = await h.restyle("after the reconnect")
    await h.result_of(second)
    assert h.fake.identifies == 1
    assert len(result_edits(h.fake)) == 2
    await asyncio.wait_for(h.service.dispatch.wait_delivered(), 5)
    assert all(j.delivered_at is not None for j in await h.jobs())


async def test_the_bot_resumes_at_the_url_ready_named_not_the_first_gateway(h):
    await h.start()
    await h.fake.force_reconnect(op7=True)
    await h.fake.wait_for(lambda: h.fake.resumes == 1, what="a RESUME")
    await h.fake.force_reconnect(op7=False)
    await h.fake.wait_for(lambda: h.fake.resumes == 2, what="a second RESUME")
    assert h.fake.gateway_paths == ["/", "/resume", "/resume"] and h.fake.identifies == 1
    await h.result_of(await h.restyle())


@pytest.fixture
async def proxy():
    running = await RecordingProxy().start()
    yield running
    await running.close()


async def test_a_configured_proxy_carries_rest_the_gateway_after_a_resume_webhooks_and_downloads(proxy, h):
    await h.start(f'proxy = "{proxy.url}"')
    await h.result_of(await h.restyle())
    await h.fake.force_reconnect(op7=False)
    await h.fake.wait_for(lambda: h.fake.resumes == 1, what="a RESUME")
    await h.result_of(await h.restyle("after the resume"))
    went = [re.sub(r"^\w+://127\.0\.0\.1:\d+", "", t) for t in proxy.targets]
    assert went[0] == "/api/v10/users/@me"  # the first REST call
    assert [t.split("?")[0] for t in went if "encoding=json" in t] == ["/", "/resume"]  # the gateway, and its resume
    assert len([t for t in went if t.startswith("/files/")]) == 2  # the picture downloads
    assert any(re.match(r"^/api/v10/webhooks/\d+/[^/]+/messages/\d+", t) for t in went)  # status edits and results
    assert len(went) == len(h.fake.calls) + len(h.fake.gateway_paths)  # nothing went around it


async def test_an_event_sent_while_disconnected_is_replayed_on_resume(h):
    await h.start()
    await h.fake.force_reconnect(op7=False)
    interaction = await h.restyle()  # queued by the fake until the bot resumes
    await h.result_of(interaction)
    assert h.fake.resumes == 1


async def test_status_edits_are_throttled_and_end_on_the_latest_state(h):
    await h.start(edit_interval_s=0.2)
    gate = h.hold_engine()
    interaction = await h.restyle()
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.fake.wait_for(lambda: h.fake.original(interaction)["components"], what="status")
    job_id = (await h.jobs())[0].id
    before = len(h.fake.find("PATCH", r"^/webhooks/"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for step in range(1, 21):
        h.service.batches.report_progress(job_id, step / 20)
        await asyncio.sleep(0.01)
    await h.fake.wait_for(lambda: "100%" in h.fake.original(interaction)["content"], what="the last progress")
    edits = len(h.fake.find("PATCH", r"^/webhooks/")) - before
    assert 1 <= edits <= (loop.time() - started) / 0.2 + 2  # at most one per interval, plus the last
    gate.set()
    await h.result_of(interaction)


async def test_a_held_free_result_says_once_when_it_arrives_and_offers_upgrade(h):
    await h.start(free_wait_s=40)
    interaction = await h.restyle("oil painting")
    await wait_until(h.jobs, what="the job")
    [job] = await h.jobs()
    await wait_parked(h.clock, job.created_at + 40)  # done at once, held until 40 s after the request

    def held() -> list[Call]:
        return [c for c in h.fake.find("PATCH", r"^/webhooks/") if "Ready" in (c.content or "")]

    await h.fake.wait_for(held, what="the held line")
    status = h.fake.original(interaction)
    assert status["content"] == (
        "⌛ Ready — it arrives in about 40 s on the free plan. `/upgrade` to get results as soon as they're done.\n"
        "“oil painting” · strength 0.5 (clear)"
    )
    assert status["components"] == [] and status["attachments"] == []  # done: nothing to cancel, nothing yet
    await h.clock.advance(15)
    await h.adapter.job_updated(await h.service.jobs.job(job.id))  # the same held job seen again
    await h.adapter._status_edits.settled(job.id)
    assert len(held()) == 1  # said once
    await h.clock.advance(25)
    await h.result_of(interaction)
    assert len(held()) == 1


async def test_a_failed_job_tells_the_member(h):
    await h.start()
    h.engine.fail_prompts.add("doomed")
    interaction = await h.restyle("doomed")
    await h.fake.wait_for(lambda: (m := h.fake.original(interaction)) and m["content"].startswith("❌"), what="failure")
    assert h.fake.original(interaction)["components"] == []


def count_submits(h: Harness) -> list[Any]:
    """The service's answers to submit, as they return (the adapter calls it through the instance)."""
    answers: list[Any] = []
    real_submit = h.service.jobs.submit

    async def counted(*args: Any, **kwargs: Any) -> Any:
        answer = await real_submit(*args, **kwargs)
        answers.append(answer)
        return answer

    h.service.jobs.submit = counted
    return answers


async def test_the_same_interaction_delivered_twice_queues_one_job(h, caplog):
    caplog.set_level(logging.INFO, logger="bot.discord")
    await h.start()
    answers = count_submits(h)
    interaction = await h.restyle("oil painting")
    await h.fake.wait_for(lambda: callbacks(h.fake, 5), what="the first copy deferred")
    await h.fake.dispatch("INTERACTION_CREATE", interaction)  # a second copy (another process, a replay)
    # Discord refuses the copy's acknowledgement (40060): it stops there, quietly
    await h.fake.wait_for(lambda: any("not answered here" in r.getMessage() for r in caplog.records), what="the copy")
    await h.fake.wait_for(lambda: result_edits(h.fake), what="the result")
    assert len(result_edits(h.fake)) == 1 and len(answers) == 1 and not answers[0].duplicate
    assert [c.status for c in h.fake.find("POST", r"/callback$", ok=False)] == [200, 400]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(await h.jobs()) == 1 and (await h.service.jobs.me(Member("discord", str(USER)))).used_today == 1


# "@bot prompt" replies -----------------------------------------------------------------------------------


async def test_a_mention_delivered_twice_queues_one_job_and_leaves_one_status(h):
    await h.start("message_replies = true")
    answers = count_submits(h)
    mention = h.fake.message(CHANNEL, guild_id=GUILD, author=h.fake.user(USER, "member"),
                             content=f"<@{h.fake.bot_user['id']}> watercolor",
                             attachments=[h.fake.attachment(picture_bytes())])  # fmt: skip
    mention["mentions"] = [h.fake.bot_user]
    await h.fake.message_create(mention)
    await h.fake.message_create(mention)  # every gateway session on the token gets it
    await wait_until(lambda: len(answers) == 2, what="both copies answered")
    assert sorted(a.duplicate for a in answers) == [False, True] and len({a.job_id for a in answers}) == 1
    statuses = h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$")
    assert len(statuses) == 2  # each copy said "Got it" ...
    await h.fake.wait_for(lambda: h.fake.find("DELETE", rf"^/channels/{CHANNEL}/messages/\d+$"), what="a delete")
    assert len(h.fake.find("DELETE", rf"^/channels/{CHANNEL}/messages/\d+$")) == 1  # ... and one took it back
    assert len(await h.jobs()) == 1


async def test_a_mention_replying_to_a_picture_restyles_it_when_enabled(h):
    await h.start("message_replies = true")
    identify = next(f for f in h.fake.gateway_frames if f["op"] == 2)
    assert identify["d"]["intents"] & (1 << 15)  # message content
    picture = h.fake.message(CHANNEL, guild_id=GUILD, author=h.fake.user(3003, "poster"),
                             attachments=[h.fake.attachment(picture_bytes())])  # fmt: skip
    mention = h.fake.message(CHANNEL, guild_id=GUILD, author=h.fake.user(USER, "member"),
                             content=f"<@{h.fake.bot_user['id']}> watercolor strength=0.3")  # fmt: skip
    mention["mentions"] = [h.fake.bot_user]
    mention["message_reference"] = {"message_id": picture["id"], "channel_id": str(CHANNEL), "guild_id": str(GUILD)}
    mention["referenced_message"] = picture
    await h.fake.message_create(mention)
    status = await h.fake.wait_for(lambda: h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$"), what="the reply")
    status_id = int(h.fake.messages[max(h.fake.messages)]["id"])
    assert str(status[0].json["message_reference"]["message_id"]) == mention["id"]
    await h.fake.wait_for(lambda: len(h.fake.messages.get(status_id, {}).get("attachments", [])) == 3, what="the result")
    job = (await h.jobs())[0]
    assert (job.prompt, job.strength, job.reply["kind"]) == ("watercolor", 0.3, "message")


async def test_a_mention_where_the_bot_may_not_post_is_answered_by_dm(h):
    await h.start("message_replies = true")
    h.fake.fail("POST", rf"^/channels/{CHANNEL}/messages$", 403, times=-1)
    mention = h.fake.message(CHANNEL, guild_id=GUILD, author=h.fake.user(USER, "member"),
                             content=f"<@{h.fake.bot_user['id']}> watercolor",
                             attachments=[h.fake.attachment(picture_bytes())])  # fmt: skip
    mention["mentions"] = [h.fake.bot_user]
    await h.fake.message_create(mention)
    dm_channel = await h.fake.wait_for(lambda: h.fake.dm_channels.get(USER), what="a DM channel")
    dm = await h.fake.wait_for(lambda: h.fake.find("POST", rf"^/channels/{dm_channel}/messages$"), what="the DM")
    assert "not allowed to post in" in dm[0].content
    assert await h.jobs() == []


async def test_a_reply_to_the_bot_with_the_ping_left_on_is_not_a_request(h):
    await h.start("message_replies = true")
    result = h.fake.message(CHANNEL, guild_id=GUILD, content=f"<@{USER}> here it is",
                            attachments=[h.fake.attachment(picture_bytes()), h.fake.attachment(picture_bytes())])  # fmt: skip
    thanks = h.fake.message(CHANNEL, guild_id=GUILD, author=h.fake.user(USER, "member"), content="thanks, love it!",
                            reply_to=result)  # fmt: skip
    assert thanks["mentions"] == [h.fake.bot_user]  # Discord's doing: the reply kept its ping
    await h.fake.message_create(thanks)
    await h.messages_handled(1)
    assert await h.jobs() == []
    assert not h.fake.find("POST", r"^/channels/")


async def test_a_reply_that_names_the_bot_in_its_text_is_a_request(h):
    await h.start("message_replies = true")
    result = h.fake.message(CHANNEL, guild_id=GUILD, attachments=[h.fake.attachment(picture_bytes())])
    again = h.fake.message(CHANNEL, guild_id=GUILD, author=h.fake.user(USER, "member"),
                           content=f"<@{h.fake.bot_user['id']}> watercolor", reply_to=result, reply_ping=False)  # fmt: skip
    await h.fake.message_create(again)
    await h.messages_handled(1)
    await wait_until(lambda: h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$"), what="the status reply")
    assert len(await h.jobs()) == 1


async def test_mentions_are_ignored_when_replies_are_off(h):
    await h.start()
    identify = next(f for f in h.fake.gateway_frames if f["op"] == 2)
    assert identify["d"]["intents"] == 1  # guilds only: no message events at all
    mention = h.fake.message(CHANNEL, guild_id=GUILD, author=h.fake.user(USER), content=f"<@{h.fake.bot_user['id']}> hi",
                             attachments=[h.fake.attachment(picture_bytes())])  # fmt: skip
    assert not await h.fake.message_create(mention)  # Discord does not even send it
    assert not h.fake.find("POST", r"^/channels/")


async def test_mention_replies_ask_only_for_the_intents_they_use(h):
    await h.start("message_replies = true")
    identify = next(f for f in h.fake.gateway_frames if f["op"] == 2)
    assert identify["d"]["intents"] == 1 | 1 << 9 | 1 << 12 | 1 << 15  # guilds, messages, message content


async def test_mention_replies_without_the_message_content_intent(h):
    h.fake.message_content_allowed = False  # off in the Developer Portal: asking for it closes with 4014
    await h.start("message_replies = true\nreply_pictures = false")
    assert not next(f for f in h.fake.gateway_frames if f["op"] == 2)["d"]["intents"] & 1 << 15
    mention = h.fake.message(CHANNEL, guild_id=GUILD, author=h.fake.user(USER, "member"),
                             content=f"<@{h.fake.bot_user['id']}> watercolor", attachments=[h.fake.attachment(picture_bytes())])  # fmt: skip
    await h.fake.message_create(mention)  # readable: it mentions the bot
    await wait_until(lambda: len(h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$")) == 1, what="the status reply")
    picture = h.fake.message(CHANNEL, guild_id=GUILD, author=h.fake.user(3003, "poster"),
                             attachments=[h.fake.attachment(picture_bytes())])  # fmt: skip
    reply = h.fake.message(CHANNEL, guild_id=GUILD, author=h.fake.user(USER, "member"), reply_to=picture, reply_ping=False,
                           content=f"<@{h.fake.bot_user['id']}> watercolor")  # fmt: skip
    await h.fake.message_create(reply)  # the replied-to picture arrives empty without the intent
    await h.messages_handled(2)
    answer = h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$")[-1]
    assert "attach the picture to your mention" in answer.content
    assert len(await h.jobs()) == 1


async def test_a_refused_message_content_intent_is_a_clear_start_error(h):
    from bot.adapters import AdapterStartError

    h.fake.message_content_allowed = False
    with pytest.raises(AdapterStartError, match="reply_pictures = false"):
        await h.start("message_replies = true")


def test_status_text_names_position_and_progress():
    from bot.core.types import JobView

    base = dict(id="j", platform="discord", user_id="1", reply={}, prompt="oil", negative_prompt=None, strength=0.8,
                seed=1, steps=4, output_format=None, tier="free", width=64, height=64, created_at=0.0)  # fmt: skip
    assert _status_text(JobView(status="queued", position=2, eta_s=40, **base)).startswith("⏳ Queued: #3 in line — about 40 s")
    assert "40%" in _status_text(JobView(status="running", progress=0.4, **base))
    assert "(heavy)" in _status_text(JobView(status="running", progress=0.4, **base))


# The flood guard covers every command, form and button ------------------------------------------




async def test_fifty_commands_of_every_kind_get_one_slow_down_not_fifty_answers(h):
    await h.start()
    admitted = count_admissions(h.service)
    kinds = ["help", "me", "cancel", "upgrade", "link"]
    for i in range(50):
        await h.fake.slash(kinds[i % len(kinds)])
    await h.fake.wait_for(lambda: len(admitted) == 50, what="all fifty commands at the flood guard")
    limit = h.service.jobs.flood.limit
    assert admitted.count(True) == limit
    answered = await h.fake.wait_for(lambda: len(callbacks(h.fake)) == limit + 1 and callbacks(h.fake),
                                     what="the answers")  # fmt: skip
    assert len(answered) == limit + 1
    assert sum("too fast" in (c.json["data"].get("content") or "") for c in answered) == 1


async def test_buttons_count_toward_the_flood_guard_and_autocomplete_does_not(h):
    await h.start()
    admitted = count_admissions(h.service)
    for _ in range(15):
        await h.fake.autocomplete("restyle", {"prompt": "cat", "strength": 0.5}, "strength")
    await h.fake.wait_for(lambda: len(callbacks(h.fake, 8)) == 15, what="the strength hints")
    assert admitted == []  # typing in an option is not a command
    button = {"type": 2, "style": 2, "label": "PNG", "custom_id": "restyle:png:0123456789"}
    message = h.fake.message(CHANNEL, content="a result", guild_id=GUILD, components=[{"type": 1, "components": [button]}])
    for _ in range(12):
        await h.fake.click(message, "restyle:png:0123456789")
    await h.fake.wait_for(lambda: len(admitted) == 12, what="every click at the flood guard")
    limit = h.service.jobs.flood.limit
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == limit + 1, what="the answers")
    texts = ephemerals(h.fake)
    assert sum("That job is gone" in t for t in texts) == limit and sum("too fast" in t for t in texts) == 1


# Ready-made styles ------------------------------------------------------------------------------

from bot.config import DEFAULT_STYLES  # noqa: E402


async def test_a_style_alone_restyles_with_its_prompt_and_strength_and_styles_lists_them(h):
    await h.start()
    interaction = await h.fake.slash("restyle", {"image": h.fake.attachment(picture_bytes()), "style": "Neon"})
    await h.result_of(interaction)
    job = (await h.jobs())[0]
    assert job.prompt == DEFAULT_STYLES["neon"].prompt and job.strength == DEFAULT_STYLES["neon"].strength
    await h.fake.slash("styles", {})
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="/styles")
    text = ephemerals(h.fake)[0]
    assert text.startswith("**Styles**: reply to a picture with `/restyle style:NAME`") and "`watercolour` (strength 0.3)" in text


async def test_the_style_option_suggests_the_recipes_and_an_unknown_one_is_refused_by_name(h):
    await h.start()
    await h.fake.autocomplete("restyle", {"style": "ne"}, "style")
    [answer] = await h.fake.wait_for(lambda: callbacks(h.fake, 8), what="the style suggestions")
    choices = answer.json["data"]["choices"]
    assert [c["value"] for c in choices] == ["neon"] and all(len(c["name"]) <= 100 for c in choices)
    await h.fake.slash("restyle", {"image": h.fake.attachment(picture_bytes()), "style": "noen", "prompt": "cat"})
    await h.fake.wait_for(lambda: any("I know no style called 'noen'" in t for t in ephemerals(h.fake)), what="the refusal")
    assert await h.jobs() == []
