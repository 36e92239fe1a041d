"""The strength sweep on Discord, through the real discord.py client against the strict fake: one
status for the three jobs, one message with the 3-up picture and a Keep button per strength, the
results as files on request, "Try 3 strengths" under every result, and Keep going on from one."""

from __future__ import annotations

import asyncio
import re

import pytest

from bot.commands import STRENGTH_STEP, SWEEP_STRENGTHS
from bot.chat.statuses import SweepShown
from bot.core.types import JobView, Member
from tests.fake_discord import EPHEMERAL, FakeDiscord, _Error
from bot.core.dispatch import DELIVERY_BACKOFF_S
from tests.fakes import picture_bytes, wait_parked
from tests.harness.discord_bot import (
    CHANNEL,
    GUILD,
    OTHER,
    RESULT_FILES,
    USER,
    Harness,
    callbacks,
    ephemerals,
    h,  # noqa: F401  (a fixture)
    result_edits,
    size_of,
)

pytestmark = pytest.mark.timeout(60)


async def make_pro(h: Harness, user_id: int = USER) -> None:
    await h.service.jobs.set_tier(Member("discord", str(user_id), "member"), "pro", None, reason="admin",
                                  changed_by="test")  # fmt: skip


async def sweep_command(h: Harness, prompt: str = "oil painting", *, user_id: int = USER, **more) -> dict:
    image = h.fake.attachment(picture_bytes())
    return await h.fake.slash("restyle", {"image": image, "prompt": prompt, "sweep": True, **more}, user_id=user_id)


def buttons(message: dict) -> list[dict]:
    return [b for row in message["components"] for b in row["components"]]


def is_sweep_sheet(message: dict | None) -> bool:
    return bool(message and len(message["attachments"]) == 1 and any(
        b.get("custom_id", "").startswith("restyle:keep:") for b in buttons(message)))  # fmt: skip


async def sheet_of(h: Harness, interaction: dict) -> dict:
    """The sweep's one message: the interaction's response, turned from the status into the sheet."""
    return await h.fake.wait_for(lambda: (m := h.fake.original(interaction)) and is_sweep_sheet(m) and m,
                                 what="the sweep's 3-up picture in the original response")  # fmt: skip


async def sweep_jobs(h: Harness) -> list:
    return [job for job in await h.jobs() if job.sweep_id is not None]


async def test_sweep_answers_with_one_status_and_one_sheet_with_keep_buttons(h):
    await h.start()
    await make_pro(h)
    gate = h.hold_engine()
    interaction = await sweep_command(h, seed=42)
    status = await h.fake.wait_for(
        lambda: [c for c in h.fake.find("PATCH", r"^/webhooks/") if "Trying 3 strengths" in (c.content or "")],
        what="the sweep's status",
    )
    jobs = await sweep_jobs(h)
    lead = jobs[0].id
    assert [j.strength for j in jobs] == list(SWEEP_STRENGTHS) and {j.seed for j in jobs} == {42}
    assert {j.sweep_id for j in jobs} == {lead}
    assert status[-1].custom_ids == [f"restyle:cancel:{lead}"]  # one Cancel, for the whole sweep
    gate.set()

    sheet = await sheet_of(h, interaction)
    await h.service.dispatch.wait_delivered()
    [attachment] = sheet["attachments"]
    assert attachment["filename"] == f"restyle-sweep-{lead}.jpg"
    [sent] = [c for c in h.fake.find("PATCH", r"^/webhooks/") if c.files]
    name, data, _ = sent.files[0]
    assert data[:3] == b"\xff\xd8\xff"  # a JPEG
    width, height = size_of(data)
    assert width > 3 * 256 and height >= 256  # three results side by side, labelled
    assert "“oil painting”" in sheet["content"] and "seed 42" in sheet["content"]
    assert "0.3" in sheet["content"] and "0.7" in sheet["content"]
    assert [b["label"] for b in buttons(sheet)] == ["Keep 0.3", "Keep 0.5", "Keep 0.7", "📁 Files"]
    assert sent.custom_ids == [*(f"restyle:keep:{j.id}" for j in jobs), f"restyle:files:{lead}"]
    # One message for the whole request: every status edit and the sheet went to the response;
    # no follow-up, no channel post, no result of a single job.
    token = interaction["token"]
    assert not h.fake.find("POST", rf"^/webhooks/\d+/{token}$") and not h.fake.find("POST", r"^/channels/")
    assert {c.path.rsplit("/", 1)[-1] for c in h.fake.find("PATCH", rf"^/webhooks/\d+/{token}/")} == {sheet["id"]}
    assert all("Trying 3 strengths" in c.content for c in h.fake.find("PATCH", r"^/webhooks/") if not c.files)
    assert not result_edits(h.fake)
    assert all(j.delivered_at for j in await h.jobs())


