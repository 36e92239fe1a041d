"""The web page through the whole app on a real port (port 0) with a stand-in engine, and an
HTTP client pointed at it; shared by the web API's test modules."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from bot.adapters.web import WebAdapter
from bot.app import App
from bot.config import load_config
from tests.fakes import FakeEngine, picture_bytes, wait_until

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def write_config(tmp_path: Path, web: str = "", extra: str = "", tier: str = "pro") -> Path:
    # The pro tier has no minimum turnaround, so results show as soon as the engine is done.
    path = tmp_path / "config.toml"
    path.write_text(f'[bot]\ndata_dir = "{tmp_path / "data"}"\n{extra}\n[web]\nport = 0\ntier = "{tier}"\n{web}\n')
    return path


class Site:
    """The whole bot (App) with a FakeEngine, and an HTTP client pointed at its page."""

    def __init__(self, app: App, engine: FakeEngine, session: aiohttp.ClientSession) -> None:
        self.app = app
        self.engine = engine
        self.http = session
        self.web = next(a for a in app.adapters if isinstance(a, WebAdapter))
        self.url = self.web.url

    async def submit(
        self, prompt: str = "oil painting", picture: bytes | None = None, **fields: str
    ) -> tuple[int, dict]:
        form = aiohttp.FormData()
        form.add_field("picture", picture if picture is not None else picture_bytes(), filename="in.png",
                       content_type="image/png")  # fmt: skip
        form.add_field("prompt", prompt)
        for key, value in fields.items():
            form.add_field(key, value)
        async with self.http.post(f"{self.url}/api/jobs", data=form) as response:
            return response.status, await response.json()

    async def get_json(self, path: str) -> tuple[int, Any]:
        async with self.http.get(f"{self.url}{path}") as response:
            return response.status, await response.json()

    async def wait(self, job_id: str, statuses: tuple[str, ...] = ("ready",), timeout: float = 5.0) -> dict:
        return await self.wait_state(f"/api/jobs/{job_id}", statuses, timeout)

    async def wait_state(self, path: str, statuses: tuple[str, ...] = ("ready",), timeout: float = 5.0) -> dict:
        """The state at `path` (a job's or a sweep's) once its status is one of `statuses`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status, state = await self.get_json(path)
            assert status == 200, state
            if state["status"] in statuses:
                return state
            assert asyncio.get_running_loop().time() < deadline, f"{path} stuck at {state}"
            await asyncio.sleep(0.02)


async def open_site(tmp_path: Path, web: str = "", extra: str = "", *, tier: str = "pro", clock=None,
                    engine: FakeEngine | None = None, headers: dict[str, str] | None = None) -> Site:  # fmt: skip
    config = load_config(write_config(tmp_path, web, extra, tier), env={})
    engine = engine or FakeEngine()
    app = await App.create(config, engine_factory=lambda _: engine, clock=clock)
    await app.start()
    await wait_until(lambda: app.health.engine_ready, what="the engine to load")  # it "loads" in a thread
    # unsafe=True: keep cookies from an IP address (127.0.0.1), as browsers do.
    session = aiohttp.ClientSession(headers=headers, cookie_jar=aiohttp.CookieJar(unsafe=True))
    return Site(app, engine, session)
