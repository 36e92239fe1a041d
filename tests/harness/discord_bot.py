"""The Discord harness: the real discord.py client, the whole app in-process (real SQLite in
tmp_path, FakeEngine, FakeClock) and a fake Discord (REST + gateway) on 127.0.0.1; shared by the
Discord tests."""

from __future__ import annotations

import asyncio
import io
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.adapters.discord.adapter import DiscordAdapter
from bot.app import App
from bot.clock import FakeClock
from bot.config import load_config
from tests.fake_discord import EPHEMERAL, Call, FakeDiscord
from tests.fakes import FakeEngine, picture_bytes

USER = 1001
OTHER = 2002
GUILD = 777
CHANNEL = 555
RESULT_FILES = 3  # a result message: the before/after, the original, the result


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clock = FakeClock()
        self.engine = FakeEngine(max_batch=1)
        self.fake = FakeDiscord(clock=self.clock)
        self.app: App | None = None
        self.adapter: DiscordAdapter | None = None
        # Every hold_database() gate: close() opens them, so a test that fails while one is shut
        # fails alone instead of leaving every query (and the teardown) waiting forever.
        self.database_gates: list[asyncio.Event] = []

    async def start(self, extra: str = "", *, guilds: str = f"[{GUILD}]", bot: str = "", free_wait_s: float = 0,
                    **adapter_kw: Any) -> "Harness":  # fmt: skip
        if not self.fake.port:  # else it is another harness's, running already
            await self.fake.start()
        path = self.tmp_path / "config.toml"
        path.write_text(
            f'[bot]\ndata_dir = "{self.tmp_path / "data"}"\n{bot}\n'
            f'[discord]\ntoken = "fake-token"\napi_base = "{self.fake.api_base}"\n'
            f'gateway_url = "{self.fake.gateway_url}"\nguild_ids = {guilds}\n{extra}\n'
            f"[tiers.free]\nmin_turnaround_s = {free_wait_s}\n"
        )
        config = load_config(path, env={})
        options = {"edit_interval_s": 0.0, "request_timeout_s": 2.0, "ready_timeout_s": 5.0, **adapter_kw}

        def adapters(config, service, health):
            self.adapter = DiscordAdapter(config, service, **options)
            return [self.adapter]

        self.app = await App.create(config, clock=self.clock, engine_factory=lambda c: self.engine, adapters=adapters)
        await self.app.start()
        return self

    async def close(self) -> None:
        for gate in self.database_gates:
            gate.set()
        if self.engine.gate is not None:
            self.engine.gate.set()
        if self.app is not None:
            await self.app.stop()
        await self.fake.close()

    @property
    def service(self):
        assert self.app is not None
        return self.app.service

    async def messages_handled(self, count: int) -> None:
        """Until the adapter has finished handling `count` message events (answered or ignored)."""
        await self.fake.wait_for(lambda: self.adapter.messages_handled >= count, what=f"{count} messages handled")

    def hold_database(self) -> asyncio.Event:
        """Every query waits until the returned event is set: a remote database having a slow moment."""
        gate = asyncio.Event()
        self.database_gates.append(gate)
        db = self.app.store.db
        for name in ("fetch_all", "fetch_written", "execute", "execute_many"):
            real = getattr(db, name)

            async def held(*args: Any, _real=real, **kwargs: Any) -> Any:
                await gate.wait()
                return await _real(*args, **kwargs)

            setattr(db, name, held)
        return gate

    def hold_engine(self) -> threading.Event:
        return self.engine.hold()

    async def jobs(self) -> list:
        rows = await self.app.store.jobs([j for j in await self._job_ids()])
        return sorted(rows, key=lambda j: j.seq)

    async def _job_ids(self) -> list[str]:
        rows = await self.app.store.db.fetch_all("SELECT id FROM jobs")  # test-only peek
        return [row["id"] for row in rows]

    async def restyle(self, prompt: str = "oil painting", strength: float = 0.5, *, user_id: int = USER, **more: Any):
        image = more.pop("image", None) or self.fake.attachment(picture_bytes())
        return await self.fake.slash("restyle", {"image": image, "prompt": prompt, "strength": strength, **more},
                                     user_id=user_id)  # fmt: skip

    async def result_of(self, interaction: dict[str, Any]) -> dict[str, Any]:
        """Wait until the interaction's response holds the two pictures; return that message."""
        return await self.fake.wait_for(
            lambda: (m := self.fake.original(interaction)) and len(m["attachments"]) == RESULT_FILES and m,
            what="the result in the original response",
        )


    async def follow_up_result(self, click: dict[str, Any]) -> dict[str, Any]:
        """After a button click: the new job's result, in a follow-up of the click (not its @original,
        which is the message the button is on)."""
        clicked = click["message"]["id"]
        return await self.fake.wait_for(
            lambda: next((m for m in self.fake.made_by(click) if m["id"] != clicked and len(m["attachments"]) == RESULT_FILES), None),
            what="the result in a follow-up of the click",
        )


@pytest.fixture
async def h(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    await harness.close()


def callbacks(fake: FakeDiscord, ctype: int | None = None):
    return [c for c in fake.find("POST", r"^/interactions/\d+/[^/]+/callback$") if ctype is None or c.json["type"] == ctype]


def result_edits(fake: FakeDiscord):
    return [c for c in fake.find("PATCH", r"^/webhooks/") if len(c.files) == RESULT_FILES]


def ephemerals(fake: FakeDiscord) -> list[str]:
    """Every text the members saw privately: ephemeral callbacks and ephemeral follow-ups."""
    out = []
    for c in fake.calls:  # in the order they were made
        if c.status >= 300 or c.method != "POST" or not c.flags & EPHEMERAL:
            continue
        if re.search(r"^/interactions/\d+/[^/]+/callback$", c.path) and c.json["type"] == 4:
            out.append(c.json["data"].get("content"))
        elif re.search(r"^/webhooks/\d+/[^/]+$", c.path):
            out.append(c.content)
    return [t for t in out if t]


def private_answers(fake: FakeDiscord) -> list[Call]:
    """The calls that carried a private answer (an ephemeral callback or follow-up), in order."""
    return [c for c in fake.calls if c.method == "POST" and c.status < 300 and c.flags & EPHEMERAL
            and (c.path.endswith("/callback") and c.json["type"] == 4 or c.path.startswith("/webhooks/"))]


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size
