"""The web page's HTTP API, health and metrics, through the whole app on a real port (port 0)
with a stand-in engine."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from bot.adapters.web import WebAdapter, WebStartError
from bot.adapters.web.uploads import command_from_form
from bot.adapters.web.compare import COMPARE_EXPIRED, COMPARE_GONE
from bot.app import App, Health
from bot.clock import FakeClock
from bot.commands import MAX_COMMAND_CHARS, CommandError, parse_restyle
from bot.config import ConfigError, load_config
from bot.core.types import Member
from bot.links import CompareLinks, compare_links
from tests.fakes import FakeEngine, picture_bytes, wait_until
from tests.harness.web import JPEG_MAGIC, PNG_MAGIC, open_site, write_config

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def site(tmp_path):
    s = await open_site(tmp_path)
    yield s
    await s.http.close()
    await s.app.stop()


# The page ---------------------------------------------------------------------------------------


async def test_page_and_its_files_are_served_locally_with_a_strict_policy(site):
    async with site.http.get(f"{site.url}/") as response:
        assert response.status == 200
        html = await response.text()
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "Restyle a picture" in html and 'type="range"' in html
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css"), ("icon.svg", "svg")):
        async with site.http.get(f"{site.url}/static/{name}") as response:
            assert response.status == 200 and kind in response.headers["Content-Type"]
    async with site.http.get(f"{site.url}/static/../web.py") as response:
        assert response.status == 404


async def test_session_reports_the_config_tier_and_form_defaults(site):
    status, session = await site.get_json("/api/session")
    assert status == 200
    assert session["tier"] == "pro" and session["daily_quota"] == 200
    assert session["default_strength"] == 0.5 and session["max_upload_mb"] == 20.0
    assert session["engine_ready"] is True


# Jobs -------------------------------------------------------------------------------------------


async def test_submitted_picture_runs_to_ready_and_downloads_in_each_format(site):
    status, body = await site.submit("watercolor", strength="0.35", seed="42")
    assert status == 202, body
    job = body["job"]
    assert job["status"] in ("queued", "running", "ready")
    assert (job["strength"], job["seed"], job["strength_word"]) == (0.35, 42, "clear")
    ready = await site.wait(job["id"])
    assert ready["downloads"].keys() == {"png", "webp", "jpeg"}

    magic = {"png": lambda b: b.startswith(PNG_MAGIC), "jpeg": lambda b: b.startswith(JPEG_MAGIC),
             "webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP"}  # fmt: skip
    for fmt, url in ready["downloads"].items():
        async with site.http.get(f"{site.url}{url}") as response:
            assert response.status == 200
            data = await response.read()
            assert magic[fmt](data), fmt
            assert response.headers["Content-Disposition"].startswith("attachment;")
            assert f"seed42.{'jpg' if fmt == 'jpeg' else fmt}" in response.headers["Content-Disposition"]
    async with site.http.get(f"{site.url}{ready['result_url']}") as response:
        assert response.headers["Content-Disposition"].startswith("inline;")
    async with site.http.get(f"{site.url}{ready['original_url']}") as response:
        assert response.status == 200 and (await response.read()).startswith(PNG_MAGIC)


async def test_live_events_stream_the_job_until_its_result_is_ready(site):
    site.engine.hold()  # hold the batch so the stream sees it wait and run
    _, body = await site.submit()
    job_id = body["job"]["id"]
    seen = []
    async with site.http.get(f"{site.url}/api/jobs/{job_id}/events") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            state = json.loads(line[6:])
            seen.append(state["status"])
            if state["status"] == "running":
                site.engine.gate.set()
    # The stream ends by itself once the job is ready, and says so last.
    assert seen[-1] == "ready" and "running" in seen
    assert set(seen) <= {"queued", "running", "finishing", "ready"}  # finishing: done, being delivered


async def test_again_subtler_and_stronger_rerun_the_same_picture(site):
    _, body = await site.submit("pencil sketch", strength="0.5")
    first = await site.wait(body["job"]["id"])
    strengths = {}
    for change in ("again", "subtler", "stronger"):
        async with site.http.post(f"{site.url}/api/jobs/{first['id']}/again", json={"change": change}) as response:
            assert response.status == 202, await response.text()
            job = (await response.json())["job"]
        assert job["id"] != first["id"] and job["prompt"] == "pencil sketch"
        strengths[change] = job["strength"]
        await site.wait(job["id"])
    assert strengths == {"again": 0.5, "subtler": 0.35, "stronger": 0.65}  # STRENGTH_STEP 0.15
    async with site.http.post(f"{site.url}/api/jobs/{first['id']}/again", json={"change": "louder"}) as response:
        assert response.status == 400 and "subtler" in (await response.json())["error"]


@pytest.mark.parametrize(
    "prompt, fields",
    [
        ("", {}),
        ("   ", {}),
        ("cat strength=2", {}),
        ("cat strength = 0.5", {}),
        ("cat", {"seed": "-4"}),
        ("cat", {"strength": "1,5"}),
        ("x" * 501, {}),
    ],
)
async def test_bad_commands_are_refused_in_the_same_words_as_chat(site, prompt, fields):
    status, body = await site.submit(prompt, **fields)
    assert status == 400
    if fields:
        key, value = next(iter(fields.items()))
        text = f"/restyle {prompt} {key}={value}"
    else:
        text = f"/restyle {prompt}"
    with pytest.raises(CommandError) as chat:
        parse_restyle(text)
    assert body == {"error": str(chat.value)} or body["error"] == str(chat.value)


@pytest.mark.parametrize("field", ["prompt", "seed", "no"])
async def test_a_40_kb_form_field_is_refused_at_once_and_the_server_stays_responsive(site, field):
    # 40,000 commas ending in a letter: the old grammar spent ~12 s on it, on the event loop.
    bomb = "," * 40_000 + "x"
    fields = {"seed": bomb} if field == "seed" else {"no": bomb} if field == "no" else {}
    prompt = bomb if field == "prompt" else "cat"
    started = asyncio.get_running_loop().time()
    submitted = asyncio.ensure_future(site.submit(prompt, **fields))
    async with site.http.get(f"{site.url}/healthz") as health:  # asked while the form is handled
        assert health.status == 200
    status, body = await submitted
    assert asyncio.get_running_loop().time() - started < 2  # generous: the figure is in bench/hostile_input.py
    assert status == 400
    assert body["error"] == f"That text is {len(bomb):,} characters long; the bot reads at most {MAX_COMMAND_CHARS:,}, so please shorten it."


def test_a_form_field_of_40_000_digits_gets_one_sentence_not_a_traceback():
    with pytest.raises(CommandError, match="characters long"):
        command_from_form({"prompt": "cat", "seed": "9" * 40_000})


async def test_refused_forms_count_toward_the_flood_guard_before_they_are_parsed(site):
    limit = site.app.service.jobs.flood.limit
    statuses = [(await site.submit(""))[0] for _ in range(limit)]  # no prompt: refused commands
    assert statuses == [400] * limit
    status, body = await site.submit("")
    assert status == 429 and body["reason"] == "flood" and "too fast" in body["error"]


def test_options_typed_in_the_prompt_win_over_the_form():
    command = command_from_form({"prompt": "cat strength=0.8 seed=3", "strength": "0.3", "seed": "9", "no": 'a "b"'})
    assert (command.prompt, command.strength, command.seed) == ("cat", 0.8, 3)
    assert command.negative_prompt == 'a "b"'  # kept as typed
    command = command_from_form({"prompt": "cat", "strength": "0.3", "seed": "", "steps": "6"})
    assert (command.strength, command.seed, command.steps) == (0.3, None, 6)


async def test_a_file_that_is_not_a_picture_is_refused_with_the_services_words(site):
    status, body = await site.submit("cat", picture=b"%PDF-1.4 not a picture at all" * 10)
    assert status == 400
    refused = await site.app.service.jobs.submit(Member("test", "x"), b"%PDF-1.4 not a picture at all" * 10, "/restyle cat", {})
    assert body["error"] == refused.text and body["reason"] == "picture"


async def test_missing_picture_and_non_multipart_posts_get_json_errors(site):
    form = aiohttp.FormData()
    form.add_field("prompt", "cat")
    async with site.http.post(f"{site.url}/api/jobs", data=form) as response:
        assert response.status == 400 and (await response.json())["error"] == "Pick or drop a picture first."
    async with site.http.post(f"{site.url}/api/jobs", json={"prompt": "cat"}) as response:
        assert response.status == 400 and "multipart" in (await response.json())["error"]
    status, body = await site.get_json("/api/jobs/0123456789")
    assert status == 404 and "pick it again" in body["error"]
    status, body = await site.get_json("/api/nothing-here")
    assert status == 404 and body == {"error": "There is nothing here."}


async def test_an_upload_over_the_limit_gets_a_clear_json_413(tmp_path):
    site = await open_site(tmp_path, extra="max_upload_mb = 0.05")
    try:
        status, body = await site.submit("cat", picture=b"\x89PNG" + bytes(200_000))
        assert status == 413
        assert body["error"] == "That picture is 0.2 MB; the most the bot takes is 0.05 MB."
        status, body = await site.submit("cat")  # a small one still goes through afterwards
        assert status == 202, body
    finally:
        await site.http.close()
        await site.app.stop()


async def test_waiting_job_can_be_cancelled(site):
    site.engine.hold()
    _, first = await site.submit("first")
    await site.wait(first["job"]["id"], ("running",))
    _, second = await site.submit("second")
    async with site.http.post(f"{site.url}/api/jobs/{second['job']['id']}/cancel") as response:
        body = await response.json()
    assert body["cancelled"] is True and body["job"]["status"] == "cancelled"
    site.engine.gate.set()
    await site.wait(first["job"]["id"])


async def test_other_members_jobs_are_invisible_to_the_page(site):
    accepted = await site.app.service.jobs.submit(Member("telegram", "77", "Tom"), picture_bytes(), "/restyle secret", {})
    for path in ("", "/original.png", "/result.png", "/events"):
        async with site.http.get(f"{site.url}/api/jobs/{accepted.job_id}{path}") as response:
            assert response.status == 404, path
    async with site.http.post(f"{site.url}/api/jobs/{accepted.job_id}/again", json={}) as response:
        assert response.status == 404


async def test_free_tier_result_is_held_back_until_its_turnaround(tmp_path):
    clock = FakeClock()
    site = await open_site(tmp_path, tier="free", clock=clock)
    try:
        status, body = await site.submit()
        assert status == 202 and body["job"]["tier"] == "free"
        state = await site.wait(body["job"]["id"], ("finishing",))
        assert 39 <= state["eta_s"] <= 40 and state["result_url"] is None
        async with site.http.get(f"{site.url}/api/jobs/{state['id']}/result.png") as response:
            assert response.status == 409 and "not ready" in (await response.json())["error"]
        await clock.advance(41)
        await site.wait(state["id"])
    finally:
        await site.http.close()
        await site.app.stop()


async def test_config_tier_is_given_to_the_page_member_at_start(tmp_path):
    site = await open_site(tmp_path, tier="max")
    try:
        assert (await site.app.service.jobs.me(site.web.member)).tier == "max"
        _, session = await site.get_json("/api/session")
        assert session["tier"] == "max"
    finally:
        await site.http.close()
        await site.app.stop()


# Access ---------------------------------------------------------------------------------------------


async def test_access_token_is_required_for_every_request_when_configured(tmp_path):
    site = await open_site(tmp_path, web='access_token = "s3cret-token"')
    try:
        for path in ("/", "/api/session", "/healthz", "/metrics", "/static/app.js"):
            async with site.http.get(f"{site.url}{path}") as response:
                assert response.status == 401, path
        status, body = await site.get_json("/api/session")
        assert "token" in body["error"]
        async with site.http.get(f"{site.url}/?token=wrong") as response:
            assert response.status == 401
        bearer = {"Authorization": "Bearer s3cret-token"}
        async with site.http.get(f"{site.url}/api/session", headers=bearer) as response:
            assert response.status == 200
        # ?token= once: a cookie, and an address without the token.
        async with site.http.get(f"{site.url}/?token=s3cret-token", allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/"
            assert "HttpOnly" in response.headers["Set-Cookie"] and "s3cret" not in response.headers["Set-Cookie"]
        async with site.http.get(f"{site.url}/api/session") as response:
            assert response.status == 200
        status, body = await site.submit()
        assert status == 202
    finally:
        await site.http.close()
        await site.app.stop()


async def test_posts_from_other_sites_and_foreign_host_names_are_refused(site):
    form = aiohttp.FormData()
    form.add_field("picture", picture_bytes(), filename="a.png")
    form.add_field("prompt", "cat")
    async with site.http.post(f"{site.url}/api/jobs", data=form, headers={"Origin": "https://evil.example"}) as response:
        assert response.status == 403 and "another website" in (await response.json())["error"]
    async with site.http.get(f"{site.url}/api/session", headers={"Host": "evil.example"}) as response:
        assert response.status == 403
    host = site.url.split("://")[1]
    async with site.http.get(f"{site.url}/api/session", headers={"Origin": f"http://{host}"}) as response:
        assert response.status == 200


async def test_a_busy_port_stops_start_with_a_message_naming_the_setting(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = load_config(write_config(tmp_path), env={})
        no_service = SimpleNamespace(compare_links=None)  # health only: it never reaches the service
        adapter = WebAdapter(config, no_service, Health(), page=False, port=port)  # type: ignore[arg-type]
        with pytest.raises(WebStartError, match=r"\[web\] port"):
            await adapter.start()


# Health and metrics --------------------------------------------------------------------------------


async def test_healthz_readyz_and_metrics(site):
    async with site.http.get(f"{site.url}/healthz") as response:
        assert response.status == 200 and await response.text() == "ok\n"
    async with site.http.get(f"{site.url}/readyz") as response:
        assert response.status == 200 and (await response.text()).startswith("ready")
    _, body = await site.submit()
    await site.wait(body["job"]["id"])
    async with site.http.get(f"{site.url}/metrics") as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    for line in (
        'restyle_queue_length{tier="free"} 0.0',
        'restyle_queue_length{tier="pro"} 0.0',
        'restyle_jobs{status="done"} 1.0',
        'restyle_jobs{status="failed"} 0.0',
        'restyle_batch_size_bucket{le="1.0"} 1.0',
        "restyle_batch_size_count 1.0",
        'restyle_job_seconds_bucket{le="+Inf"} 1.0',
        "restyle_job_seconds_count 1.0",
        'restyle_queue_wait_seconds_count{tier="pro"} 1.0',
        "restyle_engine_batch_seconds_count 1.0",
        "restyle_delivery_failures_total 0.0",
        "restyle_engine_ready 1.0",
        "# TYPE restyle_job_seconds histogram",
        "# TYPE restyle_delivery_failures_total counter",
    ):
        assert line in text.splitlines(), line


async def test_readyz_says_why_it_is_not_ready(tmp_path):
    config = load_config(write_config(tmp_path), env={})
    health = Health()
    app = await App.create(config, engine_factory=lambda _: FakeEngine(), adapters=lambda c, s, h: [])
    adapter = WebAdapter(config, app.service, health, page=False)
    await adapter.start()
    try:
        async with aiohttp.ClientSession() as http:
            async def readyz() -> tuple[int, str]:
                async with http.get(f"{adapter.url}/readyz") as response:
                    return response.status, await response.text()

            assert await readyz() == (503, "not ready: engine loading\n")
            health.engine_error = "no model at /nowhere"
            assert await readyz() == (503, "not ready: engine failed to load: no model at /nowhere\n")
            health.engine_error, health.engine_ready, health.store_open = None, True, False
            assert await readyz() == (503, "not ready: store closed\n")
            health.store_open = True
            assert await readyz() == (200, "ready\n")
            # Health-only mode: no page, no API.
            for path in ("/", "/api/session", "/static/app.js"):
                async with http.get(f"{adapter.url}{path}") as response:
                    assert response.status == 404, path
            async with http.get(f"{adapter.url}/metrics") as response:
                assert response.status == 200 and "restyle_queue_length" in await response.text()
        assert adapter.platform != "web"  # never claims the page's jobs
    finally:
        await adapter.stop()
        await app.store.close()


async def test_stopping_ends_open_live_streams_at_once(site):
    site.engine.hold()
    _, body = await site.submit()
    async with site.http.get(f"{site.url}/api/jobs/{body['job']['id']}/events") as response:
        await response.content.readline()  # the stream is open
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(site.web.stop(), 5)
        assert asyncio.get_running_loop().time() - started < 2
    site.engine.gate.set()


# Hostile clients (issue 18, item 8) -------------------------------------------------------------

BOUNDARY = "XyZzy"


def multipart_head(length: int, path: str = "/api/jobs") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()  # fmt: skip


def multipart_start(prompt: str = "cat") -> bytes:
    """The form up to the middle of the picture: no end, no closing boundary."""
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n{prompt}\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="picture"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + picture_bytes()[:200]  # fmt: skip


async def raw_exchange(url: str, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send bytes on a fresh connection; return everything the server sends until it hangs up
    (failing the test if it has not hung up within `timeout`)."""
    host, port = url.split("://")[1].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(site):
    # Headers only, then nothing: the answer cannot wait for a body that never comes.
    answer = await raw_exchange(site.url, multipart_head(10**9))
    status, body = status_and_json(answer)
    assert status == 413 and body["error"] == "That picture is 1000.0 MB; the most the bot takes is 20 MB."
    assert b"Connection: close" in answer.split(b"\r\n\r\n")[0]


