"""config.toml loading: defaults, environment tokens, refusals that name the key, and
config.example.toml staying true to the code."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from bot.config import (
    DEFAULT_TIERS,
    BotSettings,
    Config,
    ConfigError,
    DiscordSettings,
    EngineSettings,
    QueueSettings,
    TelegramSettings,
    TierSettings,
    WebSettings,
    is_admin,
    load_config,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
NO_ENV: dict[str, str] = {}

SECTION_CLASSES = {
    "bot": BotSettings,
    "engine": EngineSettings,
    "queue": QueueSettings,
    "telegram": TelegramSettings,
    "discord": DiscordSettings,
    "web": WebSettings,
}


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), env=NO_ENV if env is None else env)


def refusal(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text, env)
    return str(caught.value)


def without_path_and_data_dir(config: Config) -> Config:
    return dataclasses.replace(config, path=None, bot=dataclasses.replace(config.bot, data_dir=Path("data")))


# --- Defaults ---------------------------------------------------------------------------------


def test_no_file_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, env=NO_ENV)
    assert without_path_and_data_dir(config) == Config()
    assert config.path is None
    assert config.bot.data_dir == tmp_path / "data"  # relative to cwd when there is no file
    assert config.engine == EngineSettings()
    assert config.engine.model == "stabilityai/sd-turbo" and config.engine.steps == 4
    assert config.queue == QueueSettings()
    assert config.web.host == "127.0.0.1" and config.web.port == 8080 and config.web.tier == "free"


def test_default_tiers() -> None:
    tiers = Config().tiers
    assert list(tiers) == ["free", "pro", "max"]
    assert tiers["free"] == TierSettings("free", 0, 40.0, 2, 20, 512, 8)
    assert tiers["pro"] == TierSettings("pro", 1, 0.0, 5, 200, 768, 20, sweep=True)
    assert tiers["max"] == TierSettings("max", 2, 0.0, 10, 1000, 1024, 50, sweep=True)
    assert dict(DEFAULT_TIERS) == tiers


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, "")
    assert without_path_and_data_dir(config) == Config()
    assert config.path == tmp_path / "config.toml"


def test_tier_lookup_falls_back_to_free() -> None:
    config = Config()
    assert config.tier("pro").name == "pro"
    assert config.tier("gold").name == "free"


def test_web_enabled_follows_tokens() -> None:
    assert Config().web_enabled
    assert not Config(telegram=TelegramSettings(token="t")).web_enabled
    assert not Config(discord=DiscordSettings(token="t")).web_enabled
    assert Config(telegram=TelegramSettings(token="t"), web=WebSettings(enabled=True)).web_enabled
    assert not Config(web=WebSettings(enabled=False)).web_enabled


def test_is_admin(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[bot]\nadmins = ["telegram:12345", "discord:67890", "web:local"]\n')
    assert is_admin(config, "telegram", "12345")
    assert is_admin(config, "discord", 67890)  # type: ignore[arg-type]  # ids as ints work too
    assert is_admin(config, "web", "local")
    assert not is_admin(config, "discord", "12345")  # the id alone is not enough
    assert not is_admin(config, "telegram", "1234")
    assert not is_admin(Config(), "web", "local")


# --- config.example.toml stays true -----------------------------------------------------------


def test_example_loads_to_exactly_the_defaults() -> None:
    config = load_config(EXAMPLE, env=NO_ENV)
    assert config.bot.data_dir == EXAMPLE.parent / "data"
    assert without_path_and_data_dir(config) == Config()


def _uncommented_example() -> str:
    # "# key = value" lines are settings left at a "not set" default; uncommenting them all must
    # still be a valid config, so their examples are not lies either.
    return re.sub(r"(?m)^# ?([a-z_]+ = )", r"\1", EXAMPLE.read_text(encoding="utf-8"))


def test_every_field_is_documented_in_the_example() -> None:
    documented = tomllib.loads(_uncommented_example())
    missing = []
    for section, cls in SECTION_CLASSES.items():
        for f in dataclasses.fields(cls):
            if f.name not in documented.get(section, {}):
                missing.append(f"[{section}] {f.name}")
    for tier in DEFAULT_TIERS:
        for f in dataclasses.fields(TierSettings):
            if f.name != "name" and f.name not in documented["tiers"][tier]:
                missing.append(f"[tiers.{tier}] {f.name}")
    assert not missing, f"config.example.toml lacks {missing}"


def test_example_keys_each_say_their_default() -> None:
    key_line = re.compile(r"^(# ?)?[a-z_]+ = ")
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not key_line.match(line):
            continue
        # The comment block right above the key, or a comment at the end of its line.
        block, j = [], i - 1
        while j >= 0 and lines[j].startswith("#") and not key_line.match(lines[j]):
            block.append(lines[j])
            j -= 1
        inline = line.split("#", 1)[1] if not line.startswith("#") and "#" in line else ""
        described = " ".join(block) + inline
        assert "default" in described.lower(), f"config.example.toml line {i + 1} ({line!r}) does not say its default"


def test_example_with_everything_uncommented_is_valid(tmp_path: Path) -> None:
    config = load_text(tmp_path, _uncommented_example())
    assert config.telegram.token and config.discord.token and config.web.access_token
    assert config.engine.turbo is True and config.engine.guidance_scale == 7.5


def test_example_header_says_how_to_use_it() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for fragment in ["cp config.example.toml config.toml", "scripts/run.sh --config config.toml",
                     "RESTYLE_TELEGRAM_TOKEN", "RESTYLE_DISCORD_TOKEN", "RESTYLE_WEB_TOKEN"]:
        assert fragment in text


# --- Environment tokens -----------------------------------------------------------------------


def test_env_tokens_win_over_the_file(tmp_path: Path) -> None:
    text = '[telegram]\ntoken = "file-tg"\n[discord]\ntoken = "file-dc"\n[web]\naccess_token = "file-web"\n'
    env = {"RESTYLE_TELEGRAM_TOKEN": "env-tg", "RESTYLE_DISCORD_TOKEN": "env-dc", "RESTYLE_WEB_TOKEN": "env-web"}
    config = load_text(tmp_path, text, env)
    assert (config.telegram.token, config.discord.token, config.web.access_token) == ("env-tg", "env-dc", "env-web")


def test_file_tokens_used_without_env(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[telegram]\ntoken = "file-tg"\n')
    assert config.telegram.token == "file-tg"
    assert config.discord.token is None
    assert not config.web_enabled


def test_env_tokens_without_a_file() -> None:
    config = load_config(None, env={"RESTYLE_DISCORD_TOKEN": " env-dc \n"})
    assert config.discord.token == "env-dc"
    assert not config.web_enabled


def test_empty_env_var_does_not_erase_the_file_token(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[telegram]\ntoken = "file-tg"\n', {"RESTYLE_TELEGRAM_TOKEN": ""})
    assert config.telegram.token == "file-tg"


def test_empty_token_in_file_means_not_set(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[telegram]\ntoken = ""\n')
    assert config.telegram.token is None
    assert config.web_enabled


# --- Overrides --------------------------------------------------------------------------------


def test_tier_override_keeps_the_other_keys(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[tiers.free]\ndaily_quota = 5\n\n[tiers.max]\nmin_turnaround_s = 1\n")
    assert config.tiers["free"] == dataclasses.replace(DEFAULT_TIERS["free"], daily_quota=5)
    assert config.tiers["pro"] == DEFAULT_TIERS["pro"]
    assert config.tiers["max"] == dataclasses.replace(DEFAULT_TIERS["max"], min_turnaround_s=1.0)
    assert isinstance(config.tiers["max"].min_turnaround_s, float)


def test_tier_sweep_defaults_and_override(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[tiers.free]\nsweep = true\n[tiers.max]\nsweep = false\n")
    assert [config.tiers[t].sweep for t in ("free", "pro", "max")] == [True, True, False]
    defaults = load_text(tmp_path, "")
    assert [defaults.tiers[t].sweep for t in ("free", "pro", "max")] == [False, True, True]


def test_tier_ranks_can_be_reordered(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[tiers.free]\nrank = 5\n[tiers.pro]\nrank = -1\n")
    assert [config.tiers[t].rank for t in ("free", "pro", "max")] == [5, -1, 2]


def test_every_section_overridable(tmp_path: Path) -> None:
    text = """
