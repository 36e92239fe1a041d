"""The Telegram harness: the whole app in-process (real SQLite in tmp_path, FakeEngine, FakeClock)
on the real python-telegram-bot client, against the fake Bot API server (tests/fake_telegram.py)
on 127.0.0.1; and the payment helpers. Shared by the Telegram tests."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.telegram.adapter import TelegramAdapter
from bot.app import App
from bot.clock import FakeClock
from bot.config import load_config
from tests.fake_telegram import FakeTelegram
from tests.fakes import FakeEngine, picture_bytes

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
ANA = FakeTelegram.user(1001, "Ana")
BEN = FakeTelegram.user(1002, "Ben")
GROUP = FakeTelegram.group_chat()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def write_config(
    tmp_path: Path, fake: FakeTelegram, telegram: str = "", extra: str = "", bot: str = "", free_wait_s: float = 0
) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n{bot}\n'
        f'[telegram]\ntoken = "{TOKEN}"\nbase_url = "{fake.base_url}"\nbase_file_url = "{fake.base_file_url}"\n{telegram}\n'
        # Results as soon as the engine is done; a held batch gives up quickly at stop.
        f"[tiers.free]\nmin_turnaround_s = {free_wait_s}\n[queue]\nshutdown_grace_s = 0.3\n"
        f"{extra}\n"
    )
    return path


class Bot:
    def __init__(self, app: App, engine: FakeEngine, clock: FakeClock) -> None:
        self.app = app
        self.engine = engine
        self.clock = clock
        self.adapter: TelegramAdapter = app.adapters[0]  # type: ignore[assignment]
        self.stopped = False

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.app.stop()  # a held batch stays 'running' on disk, like a crash mid-batch
            if self.engine.gate is not None:
                self.engine.gate.set()  # let the engine's thread end

    async def job(self, job_id: str) -> Any:
        return await self.app.store.job(job_id)


@pytest.fixture
async def fake():
    server = await FakeTelegram(TOKEN).start()
    yield server
    await server.close()


@pytest.fixture
async def start_bot(tmp_path, fake):
    started: list[Bot] = []

    async def start(
        *,
        engine: FakeEngine | None = None,
        clock: FakeClock | None = None,
        telegram: str = "",
        extra: str = "",
        bot: str = "",  # lines for [bot], e.g. admins = ["telegram:9001"]
        wait_polling: bool = True,
        free_wait_s: float = 0,  # [tiers.free] min_turnaround_s: results as soon as the engine is done
        **adapter_kwargs: Any,
    ) -> Bot:
        config = load_config(write_config(tmp_path, fake, telegram, extra, bot, free_wait_s), env={})
        engine = engine or FakeEngine()
        clock = clock or FakeClock()
        adapter_kwargs.setdefault("edit_interval_s", 0.2)
        adapter_kwargs.setdefault("poll_timeout_s", 5)
        app = await App.create(
            config,
            engine_factory=lambda _: engine,
            clock=clock,
            adapters=lambda c, s, h: [TelegramAdapter(c, s, **adapter_kwargs)],
        )
        polls = len(fake.calls_to("getUpdates"))
        bot = Bot(app, engine, clock)
        started.append(bot)  # stopped at teardown even if start fails
        await app.start()
        if wait_polling:
            await fake.wait_for("getUpdates", polls + 1)
        return bot

    yield start
    for bot in reversed(started):
        await bot.stop()


def photo_message(fake: FakeTelegram, user=ANA, chat=None, picture: bytes | None = None) -> dict[str, Any]:
    """A photo the member posted earlier (not pushed: only the reply to it is an update)."""
    return fake.message(user, chat, photo=picture or picture_bytes((96, 64)), push=False)


def replies_to(fake: FakeTelegram, message: dict[str, Any], method: str = "sendMessage") -> list[Any]:
    return [
        c for c in fake.calls_to(method, ok_only=True)
        if (c.params.get("reply_parameters") or {}).get("message_id") == message["message_id"]
        and c.params.get("chat_id") == message["chat"]["id"]
    ]  # fmt: skip


async def wait_reply(fake: FakeTelegram, message: dict[str, Any], count: int = 1, method: str = "sendMessage") -> list[Any]:
    await fake.wait_until(lambda: len(replies_to(fake, message, method)) >= count)
    return replies_to(fake, message, method)


def album_pictures(call) -> list[bytes]:
    """The uploaded parts of a sendMediaGroup call, in media order (None for a file_id)."""
    out = []
    for item in call.params["media"]:
        ref = item["media"]
        out.append(call.files[ref[len("attach://"):]] if ref.startswith("attach://") else None)
    return out


async def settle(bot: Bot, fake: FakeTelegram) -> None:
    """Until every update pushed so far was fetched and handled, and no delivery is in flight:
    what the bot has not sent by then, it will not send for those updates (no fixed sleep)."""
    await fake.wait_fetched()
    await asyncio.wait_for(bot.adapter.application.update_queue.join(), 5)
    await asyncio.wait_for(bot.app.service.dispatch.wait_delivered(), 5)


async def finish(bot: Bot, fake: FakeTelegram, n_albums: int = 1) -> None:
    """Wait until n albums, their buttons messages and the status clean-ups went out."""
    await fake.wait_for("sendMediaGroup", n_albums)
    await bot.app.service.dispatch.wait_delivered()


class Turnstile:
    """A gate for FakeEngine that lets one batch through per set()."""

    def __init__(self) -> None:
        self._passes = threading.Semaphore(0)

    def wait(self, timeout: float) -> bool:
        return self._passes.acquire(timeout=timeout)

    def set(self) -> None:
        self._passes.release()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Payments ------------------------------------------------------------------------------------

ROOT = FakeTelegram.user(900, "Root")
PLANS = """
[payments]
secret = "tg-test"
[plans.pro_month]
tier = "pro"
days = 30
stars = 250
subscription = true
[plans.max_week]
tier = "max"
days = 7
stars = 150
"""
ADMINS = 'admins = ["telegram:900"]'
DAY = 86400.0


async def said(fake: FakeTelegram, user: dict, text: str) -> str:
    message = fake.message(user, text=text)
    [answer] = await wait_reply(fake, message)
    return answer.params["text"]


async def buy(fake: FakeTelegram, user: dict, plan: str, method: str = "sendInvoice"):
    upgrade = fake.message(user, text="/upgrade")
    [answer] = await wait_reply(fake, upgrade)
    sent = fake.sent(user["id"])[-1]
    before = len(fake.calls_to(method, ok_only=True))
    fake.press(user, sent, f"buy:{plan}")
    calls = await fake.wait_for(method, before + 1)
    return answer, calls[-1]