async def test_the_restyle_image_form_and_a_mention_take_sweep_as_the_strength(h):
    await h.start("message_replies = true")
    await make_pro(h)
    target = h.fake.message(CHANNEL, author=h.fake.user(3003, "poster"), guild_id=GUILD,
                            attachments=[h.fake.attachment(picture_bytes(), filename="cat.png")])  # fmt: skip
    await h.fake.context_menu(target)
    modal_call = (await h.fake.wait_for(lambda: callbacks(h.fake, 9), what="the form"))[0]
    submit = await h.fake.modal_submit(modal_call, {"prompt": "watercolor", "strength": "sweep"})
    await sheet_of(h, submit)
    assert [j.strength for j in await sweep_jobs(h)] == list(SWEEP_STRENGTHS)

    mention = h.fake.message(CHANNEL, author=h.fake.user(USER), guild_id=GUILD,
                             content=f"<@{h.fake.bot_user['id']}> ink drawing strength=sweep",
                             attachments=[h.fake.attachment(picture_bytes())])  # fmt: skip
    await h.fake.message_create(mention)
    posted = await h.fake.wait_for(
        lambda: [m for m in h.fake.messages.values() if m.get("message_reference") and is_sweep_sheet(m)],
        what="the sweep under the mention",
    )
    assert "ink drawing" in posted[0]["content"]
    assert len(await sweep_jobs(h)) == 2 * len(SWEEP_STRENGTHS)


async def test_free_member_is_refused_a_sweep_with_the_upgrade_hint(h):
    await h.start()
    await sweep_command(h)
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the refusal")
    assert "cannot run strength sweeps" in ephemerals(h.fake)[0] and "/upgrade" in ephemerals(h.fake)[0]
    assert not await h.jobs()

    # The "Try 3 strengths" button under a free member's result: refused privately as well.
    result = await h.result_of(await h.restyle("oil painting"))
    job_id = (await h.jobs())[0].id
    [sweep_button] = [b for b in buttons(result) if b["custom_id"] == f"restyle:sweep:{job_id}"]
    assert sweep_button["label"] == "🎚 Try 3 strengths"
    await h.fake.click(result, f"restyle:sweep:{job_id}")
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 2, what="the button's refusal")
    assert "cannot run strength sweeps" in ephemerals(h.fake)[1] and "/upgrade" in ephemerals(h.fake)[1]
    assert len(await h.jobs()) == 1
    public = [m for m in h.fake.messages.values() if int(m["id"]) > int(result["id"]) and not m["flags"] & EPHEMERAL]
    assert not public  # the status follow-up was taken back


async def test_try_three_strengths_button_sweeps_a_result_with_its_seed(h):
    await h.start()
    await make_pro(h)
    result = await h.result_of(await h.restyle("oil painting", 0.8, seed=7))
    job_id = (await h.jobs())[0].id
    click = await h.fake.click(result, f"restyle:sweep:{job_id}")
    sheet = await h.fake.wait_for(lambda: next((m for m in h.fake.made_by(click) if is_sweep_sheet(m)), None),
                                  what="the sweep in a follow-up of the click")  # fmt: skip
    jobs = await sweep_jobs(h)
    assert [j.strength for j in jobs] == list(SWEEP_STRENGTHS)
    assert {j.seed for j in jobs} == {7} and {j.parent_job_id for j in jobs} == {job_id}
    assert len(h.fake.find("GET", r"^/files/")) == 1  # the stored picture, not a new download
    assert sheet["id"] != result["id"] and len(h.fake.messages[int(result["id"])]["attachments"]) == RESULT_FILES