[bot]
admins = ["telegram:1"]
default_strength = 0.3
max_upload_mb = 5
[engine]
model = "/models/sdxl"
device = "cuda:1"
dtype = "bfloat16"
steps = 30
guidance_scale = 5
max_batch = 64
turbo = false
local_files_only = true
[queue]
aging_s = 0.5
member_gap_s = 0
eta_window = 1000
shutdown_grace_s = 0
[telegram]
base_url = "http://127.0.0.1:8081/bot"
webhook_url = "https://bot.example.org/tg"
webhook_listen = "0.0.0.0"
webhook_port = 88
max_download_mb = 2000
[discord]
gateway_url = "wss://gw.example.org/"
guild_ids = [123456789012345678, "223456789012345678"]
message_replies = true
[web]
enabled = true
host = "::1"
port = 0
tier = "max"
"""
    config = load_text(tmp_path, text)
    assert config.bot.admins == ("telegram:1",) and config.bot.max_upload_mb == 5.0
    assert config.engine == EngineSettings("/models/sdxl", "cuda:1", "bfloat16", 30, 5.0, 64, False, True)
    assert config.queue == QueueSettings(0.5, 0.0, 1000, 0.0)
    assert config.telegram.webhook_port == 88 and config.telegram.base_url == "http://127.0.0.1:8081/bot"
    assert config.discord.guild_ids == (123456789012345678, 223456789012345678)
    assert config.discord.gateway_url == "wss://gw.example.org/" and config.discord.message_replies
    assert config.web == WebSettings(True, "::1", 0, None, "max")


# --- data_dir ---------------------------------------------------------------------------------


def test_relative_data_dir_is_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = write(tmp_path / "etc", '[bot]\ndata_dir = "state/bot"\n')
    assert load_config(path, env=NO_ENV).bot.data_dir == tmp_path / "etc" / "state" / "bot"
    # ... also when the config path itself was given relative to the cwd.
    assert load_config(Path("../etc/config.toml"), env=NO_ENV).bot.data_dir == tmp_path / "etc" / "state" / "bot"


def test_absolute_data_dir_kept(tmp_path: Path) -> None:
    config = load_text(tmp_path, f'[bot]\ndata_dir = "{tmp_path / "abs"}"\n')
    assert config.bot.data_dir == tmp_path / "abs"


def test_home_data_dir_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_text(tmp_path, '[bot]\ndata_dir = "~/restyle"\n')
    assert config.bot.data_dir == tmp_path / "home" / "restyle"


# --- Refusals ---------------------------------------------------------------------------------

REFUSALS = [
    # (id, file text, fragments the message must contain)
    ("unknown-key-suggests", "[engine]\nstpes = 4\n", ["[engine]", "unknown key 'stpes'", "Did you mean 'steps'?"]),
    ("unknown-key-lists-valid", "[queue]\nfoo = 1\n", ["[queue]", "'foo'", "aging_s", "eta_window"]),
    ("key-in-wrong-section", "[bot]\ntoken = \"x\"\n", ["[bot]", "'token'", "[telegram] or [discord]"]),
    ("unknown-tier-key", "[tiers.free]\ndaily_qouta = 3\n", ["[tiers.free]", "'daily_qouta'", "'daily_quota'"]),
    ("unknown-section-suggests", "[telgram]\ntoken = \"x\"\n", ["unknown section [telgram]", "'telegram'"]),
    ("unknown-section-lists", "[database]\nx = 1\n", ["[database]", "[bot]", "[web]"]),
    ("top-level-key", 'data_dir = "x"\n', ["'data_dir'", "[bot]"]),
    ("unknown-tier", "[tiers.gold]\nrank = 3\n", ["[tiers]", "'gold'", "free, pro and max"]),
    ("tier-typo", "[tiers.maxx]\nrank = 3\n", ["'maxx'", "Did you mean 'max'?"]),
    ("section-not-table", "bot = 3\n", ["'bot'", "[bot]"]),
    ("tier-not-table", "[tiers]\nfree = 3\n", ["[tiers.free]"]),
    # Wrong types.
    ("turnaround-text", "[tiers.free]\nmin_turnaround_s = \"forty\"\n",
     ["config.toml: [tiers.free] min_turnaround_s must be a number >= 0, got 'forty'."]),
    ("steps-text", '[engine]\nsteps = "4"\n', ["[engine] steps must be a whole number from 1 to 50, got '4'."]),
    ("steps-float", "[engine]\nsteps = 4.5\n", ["[engine] steps", "whole number", "got 4.5"]),
    ("bool-as-int", "[engine]\nmax_batch = true\n", ["max_batch", "got true"]),
    ("int-as-bool", "[engine]\nturbo = 1\n", ["[engine] turbo must be true or false", "got 1"]),
    ("bool-quoted", '[discord]\nmessage_replies = "yes"\n', ["message_replies must be true or false", "'yes'"]),
    ("model-number", "[engine]\nmodel = 3\n", ["[engine] model", "got 3"]),
    ("token-number", "[telegram]\ntoken = 12345\n", ["[telegram] token", "got 12345"]),
    ("admins-not-list", '[bot]\nadmins = "telegram:1"\n', ["[bot] admins must be a list"]),
    ("admins-bad-platform", '[bot]\nadmins = ["slack:1"]\n', ["[bot] admins", "'slack:1'", "telegram, discord or web"]),
    ("admins-no-id", '[bot]\nadmins = ["telegram"]\n', ["[bot] admins", "'telegram'"]),
    ("admins-username", '[bot]\nadmins = ["telegram:@alice"]\n', ["[bot] admins entry 'telegram:@alice'", "numeric telegram user id"]),
    ("guild-ids-bad", '[discord]\nguild_ids = ["my server"]\n', ["[discord] guild_ids", "'my server'"]),
    ("rank-float", "[tiers.pro]\nrank = 1.5\n", ["[tiers.pro] rank must be a whole number", "1.5"]),
    ("nan", "[queue]\naging_s = nan\n", ["[queue] aging_s must be a number > 0", "got nan"]),
    ("inf", "[tiers.free]\nmin_turnaround_s = inf\n", ["min_turnaround_s must be a number >= 0", "got inf"]),
    ("bad-url", '[telegram]\nbase_url = "127.0.0.1:8081"\n', ["[telegram] base_url", "http://"]),
    ("bad-ws-url", '[discord]\ngateway_url = "http://x/"\n', ["[discord] gateway_url", "ws://"]),
    ("device-unknown", '[engine]\ndevice = "gpu"\n', ["[engine] device", '"cuda:N"', "'gpu'"]),
    ("dtype-unknown", '[engine]\ndtype = "fp16"\n', ["[engine] dtype", '"float16"', "'fp16'"]),
    ("empty-model", '[engine]\nmodel = ""\n', ["[engine] model"]),
    # Out of range.
    ("steps-zero", "[engine]\nsteps = 0\n", ["[engine] steps must be a whole number from 1 to 50, got 0."]),
    ("steps-high", "[engine]\nsteps = 51\n", ["from 1 to 50", "got 51"]),
    ("batch-high", "[engine]\nmax_batch = 65\n", ["[engine] max_batch", "from 1 to 64", "got 65"]),
    ("batch-zero", "[engine]\nmax_batch = 0\n", ["from 1 to 64"]),
    ("guidance-negative", "[engine]\nguidance_scale = -1\n", ["[engine] guidance_scale", "from 0 to 50"]),
    ("strength-high", "[bot]\ndefault_strength = 1.5\n", ["[bot] default_strength must be a number from 0.05 to 1.0"]),
    ("strength-low", "[bot]\ndefault_strength = 0\n", ["from 0.05 to 1.0", "got 0"]),
    ("upload-zero", "[bot]\nmax_upload_mb = 0\n", ["[bot] max_upload_mb must be a number > 0"]),
    ("aging-zero", "[queue]\naging_s = 0\n", ["[queue] aging_s must be a number > 0, got 0."]),
    ("gap-negative", "[queue]\nmember_gap_s = -1\n", ["[queue] member_gap_s must be a number >= 0"]),
    ("eta-window-high", "[queue]\neta_window = 1001\n", ["[queue] eta_window", "from 1 to 1000"]),
    ("grace-negative", "[queue]\nshutdown_grace_s = -5\n", ["shutdown_grace_s", ">= 0"]),
    ("turnaround-negative", "[tiers.free]\nmin_turnaround_s = -1\n", ["[tiers.free] min_turnaround_s must be a number >= 0"]),
    ("max-side-small", "[tiers.free]\nmax_side = 32\n", ["[tiers.free] max_side", "from 64 to 2048", "got 32"]),
    ("max-side-big", "[tiers.max]\nmax_side = 4096\n", ["[tiers.max] max_side", "from 64 to 2048"]),
    ("max-side-not-8", "[tiers.pro]\nmax_side = 500\n", ["[tiers.pro] max_side must be a multiple of 8", "got 500", "496"]),
    ("max-steps-high", "[tiers.max]\nmax_steps = 51\n", ["[tiers.max] max_steps", "from 1 to 50"]),
    ("sweep-not-bool", '[tiers.pro]\nsweep = "yes"\n', ["[tiers.pro] sweep", "true or false"]),
    ("quota-zero", "[tiers.free]\ndaily_quota = 0\n", ["[tiers.free] daily_quota must be a whole number >= 1"]),
    ("queued-zero", "[tiers.pro]\nmax_queued = 0\n", ["[tiers.pro] max_queued", ">= 1"]),
    ("ranks-clash", "[tiers.max]\nrank = 1\n", ["rank 1", "[tiers.pro]", "own rank"]),
    ("port-high", "[web]\nport = 70000\n", ["[web] port", "from 0 to 65535", "got 70000"]),
    ("webhook-port-zero", "[telegram]\nwebhook_port = 0\n", ["[telegram] webhook_port", "from 1 to 65535"]),
    ("download-zero", "[telegram]\nmax_download_mb = 0\n", ["[telegram] max_download_mb", "> 0"]),
    ("web-tier-unknown", '[web]\ntier = "gold"\n', ["[web] tier must be one of free, pro, max", "'gold'"]),
    ("web-tier-typo", '[web]\ntier = "por"\n', ["[web] tier", "Did you mean 'pro'?"]),
    # The web UI may not be opened to the network without a password.
    ("web-any-address", '[web]\nhost = "0.0.0.0"\n', ["[web] access_token", "'0.0.0.0'", "network"]),
    ("web-lan-address", '[web]\nhost = "192.168.1.10"\n', ["[web] access_token"]),
    ("web-ipv6-any", '[web]\nhost = "::"\n', ["[web] access_token"]),
    ("web-hostname", '[web]\nhost = "myhost.lan"\n', ["[web] access_token"]),
    ("web-enabled-with-chat-token", '[telegram]\ntoken = "t"\n[web]\nenabled = true\nhost = "0.0.0.0"\n',
     ["[web] access_token"]),
]


@pytest.mark.parametrize(("text", "fragments"), [(t, f) for _, t, f in REFUSALS], ids=[i for i, _, _ in REFUSALS])
def test_refusals_name_the_key(tmp_path: Path, text: str, fragments: list[str]) -> None:
    message = refusal(tmp_path, text)
    assert message.startswith(str(tmp_path / "config.toml") + ": ")
    for fragment in fragments:
        assert fragment in message


def test_error_starts_with_the_file_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, '[tiers.free]\nmin_turnaround_s = "forty"\n')
    with pytest.raises(ConfigError, match=re.escape(
        "config.toml: [tiers.free] min_turnaround_s must be a number >= 0, got 'forty'."
    )):
        load_config(Path("config.toml"), env=NO_ENV)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "text",
    ['[engine\nsteps = 4\n', "[engine]\nsteps = \n", '[bot]\ndata_dir = "unterminated\n', "[engine]\nsteps = 4\nsteps = 5\n"],
    ids=["unclosed-bracket", "missing-value", "unterminated-string", "duplicate-key"],
)
def test_toml_syntax_error_gives_the_line(tmp_path: Path, text: str) -> None:
    message = refusal(tmp_path, text)
    assert "not valid TOML" in message
    assert re.search(r"line \d+", message), message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", env=NO_ENV)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[engine]\nmodel = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path, env=NO_ENV)


# --- The web page and its password ------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_web_loopback_needs_no_token(tmp_path: Path, host: str) -> None:
    assert load_text(tmp_path, f'[web]\nhost = "{host}"\n').web.host == host


def test_web_non_loopback_with_token_accepted(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[web]\nhost = "0.0.0.0"\naccess_token = "s3cret"\n')
    assert config.web.access_token == "s3cret"


def test_web_non_loopback_with_env_token_accepted(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[web]\nhost = "0.0.0.0"\n', {"RESTYLE_WEB_TOKEN": "s3cret"})
    assert config.web.access_token == "s3cret"


def test_web_non_loopback_refused_without_token(tmp_path: Path) -> None:
    message = refusal(tmp_path, '[web]\nhost = "0.0.0.0"\n')
    assert "[web] access_token" in message and "RESTYLE_WEB_TOKEN" in message


def test_web_host_ignored_when_the_page_is_off(tmp_path: Path) -> None:
    # A chat token turns the page off (enabled unset), so nothing listens on that host.
    config = load_text(tmp_path, '[web]\nhost = "0.0.0.0"\n', {"RESTYLE_TELEGRAM_TOKEN": "t"})
    assert not config.web_enabled
    assert not load_text(tmp_path, '[web]\nenabled = false\nhost = "0.0.0.0"\n').web_enabled


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().engine.steps = 8  # type: ignore[misc]


def test_settings_made_in_code_are_checked_too() -> None:
    """The tables are pydantic models: a copy made with dataclasses.replace, or a table built in
    code, is refused just as the file would be (strict types, ranges, no unknown keys)."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        dataclasses.replace(Config().engine, steps=0)
    with pytest.raises(ValidationError):
        EngineSettings(max_batch="4")  # type: ignore[arg-type]
    with pytest.raises((ValidationError, TypeError)):
        QueueSettings(agin_s=3)  # type: ignore[call-arg]
    assert dataclasses.replace(Config().engine, steps=8).steps == 8


