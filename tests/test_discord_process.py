"""The real `python -m bot` process, configured to talk to the fake Discord on 127.0.0.1, running
the tiny random-weight model through real diffusers: /restyle in, two pictures and buttons out,
then a clean SIGTERM stop."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.engine_fixtures import tiny_model_dir  # noqa: F401  (a pytest fixture)
from tests.fake_discord import FakeDiscord
from tests.fakes import picture_bytes

pytestmark = pytest.mark.slow  # the real `python -m bot` process on the tiny model

ROOT = Path(__file__).resolve().parent.parent


async def test_python_m_bot_answers_a_slash_restyle_with_both_pictures_on_the_tiny_model(tmp_path, tiny_model_dir):
    fake = await FakeDiscord().start()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[engine]\nmodel = "{tiny_model_dir}"\nlocal_files_only = true\ndevice = "cpu"\nsteps = 4\n'
        f'[discord]\napi_base = "{fake.api_base}"\ngateway_url = "{fake.gateway_url}"\nguild_ids = [777]\n'
        "[tiers.free]\nmin_turnaround_s = 0\nmax_side = 64\n"
    )
    env = {**os.environ, "RESTYLE_DISCORD_TOKEN": "fake-process-token", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "--config", str(config), cwd=ROOT, env=env, stdout=log_file, stderr=log_file
        )
        try:
            await fake.wait_for(lambda: fake.commands.get("777"), timeout=60, what="the bot to connect and sync")
            interaction = await fake.slash(
                "restyle", {"image": fake.attachment(picture_bytes((80, 64))), "prompt": "ink drawing", "strength": 0.5}
            )
            message = await fake.wait_for(
                lambda: (m := fake.original(interaction)) and len(m["attachments"]) == 3 and m,
                timeout=90,
                what="the result",
            )
            assert "ink drawing" in message["content"]
            edit = next(c for c in fake.calls if c.method == "PATCH" and len(c.files) == 3)
            sizes = []
            for _, data, _ in edit.files[1:]:  # after the before/after: the original and the result
                with Image.open(io.BytesIO(data)) as img:
                    sizes.append(img.size)
            assert sizes[0] == sizes[1] and max(sizes[0]) == 64  # the free tier's max_side
            assert edit.custom_ids[0].startswith("restyle:again:")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await fake.close()
    text = log_path.read_text(errors="replace")
    assert "fake-process-token" not in text  # the token never reaches the log
    assert "Traceback" not in text, text[-3000:]