async def test_keep_sends_that_result_with_again_buttons(h):
    await h.start()
    await make_pro(h)
    sheet = await sheet_of(h, await sweep_command(h, seed=3))
    kept = (await sweep_jobs(h))[1]
    assert kept.strength == 0.5
    click = await h.fake.click(sheet, f"restyle:keep:{kept.id}")
    assert (await h.fake.wait_for(lambda: callbacks(h.fake, 6), what="the click answered"))[0]
    result = await h.fake.wait_for(
        lambda: next((m for m in h.fake.made_by(click) if len(m["attachments"]) == RESULT_FILES), None),
        what="the kept result in a follow-up",
    )
    assert not result["flags"] & EPHEMERAL and result["id"] != sheet["id"]
    assert [b["custom_id"] for b in buttons(result)] == [
        f"restyle:{a}:{kept.id}" for a in ("again", "subtler", "stronger", "sweep", "png", "webp", "jpeg")
    ]
    assert result["attachments"][2]["filename"] == f"restyled-{kept.id}.png"
    assert is_sweep_sheet(h.fake.messages[int(sheet["id"])])  # the sweep stays, to keep another one too

    stronger = await h.fake.click(result, f"restyle:stronger:{kept.id}")
    await h.follow_up_result(stronger)
    newest = (await h.jobs())[-1]
    assert newest.parent_job_id == kept.id and newest.sweep_id is None
    assert newest.strength == pytest.approx(kept.strength + STRENGTH_STEP)


async def test_files_button_sends_three_files_named_by_strength(h):
    await h.start()
    await make_pro(h)
    sheet = await sheet_of(h, await sweep_command(h))
    lead = (await sweep_jobs(h))[0].id
    await h.fake.click(sheet, f"restyle:files:{lead}")
    sent = await h.fake.wait_for(lambda: [c for c in h.fake.find("POST", r"^/webhooks/\d+/[^/]+$") if c.files],
                                 what="the files")  # fmt: skip
    assert sent[0].flags & EPHEMERAL  # privately, like the PNG / WebP / JPEG buttons
    assert [name for name, _, _ in sent[0].files] == ["restyle-0.3.png", "restyle-0.5.png", "restyle-0.7.png"]
    assert all(data[:8] == b"\x89PNG\r\n\x1a\n" and size_of(data) == (256, 256) for _, data, _ in sent[0].files)
    assert callbacks(h.fake)[-1].json["type"] == 5 and callbacks(h.fake)[-1].flags & EPHEMERAL


async def test_someone_else_cannot_press_keep(h):
    await h.start()
    await make_pro(h)
    sheet = await sheet_of(h, await sweep_command(h))
    jobs = await sweep_jobs(h)
    before = len(h.fake.messages)
    await h.fake.click(sheet, f"restyle:keep:{jobs[0].id}", user_id=OTHER)
    await h.fake.click(sheet, f"restyle:files:{jobs[0].id}", user_id=OTHER)
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 2, what="two refusals")
    assert sorted(ephemerals(h.fake)) == ["Only the member who asked for these pictures can use their buttons.",
                                          "Only the member who asked for this picture can use its buttons."]
    assert not [m for m in list(h.fake.messages.values())[before:] if not m["flags"] & EPHEMERAL]
    assert len(await h.jobs()) == len(SWEEP_STRENGTHS)

    # A sweep no longer kept: its buttons say so.
    gone = h.fake.keep_message({**sheet, "id": str(h.fake.new_id()), "components": [{"type": 1, "components": [
        {"type": 2, "style": 1, "label": "Keep 0.5", "custom_id": "restyle:keep:0000000000"},
        {"type": 2, "style": 2, "label": "📁 Files", "custom_id": "restyle:files:0000000000"}]}]})  # fmt: skip
    await h.fake.click(gone, "restyle:keep:0000000000")
    await h.fake.click(gone, "restyle:files:0000000000")
    await h.fake.wait_for(lambda: len(ephemerals(h.fake)) == 4, what="two answers for a gone sweep")
    assert ephemerals(h.fake)[2:] == ["That sweep is gone; send the picture again with /restyle strength=sweep."] * 2