async def test_a_slow_upload_is_dropped_within_the_body_timeout(tmp_path):
    site = await open_site(tmp_path, web="body_timeout_s = 0.3")
    host, port = site.url.split("://")[1].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    body = multipart_start()

    async def trickle() -> None:  # one byte every 50 ms: the slow-loris way
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    try:
        writer.write(multipart_head(len(body) + 1000))
        sender = asyncio.create_task(trickle())
        answer = await asyncio.wait_for(reader.read(), 5)  # the server hangs up: read() ends
        sender.cancel()
        status, error = status_and_json(answer)
        assert status == 408 and error["error"].startswith("The upload took too long")
        assert await site.app.store.count_by_status() == {}
    finally:
        writer.close()
        await site.http.close()
        await site.app.stop()


async def test_a_short_or_garbled_multipart_body_is_a_400_with_one_sentence(site, caplog):
    caplog.set_level(logging.INFO)
    body = multipart_start()
    # Garbled: the declared length arrives, but the form never ends.
    status, error = status_and_json(await raw_exchange(site.url, multipart_head(len(body)) + body))
    assert status == 400 and error["error"] == "The upload arrived cut short or garbled; pick the picture again and press Run."
    # A form whose last part has no end: the same.
    truncated = body + f"\r\n--{BOUNDARY}".encode()
    status, error = status_and_json(await raw_exchange(site.url, multipart_head(len(truncated)) + truncated))
    assert status == 400 and "cut short" in error["error"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_an_upload_the_client_gives_up_on_is_one_info_line(site, caplog):
    caplog.set_level(logging.DEBUG)
    host, port = site.url.split("://")[1].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    body = multipart_start()
    writer.write(multipart_head(len(body) + 100_000) + body)
    await writer.drain()
    writer.transport.abort()  # gone mid-upload
    await wait_until(lambda: any("went away" in r.getMessage() for r in caplog.records), what="the line about it")
    await wait_until(lambda: site.web.open_connections == 0, what="the server done with that connection")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    about_it = [r for r in caplog.records if r.name == "bot.web"]
    assert len(about_it) == 1 and about_it[0].levelno == logging.INFO and about_it[0].exc_info is None


@pytest.mark.parametrize("path", [
    "//evil.example/", "///evil.example/", "/\\evil.example/", "/%2F%2Fevil.example/", "/%2f/evil.example/",
    "/%5Cevil.example/", "/%09/evil.example/", "/%0A/evil.example/",
])  # fmt: skip
async def test_the_token_redirect_never_leaves_this_site(tmp_path, path):
    site = await open_site(tmp_path, web='access_token = "s3cret-token"')
    try:
        request = f"GET {path}?token=s3cret-token HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        head = (await raw_exchange(site.url, request.encode())).partition(b"\r\n\r\n")[0].decode()
        assert head.split(" ")[1] == "303"
        location = next(line.split(": ", 1)[1] for line in head.split("\r\n") if line.lower().startswith("location:"))
        assert location == "/"
        # An ordinary address keeps its path and the rest of its query.
        async with site.http.get(f"{site.url}/static/app.js?v=2&token=s3cret-token", allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/static/app.js?v=2"
    finally:
        await site.http.close()
        await site.app.stop()


async def test_metrics_need_the_token_when_listening_beyond_loopback(tmp_path):
    config = load_config(write_config(tmp_path), env={})
    app = await App.create(config, engine_factory=lambda _: FakeEngine(), adapters=lambda c, s, h: [])
    open_adapter = WebAdapter(config, app.service, Health(), page=False, host="0.0.0.0", port=0)
    tokened = load_config(write_config(tmp_path, web='access_token = "m3trics-token"'), env={})
    token_adapter = WebAdapter(tokened, app.service, Health(), page=False, host="0.0.0.0", port=0)
    loopback_adapter = WebAdapter(config, app.service, Health(), page=False, port=0)
    for adapter in (open_adapter, token_adapter, loopback_adapter):
        await adapter.start()
    try:
        async with aiohttp.ClientSession() as http:
            async def get(adapter: WebAdapter, path: str, **kwargs: Any) -> int:
                async with http.get(f"{adapter.url}{path}", **kwargs) as response:
                    return response.status

            assert await get(open_adapter, "/metrics") == 403
            assert await get(open_adapter, "/healthz") == 200  # probes stay open
            assert await get(token_adapter, "/metrics") == 401
            assert await get(token_adapter, "/metrics", headers={"Authorization": "Bearer m3trics-token"}) == 200
            assert await get(loopback_adapter, "/metrics") == 200
            async with http.get(f"{open_adapter.url}/metrics") as response:
                assert "access_token" in (await response.json())["error"]
    finally:
        for adapter in (open_adapter, token_adapter, loopback_adapter):
            await adapter.stop()
        await app.store.close()


# The same request twice (issue 18, item 9) ------------------------------------------------------


async def test_the_same_form_nonce_queues_one_job(site):
    first_status, first = await site.submit("oil painting", request_id="press-0001-abcdef")
    again_status, again = await site.submit("oil painting", request_id="press-0001-abcdef")
    assert first_status == again_status == 202
    assert again["job"]["id"] == first["job"]["id"]
    other_status, other = await site.submit("oil painting", request_id="press-0002-abcdef")
    assert other_status == 202 and other["job"]["id"] != first["job"]["id"]
    _, session = await site.get_json("/api/session")
    assert session["used_today"] == 2
    status, body = await site.submit("oil painting", request_id="no spaces!")
    assert status == 400 and "request_id" in body["error"]


def test_the_page_sends_a_nonce_with_each_run():
    from bot.adapters.web.page import STATIC_DIR

    script = (STATIC_DIR / "app.js").read_text()
    assert 'form.append("request_id", requestId())' in script


# Ready-made styles ------------------------------------------------------------------------------


async def test_a_style_picked_on_the_page_runs_its_recipe_with_the_slider_s_strength(site):
    from bot.config import DEFAULT_STYLES

    status, session = await site.get_json("/api/session")
    assert [s["name"] for s in session["styles"]] == list(DEFAULT_STYLES)
    assert session["styles"][1] == {"name": "neon", "about": DEFAULT_STYLES["neon"].about, "strength": 0.5}
    status, body = await site.submit("", style="neon", strength="0.55")
    assert status == 202, body
    assert body["job"]["prompt"] == DEFAULT_STYLES["neon"].prompt and body["job"]["strength"] == 0.55
    status, body = await site.submit("with a red umbrella", style="neon")
    assert body["job"]["prompt"] == DEFAULT_STYLES["neon"].prompt + ", with a red umbrella"
    assert body["job"]["strength"] == 0.5  # no slider value sent: the recipe's
    status, body = await site.submit("style=autumn", style="neon")
    assert status == 400 and "style" in body["error"]


# A chat result's "Compare" link ([web] public_url): a signed, expiring address of the page's
# drag-to-compare view of that one job. The link is its only credential.


def _written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


PUBLIC = 'public_url = "https://restyle.example.org"\naccess_token = "s3cret-token"'
BEARER = {"Authorization": "Bearer s3cret-token"}


def test_a_link_opens_only_the_job_and_the_time_it_was_signed_for():
    links = CompareLinks("https://restyle.example.org", b"k" * 32, ttl_s=3600)
    url = links.url("abc123", now=1000.0)
    assert url.startswith("https://restyle.example.org/compare/abc123?until=4600&sig=")
    sig = url.rsplit("sig=", 1)[1]
    assert links.problem("abc123", "4600", sig, now=4599.0) is None
    assert links.problem("abc124", "4600", sig, now=1000.0) == "forged"  # another job
    assert links.problem("abc123", "9600", sig, now=1000.0) == "forged"  # a longer life
    assert links.problem("abc123", "4600", sig[:-1] + "A", now=1000.0) == "forged"
    assert links.problem("abc123", "soon", sig, now=1000.0) == "forged"
    assert links.problem("abc123", "4600", sig, now=4601.0) == "expired"
    other_key = CompareLinks("https://restyle.example.org", b"j" * 32, ttl_s=3600)
    assert other_key.problem("abc123", "4600", sig, now=1000.0) == "forged"


@pytest.mark.parametrize(
    ("web", "fragment"),
    [
        ('public_url = "http://127.0.0.1:8080"', "cannot open a loopback address"),
        ('public_url = "https://restyle.example.org/?a=1"', "the link adds its own query"),
        ('public_url = "restyle.example.org"', "public_url"),
        ('public_url = "https://restyle.example.org"\nenabled = false', "public_url needs the web listener"),
    ],
)
def test_a_public_url_members_could_not_open_is_refused(tmp_path: Path, web: str, fragment: str):
    with pytest.raises(ConfigError, match=fragment):
        load_config(_written(tmp_path, f'[telegram]\ntoken = "1:x"\n[web]\n{web}\n'), env={})


async def test_the_compare_view_speaks_the_browsers_language(tmp_path):
    clock = FakeClock()
    site = await open_site(tmp_path, web=PUBLIC, clock=clock, headers=BEARER)
    browser = aiohttp.ClientSession()
    try:
        status, body = await site.submit("oil painting")
        assert status == 202, body
        job_id = body["job"]["id"]
        await site.wait(job_id)
        link = site.app.service.compare_links.url(job_id, clock.now()).replace("https://restyle.example.org", site.url)
        pages = {}
        for lang in ("es-ES,es;q=0.9", "ru", None):
            headers = {"Accept-Language": lang} if lang else {}
            async with browser.get(link, headers=headers) as response:
                assert response.status == 200
                pages[lang] = await response.text()
        spanish, russian, english = pages.values()
        assert '<html lang="es">' in spanish and "<title>Comparar · restyle-bot</title>" in spanish
        assert ">Original<" in spanish and 'alt="La imagen original"' in spanish
        assert '<html lang="ru">' in russian and ">Оригинал<" in russian
        assert '<html lang="en">' in english and ">Restyled<" in english and 'data-valuetext="{percent}% restyled"' in english
        for page in pages.values():
            assert "{{" not in page  # every label was filled
    finally:
        await browser.close()
        await site.http.close()
        await site.app.stop()


async def test_the_link_opens_that_jobs_compare_view_without_the_pages_token(tmp_path):
    clock = FakeClock()
    site = await open_site(tmp_path, web=PUBLIC, clock=clock, headers=BEARER)
    stranger = aiohttp.ClientSession()  # a member's browser: no token, no cookie
    try:
        status, body = await site.submit("oil painting")
        assert status == 202, body
        job_id = body["job"]["id"]
        await site.wait(job_id)
        links = site.app.service.compare_links
        assert links is not None
        link = links.url(job_id, clock.now()).replace("https://restyle.example.org", site.url)

        async with stranger.get(link) as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/html")
            assert "img-src 'self'" in response.headers["Content-Security-Policy"]
            page = await response.text()
        assert "oil painting" in page and 'src="assets/compare.js"' in page
        query = link.split("?", 1)[1]
        assert f'src="{job_id}/original.png?{query.replace("&", "&amp;")}"' in page
        for which, kind in (("original", "input"), ("result", "result")):
            async with stranger.get(f"{site.url}/compare/{job_id}/{which}.png?{query}") as response:
                assert response.status == 200 and response.headers["Content-Type"] == "image/png"
                assert (await response.read())[:4] == b"\x89PNG"
        for name in ("style.css", "compare.js"):
            async with stranger.get(f"{site.url}/compare/assets/{name}") as response:
                assert response.status == 200

        # Everything else keeps the page's token rules.
        async with stranger.get(f"{site.url}/api/jobs/{job_id}?{query}") as response:
            assert response.status == 401
        async with stranger.get(f"{site.url}/compare/assets/app.js") as response:
            assert response.status == 404
        # An edited link opens nothing, and does not say whether the job exists.
        async with stranger.get(link.replace("sig=", "sig=x")) as response:
            assert response.status == 404 and COMPARE_GONE in await response.text()
        async with stranger.get(f"{site.url}/compare/{job_id}/result.png?{query.replace('until=', 'until=9')}") as response:
            assert response.status == 404

        await clock.advance(7 * 86_400 + 1)  # compare_link_days defaults to 7
        async with stranger.get(link) as response:
            assert response.status == 410 and COMPARE_EXPIRED in await response.text()
    finally:
        await stranger.close()
        await site.http.close()
        await site.app.stop()


async def test_without_a_public_url_there_are_no_compare_routes(tmp_path):
    site = await open_site(tmp_path)
    try:
        assert site.app.service.compare_links is None
        async with site.http.get(f"{site.url}/compare/abc?until=1&sig=x") as response:
            assert response.status == 404
    finally:
        await site.http.close()
        await site.app.stop()


def test_the_key_is_the_same_on_every_machine_that_shares_the_payments_secret(tmp_path: Path):
    text = '[payments]\nsecret = "shared"\n[web]\npublic_url = "https://restyle.example.org"\n'
    first = compare_links(load_config(_written(tmp_path, text), env={}), tmp_path / "a")
    second = compare_links(load_config(tmp_path / "config.toml", env={}), tmp_path / "b")
    assert first is not None and second is not None and first.key == second.key


# The member's language (the browser's Accept-Language) -------------------------------------------


async def test_the_page_answers_in_the_language_the_browser_asks_for(site):
    spanish = {"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}
    form = aiohttp.FormData()
    form.add_field("prompt", "cat")
    async with site.http.post(f"{site.url}/api/jobs", data=form, headers=spanish) as response:
        assert response.status == 400 and (await response.json())["error"] == "Elige o suelta una imagen primero."
    form = aiohttp.FormData()
    form.add_field("picture", picture_bytes(), filename="in.png", content_type="image/png")
    form.add_field("prompt", "cat")
    form.add_field("strength", "2")
    async with site.http.post(f"{site.url}/api/jobs", data=form, headers={"Accept-Language": "ru"}) as response:
        assert response.status == 400
        assert (await response.json())["error"].startswith("strength должен быть числом от 0.05 до 1.0")
    # A refusal from the core too: a file that is not a picture, in Spanish.
    form = aiohttp.FormData()
    form.add_field("picture", b"%PDF-1.4 not a picture at all" * 10, filename="in.png", content_type="image/png")
    form.add_field("prompt", "cat")
    async with site.http.post(f"{site.url}/api/jobs", data=form, headers=spanish) as response:
        body = await response.json()
        assert response.status == 400 and body["reason"] == "picture"
        assert body["error"].startswith("Ese archivo no es una imagen que pueda leer")
    # Without the header (or with a language the bot has no catalogue for): English.
    status, body = await site.submit("cat", picture=b"%PDF-1.4 not a picture at all" * 10)
    assert status == 400 and body["error"].startswith("That file isn't a picture I can read")


async def test_the_pages_own_errors_and_a_jobs_words_follow_the_browsers_language(site):
    spanish = {"Accept-Language": "es-ES,es;q=0.9"}
    async with site.http.get(f"{site.url}/api/jobs/0123abcd", headers=spanish) as response:
        assert response.status == 404
        assert (await response.json())["error"] == "Esa imagen ya no se conserva; elígela otra vez y pulsa Ejecutar."
    async with site.http.get(f"{site.url}/api/nothing-here", headers={"Accept-Language": "ru"}) as response:
        assert response.status == 404 and (await response.json())["error"] == "Здесь ничего нет."
    async with site.http.post(f"{site.url}/api/jobs", data="x=1", headers={**spanish, "Content-Type": "text/plain"}) as response:
        assert response.status == 400 and (await response.json())["error"].startswith("Envía la imagen como multipart")
    status, body = await site.submit("oil painting", strength="0.8")
    assert status == 202, body
    job_id = body["job"]["id"]
    await site.wait(job_id)
    async with site.http.get(f"{site.url}/api/jobs/{job_id}", headers=spanish) as response:
        assert (await response.json())["strength_word"] == "fuerte"
    async with site.http.get(f"{site.url}/api/jobs/{job_id}") as response:
        assert (await response.json())["strength_word"] == "heavy"  # no header: English
    async with site.http.get(f"{site.url}/api/jobs/{job_id}/result.gif", headers=spanish) as response:
        assert (await response.json())["error"] == "Los resultados se descargan como .png, .webp o .jpeg."


async def test_a_compare_link_that_opens_nothing_says_so_in_the_browsers_language(tmp_path):
    clock = FakeClock()
    site = await open_site(tmp_path, web=PUBLIC, clock=clock, headers=BEARER)
    stranger = aiohttp.ClientSession(headers={"Accept-Language": "es"})
    try:
        status, body = await site.submit("oil painting", strength="0.8")
        assert status == 202, body
        job_id = body["job"]["id"]
        await site.wait(job_id)
        links = site.app.service.compare_links
        assert links is not None
        link = links.url(job_id, clock.now()).replace("https://restyle.example.org", site.url)
        async with stranger.get(link) as response:
            assert "strength 0.8 (fuerte) · seed" in await response.text()
        async with stranger.get(link.replace("sig=", "sig=x")) as response:
            assert response.status == 404
            assert (await response.text()).startswith("Este enlace de comparación no abre nada")
        await clock.advance(7 * 86_400 + 1)
        async with stranger.get(link) as response:
            assert response.status == 410 and (await response.text()).startswith("Este enlace de comparación ha caducado.")
    finally:
        await stranger.close()
        await site.http.close()
        await site.app.stop()
