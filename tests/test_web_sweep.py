"""The strength sweep on the web page's API: asked for from the form or under a result, one state
(and one live stream) for its three jobs, Keep, the three files, cancel, refusals."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from PIL import Image

from bot.adapters.web.uploads import command_from_form
from bot.commands import SWEEP_STRENGTHS, CommandError
from bot.core.types import Member
from tests.fakes import picture_bytes
from tests.harness.web import PNG_MAGIC, Site, open_site

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def site(tmp_path):
    s = await open_site(tmp_path)
    yield s
    await s.http.close()
    await s.app.stop()


async def post(site: Site, path: str, payload: dict | None = None) -> tuple[int, dict]:
    async with site.http.post(f"{site.url}{path}", json=payload or {}) as response:
        return response.status, await response.json()


async def wait_sweep(site: Site, sweep_id: str, statuses: tuple[str, ...] = ("ready",)) -> dict:
    return await site.wait_state(f"/api/sweeps/{sweep_id}", statuses)


def test_the_form_s_sweep_box_asks_for_a_sweep_and_the_slider_is_not_one_of_its_strengths():
    command = command_from_form({"prompt": "cat", "strength": "0.8", "sweep": "1"})
    assert command.sweep and command.strength is None
    assert command_from_form({"prompt": "cat strength=sweep", "strength": "0.8"}).sweep
    assert not command_from_form({"prompt": "cat", "strength": "0.8", "sweep": ""}).sweep
    with pytest.raises(CommandError, match="twice|both"):
        command_from_form({"prompt": "cat strength=0.4", "sweep": "1"})


async def test_a_sweep_from_the_form_runs_three_strengths_with_one_seed_and_shows_them_together(site):
    _, session = await site.get_json("/api/session")
    assert session["sweep"] is True and session["sweep_strengths"] == list(SWEEP_STRENGTHS)
    status, body = await site.submit("watercolor", strength="0.8", sweep="1", seed="42")
    assert status == 202, body
    sweep = body["sweep"]
    assert sweep["id"] == body["job"]["id"] and sweep["size"] == 3
    assert [job["strength"] for job in sweep["jobs"]] == list(SWEEP_STRENGTHS)
    assert {job["seed"] for job in sweep["jobs"]} == {42}
    assert {job["sweep_id"] for job in sweep["jobs"]} == {sweep["id"]}  # a reload finds its sweep

    ready = await wait_sweep(site, sweep["id"])
    assert ready["ended"] == 3 and ready["progress"] == 1.0
    async with site.http.get(f"{site.url}{ready['files_url']}") as response:  # the link the page is given works
        assert response.status == 200 and (await response.read()).startswith(b"PK\x03\x04")
    for job in ready["jobs"]:
        assert job["status"] == "ready"
        async with site.http.get(f"{site.url}{job['downloads']['png']}") as response:
            assert response.status == 200 and (await response.read()).startswith(PNG_MAGIC)
            # Each file is named by its strength, as in the ZIP.
            assert f'-{job["strength"]:g}.png"' in response.headers["Content-Disposition"]
    ran = [site.engine.jobs[job["id"]] for job in ready["jobs"]]
    assert [(job.strength, job.seed) for job in ran] == [(s, 42) for s in SWEEP_STRENGTHS]


async def test_one_live_stream_follows_the_whole_sweep_until_all_three_are_in(site):
    gate = site.engine.hold()
    _, body = await site.submit("ink drawing", sweep="1")
    sweep_id = body["sweep"]["id"]
    seen: list[dict] = []
    async with site.http.get(f"{site.url}/api/sweeps/{sweep_id}/events") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
                if seen[-1]["status"] == "running":
                    gate.set()
    assert seen[-1]["status"] == "ready" and [job["status"] for job in seen[-1]["jobs"]] == ["ready"] * 3
    assert any(state["status"] == "running" for state in seen)
    progress = [state["progress"] for state in seen]
    assert progress == sorted(progress)  # one bar that only moves forward


async def test_a_free_member_is_refused_a_sweep_in_plain_words_with_the_upgrade_hint(tmp_path):
    site = await open_site(tmp_path, tier="free")
    try:
        _, session = await site.get_json("/api/session")
        assert session["sweep"] is False
        status, body = await site.submit("watercolor", sweep="1")
        assert status == 403 and body["reason"] == "sweep"
        refused = await site.app.service.jobs.submit(site.web.member, picture_bytes(), "cat strength=sweep", {})
        assert body["error"] == refused.text and "/upgrade" in body["error"]
        assert not site.engine.jobs  # nothing queued
    finally:
        await site.http.close()
        await site.app.stop()


async def test_keep_makes_a_sweep_result_the_page_s_result_and_again_goes_on_from_it(site):
    _, body = await site.submit("linocut", sweep="1")
    ready = await wait_sweep(site, body["sweep"]["id"])
    middle = ready["jobs"][1]
    status, kept = await post(site, f"/api/jobs/{middle['id']}/keep")
    assert status == 200, kept
    assert kept["job"]["id"] == middle["id"] and kept["job"]["status"] == "ready" and kept["job"]["strength"] == 0.5
    assert kept["job"]["result_url"] and kept["job"]["downloads"]["webp"]
    status, again = await post(site, f"/api/jobs/{middle['id']}/again", {"change": "again"})
    assert status == 202 and again["job"]["strength"] == 0.5 and "sweep" not in again
    status, stronger = await post(site, f"/api/jobs/{middle['id']}/again", {"change": "stronger"})
    assert status == 202 and stronger["job"]["strength"] == 0.65
    await site.wait(stronger["job"]["id"])
    # A second press shows it again: nothing is sent twice on the page, nothing is queued.
    before = len(site.engine.jobs)
    assert (await post(site, f"/api/jobs/{middle['id']}/keep"))[0] == 200
    assert len(site.engine.jobs) == before


async def test_try_3_strengths_under_a_result_sweeps_its_picture_with_the_same_seed(site):
    _, body = await site.submit("pastel", strength="0.45", seed="7")
    first = await site.wait(body["job"]["id"])
    status, answer = await post(site, f"/api/jobs/{first['id']}/sweep")
    assert status == 202, answer
    sweep = answer["sweep"]
    assert [(job["strength"], job["seed"], job["prompt"]) for job in sweep["jobs"]] == [
        (s, 7, "pastel") for s in SWEEP_STRENGTHS
    ]
    await wait_sweep(site, sweep["id"])


async def test_the_three_results_download_as_one_zip_named_by_strength(site):
    _, body = await site.submit("charcoal", sweep="1")
    sweep_id = body["sweep"]["id"]
    await wait_sweep(site, sweep_id)
    async with site.http.get(f"{site.url}/api/sweeps/{sweep_id}/files.png.zip") as response:
        assert response.status == 200 and response.headers["Content-Type"] == "application/zip"
        assert "attachment" in response.headers["Content-Disposition"]
        archive = zipfile.ZipFile(io.BytesIO(await response.read()))
    assert archive.namelist() == [f"restyle-{s:g}.png" for s in SWEEP_STRENGTHS]
    for name in archive.namelist():
        assert Image.open(io.BytesIO(archive.read(name))).format == "PNG"
    async with site.http.get(f"{site.url}/api/sweeps/{sweep_id}/files.jpeg.zip") as response:
        names = zipfile.ZipFile(io.BytesIO(await response.read())).namelist()
    assert names == [f"restyle-{s:g}.jpg" for s in SWEEP_STRENGTHS]


async def test_cancelling_the_sweep_cancels_all_three(site):
    gate = site.engine.hold()
    _, body = await site.submit("mosaic", sweep="1")
    sweep_id = body["sweep"]["id"]
    await wait_sweep(site, sweep_id, ("running",))
    status, answer = await post(site, f"/api/jobs/{sweep_id}/cancel")
    assert status == 200 and answer["cancelled"] is True
    gate.set()
    state = await wait_sweep(site, sweep_id, ("cancelled", "ready", "failed"))
    assert state["status"] == "cancelled" and [job["status"] for job in state["jobs"]] == ["cancelled"] * 3
    assert state["files_url"] is None


async def test_other_members_sweeps_and_plain_jobs_are_not_sweeps_to_the_page(site):
    member = Member("telegram", "77", "Tom")
    await site.app.service.jobs.set_tier(member, "pro", None, reason="admin", changed_by="test")
    theirs = await site.app.service.jobs.submit(member, picture_bytes(), "/restyle secret strength=sweep", {})
    _, mine = await site.submit("plain")
    for sweep_id in (theirs.job_id, mine["job"]["id"]):
        for path in ("", "/events", "/files.png.zip"):
            async with site.http.get(f"{site.url}/api/sweeps/{sweep_id}{path}") as response:
                assert response.status == 404, (sweep_id, path)
                assert "sweep" in (await response.json())["error"]
    for action in ("keep", "sweep"):
        assert (await post(site, f"/api/jobs/{theirs.job_id}/{action}"))[0] == 404
