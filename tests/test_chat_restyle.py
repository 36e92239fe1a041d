"""A restyle request: the shared flow (bot/chat/restyle.py) on the real service with a recording
surface. What each platform does with the surface's calls (Telegram's getFile and caption
forms, Discord's deferral, ephemeral refusals and "Got it" replies) is tested against the
strict fakes in the platforms' own test modules."""

from __future__ import annotations

from bot.chat.restyle import RestyleRequest, handle_restyle
from bot.chat.surface import Found
from bot.commands import CommandError, RestyleCommand
from bot.core.texts import UPGRADE_HINT
from bot.core.types import Accepted, Reason, Refused
from bot.i18n import Text
from tests.fakes import picture_bytes
from tests.harness.recording_surface import RecordingRestyleSurface
from tests.harness.service import FREE, PRO, make

CHECKS = ["place_refusal", "find_picture"]  # what every request goes through first
requests = 0


def request(command: str | RestyleCommand | CommandError = "/restyle oil painting", key: str | None = None):
    """A request of its own (a fresh request key) unless `key` names one seen before."""
    global requests
    requests += 1
    return RestyleRequest(command, key or f"request:{requests}")


def with_picture(**kwargs) -> RecordingRestyleSurface:
    return RecordingRestyleSurface(downloaded=picture_bytes(), **kwargs)


async def test_a_bad_command_is_refused_before_the_picture_is_downloaded(tmp_path):
    h = await make(tmp_path)
    counts = await h.store.count_by_status()
    typed = with_picture()
    await handle_restyle(h.service, PRO, request("/restyle strength=0.5"), typed)
    assert typed.names == [*CHECKS, "bad_command", "refuse"]
    (said,) = typed.said("refuse")
    assert said.startswith("bad command: ")
    # A platform's own form (Discord's slash options) hands in what was wrong with it: said the same way.
    options = with_picture()
    await handle_restyle(h.service, PRO, request(CommandError(Text("strength must be a number"))), options)
    assert options.calls[len(CHECKS) :] == [
        ("bad_command", "strength must be a number"),
        ("refuse", "bad command: strength must be a number"),
    ]
    assert await h.store.count_by_status() == counts
    await h.close()


async def test_a_picture_declared_too_big_is_refused_before_download_and_one_at_the_limit_is_fetched(tmp_path):
    h = await make(tmp_path)
    counts = await h.store.count_by_status()
    big = with_picture(picture=Found(10_000_001), max_download_bytes=10_000_000)
    await handle_restyle(h.service, PRO, request(), big)
    assert big.calls[len(CHECKS) :] == [("too_big", 10_000_001), ("refuse", "too big: 10000001")]
    assert await h.store.count_by_status() == counts
    at_limit = with_picture(picture=Found(10_000_000), max_download_bytes=10_000_000)
    await handle_restyle(h.service, PRO, request(), at_limit)
    assert "download" in at_limit.names and "too_big" not in at_limit.names
    await h.close()


async def test_a_picture_not_found_is_said_and_nothing_is_fetched(tmp_path):
    h = await make(tmp_path)
    surface = with_picture(picture="Reply to a picture with /restyle.")
    await handle_restyle(h.service, PRO, request(), surface)
    assert surface.calls[len(CHECKS) :] == [("refuse", "Reply to a picture with /restyle.")]
    await h.close()


async def test_a_download_problem_is_said_in_its_own_words_and_starts_nothing(tmp_path):
    h = await make(tmp_path)
    counts = await h.store.count_by_status()
    surface = RecordingRestyleSurface(downloaded="I could not download the picture in time. Please try again.")
    await handle_restyle(h.service, PRO, request(), surface)
    assert surface.calls[len(CHECKS) :] == [
        ("download", None),
        ("refuse", "I could not download the picture in time. Please try again."),
    ]
    assert await h.store.count_by_status() == counts
    await h.close()


async def test_an_accepted_request_is_queued_once_with_its_reply_data(tmp_path):
    h = await make(tmp_path)
    surface = with_picture()
    await handle_restyle(h.service, PRO, request("/restyle oil painting strength=0.4 seed=7"), surface)
    assert surface.names == [*CHECKS, "download", "reply_data", "queued"]
    ((accepted, reply),) = surface.said("queued")
    assert isinstance(accepted, Accepted) and not accepted.duplicate
    assert reply == {"chat": "recorded"}
    job = await h.service.jobs.job(accepted.job_id)
    assert job is not None and job.reply == reply
    assert (job.prompt, job.strength, job.seed) == ("oil painting", 0.4, 7)
    await h.close()


async def test_the_same_request_key_again_is_answered_once(tmp_path):
    h = await make(tmp_path)
    first, again = with_picture(), with_picture()
    await handle_restyle(h.service, PRO, request(key="message:1:2"), first)
    counts = await h.store.count_by_status()
    await handle_restyle(h.service, PRO, request(key="message:1:2"), again)
    assert len(first.said("queued")) == 1
    assert again.names == [*CHECKS, "download", "reply_data", "answered_already"]
    assert await h.store.count_by_status() == counts
    await h.close()


async def test_a_free_members_sweep_is_refused_with_the_upgrade_hint(tmp_path):
    h = await make(tmp_path)
    counts = await h.store.count_by_status()
    surface = with_picture()
    await handle_restyle(h.service, FREE, request("/restyle ink drawing strength=sweep seed=5"), surface)
    assert surface.names == [*CHECKS, "download", "reply_data", "refusal_text", "refuse"]
    (refused,) = surface.said("refusal_text")
    assert isinstance(refused, Refused) and refused.upgrade_hint
    (said,) = surface.said("refuse")
    assert said.startswith("The free tier cannot run strength sweeps") and said.endswith(UPGRADE_HINT)
    assert await h.store.count_by_status() == counts
    await h.close()


async def test_a_place_the_bot_does_not_work_in_starts_nothing(tmp_path):
    h = await make(tmp_path)
    counts = await h.store.count_by_status()
    told = with_picture(refused_place=Refused(Reason.PLACE, "Not here."))
    await handle_restyle(h.service, PRO, request(), told)
    assert told.calls == [("place_refusal", None), ("refuse", "Not here.")]
    quiet = with_picture(refused_place=Refused(Reason.PLACE, "Not here.", quiet=True))
    await handle_restyle(h.service, PRO, request(), quiet)
    assert quiet.calls == [("place_refusal", None)]  # told once already
    assert await h.store.count_by_status() == counts
    await h.close()


async def test_nowhere_to_answer_starts_nothing(tmp_path):
    h = await make(tmp_path)
    counts = await h.store.count_by_status()
    surface = with_picture(reachable=False)
    await handle_restyle(h.service, PRO, request(), surface)
    assert surface.names == [*CHECKS, "download", "reply_data"]
    assert await h.store.count_by_status() == counts
    await h.close()
