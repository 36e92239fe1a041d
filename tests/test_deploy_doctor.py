"""`python -m bot doctor` against the fake Bot API and the fake Discord REST API, with the tiny
model for the model check."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.__main__ import main
from bot.app import load_diffusers_engine
from bot.config import load_config
from bot.doctor import GATEWAY_MESSAGE_CONTENT, run_checks
from tests.engine_fixtures import tiny_model_dir  # noqa: F401  (pytest fixture)
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram

TOKEN = "123456:TEST-token"


@pytest.fixture
async def telegram():
    fake = await FakeTelegram(TOKEN).start()
    yield fake
    await fake.close()


@pytest.fixture
async def discord():
    fake = await FakeDiscord().start()
    yield fake
    await fake.close()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[engine]\ndevice = "cpu"\n{text}')
    return path


def chats(telegram: FakeTelegram, discord: FakeDiscord, telegram_extra: str = "", discord_extra: str = "") -> str:
    return (f'[telegram]\ntoken = "{TOKEN}"\nbase_url = "{telegram.base_url}"\n{telegram_extra}\n'
            f'[discord]\ntoken = "d-token"\napi_base = "{discord.api_base}"\n{discord_extra}\n')  # fmt: skip


async def checks_for(path: Path, model: bool = False) -> dict[str, list]:
    config = load_config(path, env={})
    found: dict[str, list] = {}
    for check in await run_checks(config, path, load_engine=load_diffusers_engine if model else None):
        found.setdefault(check.name, []).append(check)
    return found


async def test_a_healthy_deployment_passes_every_check_and_loads_the_model(tmp_path, telegram, discord, tiny_model_dir):
    discord.guild_permissions = {555: (1 << 10) | (1 << 11) | (1 << 15)}
    path = write(tmp_path, f'model = "{tiny_model_dir}"\nlocal_files_only = true\n'
                           + chats(telegram, discord, discord_extra="guild_ids = [555]"))  # fmt: skip
    found = await checks_for(path, model=True)
    assert set(found) == {"config", "database", "device", "model", "telegram", "webhook", "discord", "intents", "server"}
    assert all(c.ok for cs in found.values() for c in cs), [c.line() for cs in found.values() for c in cs]
    assert found["model"][0].detail.startswith("loaded in ")
    assert found["telegram"][0].detail.startswith("@RestyleTestBot")
    assert found["webhook"][0].detail == "long polling"
    assert [c.name for c in (await run_checks(load_config(path, env={}), path, load_engine=None))][:4] == [
        "config", "database", "device", "model"]  # one line each, in this order


async def test_wrong_tokens_say_where_to_get_new_ones(tmp_path, telegram, discord):
    path = write(tmp_path, chats(telegram, discord).replace(TOKEN, "123456:WRONG"))
    discord.fail("GET", r"^/users/@me$", 401, message="401: Unauthorized")
    found = await checks_for(path)
    assert not found["telegram"][0].ok and "@BotFather" in found["telegram"][0].detail
    assert "WRONG" not in found["telegram"][0].line()  # the token never reaches the output
    assert not found["discord"][0].ok and "Reset Token" in found["discord"][0].detail
    assert found["config"][0].ok and found["database"][0].ok


async def test_message_replies_without_the_content_intent_fail_until_it_is_granted(tmp_path, telegram, discord):
    path = write(tmp_path, chats(telegram, discord, discord_extra="message_replies = true"))
    (intents,) = (await checks_for(path))["intents"]
    assert not intents.ok and "Privileged Gateway Intents" in intents.detail
    discord.app_flags = GATEWAY_MESSAGE_CONTENT
    (intents,) = (await checks_for(path))["intents"]
    assert intents.ok


async def test_servers_the_bot_is_not_in_or_cannot_post_in_are_named(tmp_path, telegram, discord):
    discord.guild_permissions = {555: 1 << 10}  # can see, cannot send
    path = write(tmp_path, chats(telegram, discord, discord_extra="guild_ids = [555, 777]"))
    first, second = (await checks_for(path))["server"]
    assert not first.ok and "lacks Send Messages, Attach Files" in first.detail
    assert not second.ok and "not in server 777" in second.detail and "oauth2/authorize?client_id=" in second.detail


async def test_a_failing_webhook_is_reported_with_what_to_fix(tmp_path, telegram, discord):
    url = "https://bot.example.org/telegram"
    telegram.webhook, telegram.webhook_error = {"url": url}, "Connection timed out"
    path = write(tmp_path, chats(telegram, discord, telegram_extra=f'webhook_url = "{url}"'))
    (webhook,) = (await checks_for(path))["webhook"]
    assert not webhook.ok and "Connection timed out" in webhook.detail and "127.0.0.1:8443" in webhook.detail


async def test_unreachable_chat_servers_and_a_missing_model_fail_in_one_line_each(tmp_path):
    path = write(tmp_path, '[telegram]\ntoken = "1:x"\nbase_url = "http://127.0.0.1:9/bot"\n'
                           '[discord]\ntoken = "d"\napi_base = "http://127.0.0.1:9/api/v10"\n')  # fmt: skip
    path.write_text(path.read_text().replace('device = "cpu"', f'device = "cpu"\nmodel = "{tmp_path / "no-model"}"'))
    found = await checks_for(path, model=True)
    assert not found["telegram"][0].ok and "cannot reach 127.0.0.1:9" in found["telegram"][0].detail
    assert not found["discord"][0].ok and "cannot reach 127.0.0.1:9" in found["discord"][0].detail
    assert not found["model"][0].ok and "there is no such folder" in found["model"][0].detail


async def test_an_unwritable_data_folder_fails_the_database_check(tmp_path):
    (tmp_path / "data").write_text("a file where the folder should be")
    found = await checks_for(write(tmp_path, '[bot]\ndata_dir = "data"\n'))
    assert not found["database"][0].ok and "[bot] data_dir" in found["database"][0].detail


def test_doctor_command_prints_one_line_per_check_and_exits_1_on_a_failure(tmp_path, capsys):
    path = write(tmp_path, "")
    assert main(["--config", str(path), "doctor", "--skip-model"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["ok", "config"], ["ok", "database"], ["ok", "device"],
                                                   ["ok", "model"], ["ok", "chats"]]  # fmt: skip
    path.write_text("[engine]\nsteps = 0\n")
    assert main(["--config", str(path), "doctor"]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("FAIL  config") and "steps" in line
