"""End to end: the real `python -m bot --config ...` process, with the tiny diffusion model,
talking to the fake Bot API server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.engine_fixtures import tiny_model_dir  # noqa: F401  (pytest fixture)
from tests.fake_telegram import FakeTelegram, buttons
from tests.fakes import picture_bytes

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]  # slow: the real `python -m bot` process on the tiny model

TOKEN = "987654321:AAEx-tinyModelProcessTestTokenValue12"
ANA = FakeTelegram.user(2001, "Ana")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def fake():
    server = await FakeTelegram(TOKEN).start()
    yield server
    await server.close()


async def test_bot_process_answers_a_reply_to_a_photo_with_the_tiny_model(tmp_path, fake, tiny_model_dir):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[engine]\nmodel = "{tiny_model_dir}"\ndevice = "cpu"\nsteps = 2\nlocal_files_only = true\n'
        f'[telegram]\nbase_url = "{fake.base_url}"\nbase_file_url = "{fake.base_file_url}"\n'
        "[tiers.free]\nmin_turnaround_s = 0\n[queue]\nshutdown_grace_s = 5\n"
        "[web]\nport = 0\n"  # the health endpoints of a chat-only bot, on a free port
    )
    log_path = tmp_path / "bot.log"
    env = {**os.environ, "RESTYLE_TELEGRAM_TOKEN": TOKEN, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "--config", str(config), "--log-level", "DEBUG",
            cwd=ROOT, env=env, stdout=log_file, stderr=log_file,
        )  # fmt: skip
    try:
        await fake.wait_for("getUpdates", timeout=60)
        photo = fake.message(ANA, photo=picture_bytes((96, 64)), push=False)
        sent_at = time.monotonic()
        request = fake.message(ANA, text="/restyle oil painting seed=5", reply_to=photo)
        [status] = await fake.wait_for("sendMessage", timeout=10)
        print(f"\nprocess: update -> status message {1000 * (status.at - sent_at):.0f} ms")
        assert status.params["text"].startswith("Queued: #1 in line")
        assert status.params["reply_parameters"]["message_id"] == request["message_id"]

        [album] = await fake.wait_for("sendMediaGroup", timeout=60)
        assert album.params["media"][0]["media"] == photo["photo"][-1]["file_id"]
        assert "seed 5" in album.params["media"][1]["caption"]
        await fake.wait_for("sendMessage", 2, timeout=10)
        buttons_message = next(m for m in fake.sent(ANA["id"]) if m.get("text") == "More from this picture:")
        png = next(b["callback_data"] for b in buttons(buttons_message) if b["callback_data"].startswith("file:png:"))
        fake.press(ANA, buttons_message, png)
        [document] = await fake.wait_for("sendDocument", timeout=10)
        assert document.files["document"].startswith(b"\x89PNG")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
    log = log_path.read_text(errors="replace")
    assert process.returncode == 0, log[-3000:]
    assert "Telegram connected as @RestyleTestBot" in log
    assert TOKEN not in log and TOKEN.split(":")[1] not in log, "the token leaked into the logs"