async def test_cancel_cancels_the_whole_sweep(h):
    await h.start()
    await make_pro(h)
    gate = h.hold_engine()
    first = await h.restyle("held")
    await asyncio.to_thread(h.engine.started.wait, 5)  # "held" is on the engine: the sweep waits behind it
    interaction = await sweep_command(h)
    status = await h.fake.wait_for(lambda: (m := h.fake.original(interaction)) and m["components"] and m,
                                   what="the sweep's status")  # fmt: skip
    lead = (await sweep_jobs(h))[0].id
    await h.fake.click(status, f"restyle:cancel:{lead}", user_id=OTHER)
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="a refusal for a stranger")
    await h.fake.click(status, f"restyle:cancel:{lead}")
    await h.fake.wait_for(lambda: h.fake.original(interaction)["content"] == "✖️ Cancelled.", what="cancelled")
    assert [j.status for j in await sweep_jobs(h)] == ["cancelled"] * len(SWEEP_STRENGTHS)
    gate.set()
    await h.result_of(first)
    await h.service.dispatch.wait_delivered()
    assert h.fake.original(interaction)["content"] == "✖️ Cancelled." and not h.fake.original(interaction)["components"]
    assert [j.status for j in await h.jobs()] == ["done", *["cancelled"] * len(SWEEP_STRENGTHS)]


async def test_sweep_delivery_is_not_resent_after_restart(h, tmp_path):
    await h.start()
    await make_pro(h)
    sheet = await sheet_of(h, await sweep_command(h))
    await h.service.dispatch.wait_delivered()
    await h.app.stop()
    await h.fake.close()
    h.app = None
    h2 = Harness(tmp_path)
    try:
        await h2.start()
        await asyncio.wait_for(h2.service.dispatch.wait_delivered(), 5)
        assert all(j.delivered_at for j in await h2.jobs())
        assert not [c for c in h2.fake.calls if c.files]  # nothing sent again
        # Its buttons outlive the restart: Keep still sends that result.
        kept = h2.fake.keep_message({**sheet, "id": str(h2.fake.new_id())})  # Discord still has the sweep
        job = (await sweep_jobs(h2))[2]
        click = await h2.fake.click(kept, f"restyle:keep:{job.id}")
        result = await h2.follow_up_result(click)
        assert result["attachments"][2]["filename"] == f"restyled-{job.id}.png"
    finally:
        await h2.close()


async def test_a_sweep_left_undelivered_at_shutdown_is_delivered_once_after_a_restart(h, tmp_path):
    await h.start()
    await make_pro(h)
    h.fake.fail("PATCH", r"^/webhooks/", 403, times=-1, when=lambda call: bool(call.files))
    h.fake.fail("POST", r"^/channels/", 403, times=-1)
    await sweep_command(h)
    await h.fake.wait_for(lambda: h.service.dispatch.delivery_failures == 1, what="the delivery to fail")
    await h.app.stop()
    await h.fake.close()
    h.app = None
    h2 = Harness(tmp_path)
    try:
        await h2.start()
        posted = await h2.fake.wait_for(
            lambda: [c for c in h2.fake.find("POST", rf"^/channels/{CHANNEL}/messages$") if c.files],
            what="the sweep after the restart",
        )
        await asyncio.wait_for(h2.service.dispatch.wait_delivered(), 5)
        assert len(posted) == 1 and posted[0].content.startswith(f"<@{USER}> 🎚")
        assert re.fullmatch(r"restyle-sweep-[0-9a-f]+\.jpg", posted[0].files[0][0])
        assert all(j.delivered_at for j in await h2.jobs())
    finally:
        await h2.close()