# --- Styles (recipes) --------------------------------------------------------------------------


def test_the_four_recipes_come_with_every_bot_and_the_owner_adds_or_replaces_them(tmp_path: Path) -> None:
    from bot.config import DEFAULT_STYLES

    assert set(DEFAULT_STYLES) == {"watercolour", "neon", "fantasy", "autumn"}
    assert DEFAULT_STYLES["watercolour"].strength < 0.4 and DEFAULT_STYLES["autumn"].strength < 0.4
    assert 0.4 <= DEFAULT_STYLES["neon"].strength <= 0.6 and DEFAULT_STYLES["fantasy"].strength >= 0.7
    config = load_text(tmp_path, '[styles.ink]\nprompt = "ink drawing, bold lines"\nstrength = 0.6\n'
                                 '[styles.neon]\nprompt = "cyberpunk city at night"\nstrength = 0.55\n')  # fmt: skip
    assert list(config.styles)[-1] == "ink" and config.styles["ink"].prompt == "ink drawing, bold lines"
    assert config.styles["neon"].strength == 0.55 and config.styles["watercolour"] == DEFAULT_STYLES["watercolour"]


@pytest.mark.parametrize(
    "text, fragments",
    [
        ('[styles.Ink]\nprompt = "x"\nstrength = 0.5\n', ["[styles.Ink]", "1 to 32 of a-z"]),
        ('[styles.ink]\nprompt = "x"\n', ["[styles.ink]", "strength"]),
        ('[styles.ink]\nprompt = "x"\nstrength = 1.5\n', ["[styles.ink]", "strength"]),
        ('[styles.ink]\nprompt = "x"\nstrength = 0.5\ncolour = "red"\n', ["unknown key 'colour'"]),
        (f'[styles.ink]\nprompt = "{"x" * 501}"\nstrength = 0.5\n', ["501 characters", "500"]),
        ('[styles]\nink = "bold lines"\n', ["[styles]", "[styles.ink]"]),
    ],
)
def test_a_bad_recipe_is_refused_naming_its_section(tmp_path: Path, text: str, fragments: list[str]) -> None:
    message = refusal(tmp_path, text)
    for fragment in fragments:
        assert fragment in message, message