def test_the_fake_refuses_components_files_and_content_discord_would_refuse():
    fake = FakeDiscord()

    def row(*ids: str, label: str = "x") -> dict:
        return {"type": 1, "components": [{"type": 2, "style": 2, "label": label, "custom_id": i} for i in ids]}

    fake._check_components({"components": [row("a", "b", "c", "d", "e")] * 5})  # at the limits: fine
    for bad in ([row("a", "b", "c", "d", "e", "f")], [row("a")] * 6, [row("x" * 101)], [row("")],
                [row("a", label="y" * 81)]):  # fmt: skip
        with pytest.raises(_Error):
            fake._check_components({"components": bad})
    info = {"size_limit": 1000}
    fake._check_interaction_message(info, {"content": "x" * 2000}, [("a.png", b"x" * 500, "")] * 2)
    for body, files in (({"content": "x" * 2001}, []), ({}, [("a.png", b"x", "")] * 11),
                        ({}, [("a.png", b"x" * 600, "")] * 2)):  # fmt: skip
        with pytest.raises(_Error):
            fake._check_interaction_message(info, body, files)


@pytest.mark.parametrize("action", ["keep", "files", "sweep"])
async def test_the_sweep_buttons_answer_before_touching_the_database(h, action):
    await h.start()
    await make_pro(h)
    if action == "sweep":  # "Try 3 strengths" under an ordinary result
        message = await h.result_of(await h.restyle())
        target = (await h.jobs())[0].id
    else:
        message = await sheet_of(h, await sweep_command(h))
        jobs = await sweep_jobs(h)
        target = jobs[1].id if action == "keep" else jobs[0].id
    await h.service.dispatch.wait_delivered()
    answered, calls = len(callbacks(h.fake)), len(h.fake.calls)
    gate = h.hold_database()
    try:
        await h.fake.click(message, f"restyle:{action}:{target}")
        await h.fake.wait_for(lambda: len(callbacks(h.fake)) == answered + 1, what="the click answered")
    finally:
        gate.set()
    answer = callbacks(h.fake)[-1]
    # keep / Try 3 strengths: an update of the clicked message (nothing shown yet); files: a
    # private "thinking", like the PNG / WebP / JPEG buttons.
    assert (answer.json["type"], bool(answer.flags & EPHEMERAL)) == ((5, True) if action == "files" else (6, False))
    # Then the work: the kept result, the files, or the new sweep's 3-up picture.
    await h.fake.wait_for(lambda: any(c.files and c.status < 300 for c in h.fake.calls[calls:]),
                          what="the pictures the button asked for")  # fmt: skip


async def test_a_sweep_outliving_the_token_is_posted_in_the_channel_mentioning_the_member(h):
    await h.start()
    await make_pro(h)
    gate = h.hold_engine()
    interaction = await sweep_command(h)
    await h.fake.wait_for(lambda: (m := h.fake.original(interaction)) and m["components"], what="the status")
    await h.clock.advance(16 * 60)
    gate.set()
    posted = await h.fake.wait_for(lambda: h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$"), what="a post")
    [call] = posted
    assert call.content.startswith(f"<@{USER}> 🎚") and len(call.files) == 1
    assert call.json["allowed_mentions"] == {"parse": [], "users": [USER]}
    assert [i.split(":")[1] for i in call.custom_ids] == ["keep", "keep", "keep", "files"]
    await h.fake.wait_for(lambda: h.fake.original(interaction)["content"] == "✅ Done: the result is in a new message.",
                          what="the old status ended as the bot")  # fmt: skip
    assert not [c for c in h.fake.find("PATCH", r"^/webhooks/") if c.files]  # the expired token was not used


async def test_sweep_and_a_strength_together_are_refused_by_name(h):
    await h.start()
    await make_pro(h)
    await sweep_command(h, strength=0.4)
    await h.fake.wait_for(lambda: ephemerals(h.fake), what="the refusal")
    assert ephemerals(h.fake) == ["Pick either a strength or sweep, not both: a sweep tries 0.3, 0.5, 0.7 by itself."]
    assert not await h.jobs() and not callbacks(h.fake, 5)  # refused before any defer


async def test_a_sweep_cancelled_after_one_strength_is_in_sends_what_is_done(h):
    await h.start()
    await make_pro(h)
    first_gate = h.hold_engine()
    interaction = await sweep_command(h)
    await asyncio.to_thread(h.engine.started.wait, 5)  # 0.3 on the engine
    second_gate = h.hold_engine()  # the next batch waits on this one
    first_gate.set()
    await asyncio.to_thread(h.engine.started.wait, 5)  # 0.3 done, 0.5 on the engine
    status = await h.fake.wait_for(
        lambda: (m := h.fake.original(interaction)) and "1 of 3 done" in m["content"] and m["components"] and m,
        what="the status after the first strength",
    )
    lead = (await sweep_jobs(h))[0].id
    await h.fake.click(status, f"restyle:cancel:{lead}")
    sheet = await sheet_of(h, interaction)
    second_gate.set()
    await h.service.dispatch.wait_delivered()
    assert [j.status for j in await sweep_jobs(h)] == ["done", "cancelled", "cancelled"]
    assert [b["label"] for b in buttons(sheet)] == ["Keep 0.3", "📁 Files"]
    assert "0.5 cancelled" in sheet["content"] and "0.7 cancelled" in sheet["content"]
    assert not any(c.content == "✖️ Cancelled." for c in h.fake.calls if c.method == "PATCH")


async def test_slash_cancel_ends_the_sweeps_one_status(h):
    await h.start()
    await make_pro(h)
    gate = h.hold_engine()
    first = await h.restyle("held")
    await asyncio.to_thread(h.engine.started.wait, 5)
    interaction = await sweep_command(h)
    await h.fake.wait_for(lambda: (m := h.fake.original(interaction)) and m["components"], what="the sweep's status")
    await h.fake.slash("cancel", {})
    await h.fake.wait_for(lambda: not h.fake.original(interaction)["components"]
                          and "Cancelled" in h.fake.original(interaction)["content"], what="the status ended")  # fmt: skip
    # The status ends with the sweep's first job cancelled; /cancel answers once it has them all
    # (the worker may claim the 0.7 one in between: it is cancelled running, not left to run).
    await h.fake.wait_for(lambda: "Cancelled 4 jobs." in ephemerals(h.fake), what="/cancel's answer")
    gate.set()
    await h.service.dispatch.wait_delivered()
    assert {j.status for j in await sweep_jobs(h)} == {"cancelled"}
    assert not is_sweep_sheet(h.fake.original(interaction))
    assert (await h.jobs())[0].status == "cancelled" and h.fake.original(first)["content"] != ""


def test_the_one_status_follows_the_running_strength_not_the_places_of_the_waiting_ones():
    def view(job_id: str, strength: float, status: str, ended: int = 0, position: int | None = None) -> JobView:
        return JobView(id=job_id, platform="discord", user_id="1", reply={}, prompt="p", negative_prompt=None,
                       strength=strength, seed=1, steps=4, output_format=None, tier="pro", status=status, width=64,
                       height=64, created_at=0.0, position=position, sweep_id="a", sweep_size=3, sweep_ended=ended)  # fmt: skip

    shown = SweepShown()
    assert shown.speaker(view("a", 0.3, "queued", position=4)) is not None  # the nearest waiting one
    assert shown.speaker(view("b", 0.5, "queued", position=5)) is None
    assert shown.speaker(view("a", 0.3, "running")) is not None
    assert shown.speaker(view("c", 0.7, "queued", position=1)) is None  # 0.3 is running: say that
    assert shown.speaker(view("b", 0.5, "queued", ended=1, position=0)) is not None  # 0.3 ended since
    assert shown.speaker(view("b", 0.5, "running", ended=1)).id == "b"


async def test_a_retried_sweep_post_whose_answer_was_lost_is_not_posted_twice(h):
    await h.start(request_timeout_s=0.3)
    await make_pro(h)
    gate = h.hold_engine()
    await sweep_command(h)
    await asyncio.to_thread(h.engine.started.wait, 5)
    await h.clock.advance(16 * 60)  # past the token: the sweep is posted in the channel
    h.fake.answer_late("POST", rf"^/channels/{CHANNEL}/messages$", 1.0)  # posted, but the bot gives up waiting
    gate.set()
    await h.fake.wait_for(lambda: h.service.dispatch.delivery_failures == 1, what="the first try to give up")
    await wait_parked(h.clock, h.clock.now() + DELIVERY_BACKOFF_S[0])
    await h.clock.advance(DELIVERY_BACKOFF_S[0])
    await h.fake.wait_for(lambda: len(h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$")) == 2, what="the retry")
    await asyncio.wait_for(h.service.dispatch.wait_delivered(), 5)
    first, second = h.fake.find("POST", rf"^/channels/{CHANNEL}/messages$")
    assert first.json["nonce"] == second.json["nonce"] and first.json["enforce_nonce"] is True
    assert len([m for m in h.fake.messages.values() if m["channel_id"] == str(CHANNEL) and is_sweep_sheet(m)]) == 1
    assert all(j.delivered_at for j in await h.jobs())


async def test_a_russian_member_gets_the_sweep_in_russian(h):
    await h.start()
    await make_pro(h)
    h.fake.user_locales[USER] = "ru"
    gate = h.hold_engine()
    interaction = await sweep_command(h)
    await h.fake.wait_for(lambda: "Пробую 3 варианта силы" in (h.fake.original(interaction) or {}).get("content", ""),
                          what="the Russian status")  # fmt: skip
    assert [b["label"] for b in buttons(h.fake.original(interaction))] == ["Отменить"]
    gate.set()
    sheet = await sheet_of(h, interaction)
    assert [b["label"] for b in buttons(sheet)] == ["Оставить 0.3", "Оставить 0.5", "Оставить 0.7", "📁 Файлы"]
    click = await h.fake.click(sheet, f"restyle:keep:{(await sweep_jobs(h))[0].id}")
    result = await h.follow_up_result(click)
    assert "🎚 Попробовать 3 варианта" in [b["label"] for b in buttons(result)]


async def test_a_held_sweep_says_once_when_it_arrives_then_comes_whole(h):
    await h.start("\n[tiers.pro]\nmin_turnaround_s = 40")
    await make_pro(h)
    interaction = await sweep_command(h)
    await h.fake.wait_for(lambda: len(h.engine.batches) == len(SWEEP_STRENGTHS), what="the three jobs run")
    lead = (await sweep_jobs(h))[0]
    await wait_parked(h.clock, lead.created_at + 40)  # done at once, held until 40 s after the request

    def held() -> list:
        return [c for c in h.fake.find("PATCH", r"^/webhooks/") if "Ready" in (c.content or "")]

    await h.fake.wait_for(held, what="the held line")
    status = h.fake.original(interaction)
    assert status["content"] == (
        "⌛ Ready — it arrives in about 40 s on the pro plan. `/upgrade` to get results as soon as they're done.\n"
        "Trying 3 strengths: 3 of 3 done"
    )
    assert status["components"] == [] and status["attachments"] == []
    await h.clock.advance(40)
    await sheet_of(h, interaction)
    assert len(held()) == 1


async def test_restyle_has_a_sweep_option_described_in_each_language(h):
    await h.start()
    [restyle] = [c for c in h.fake.commands[str(GUILD)] if c["name"] == "restyle"]
    [option] = [o for o in restyle["options"] if o["name"] == "sweep"]
    assert option["type"] == 5 and not option.get("required")  # a boolean: strength is a number
    assert option["description"] == "Try strengths 0.3, 0.5, 0.7 at once, side by side (costs 3 restyles; not on every tier)"
    localized = option["description_localizations"]
    assert set(localized) == {"es-ES", "es-419", "ru"} and localized["ru"].startswith("Попробовать силу 0.3, 0.5, 0.7")
    assert not option.get("name_localizations")  # /restyle sweep:True everywhere
