"""Loading and validating config.toml.

Every setting has a default, so no file at all is a working setup (the web page on 127.0.0.1).
Mistakes are refused at start-up with a `ConfigError` naming the file, the section and the key,
rather than surfacing later as a confusing failure deep inside an adapter. config.example.toml
documents every key; tests keep the two in step.

Each table is one pydantic dataclass (strict types, `extra="forbid"`, ranges as field
constraints); `_Loader` turns pydantic's first error into one sentence naming the key. To add a
key: a field with its default on the table's class (`Annotated[float, Number(...)]`,
`Annotated[int, Whole(...)]`, `Flag`, or a validator in `Annotated`), documented in config.example.toml.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any
from urllib.parse import urlsplit

from annotated_types import GroupedMetadata
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as settings
from pydantic.fields import FieldInfo

from bot.commands import MAX_PROMPT_CHARS
from bot.i18n import N_

# Environment variables that supply secrets, so they can stay out of the file (and out of git).
ENV_TOKENS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "RESTYLE_TELEGRAM_TOKEN": ("telegram", "token"),
        "RESTYLE_DISCORD_TOKEN": ("discord", "token"),
        "RESTYLE_WEB_TOKEN": ("web", "access_token"),
        "RESTYLE_STORE_URL": ("store", "url"),  # a PostgreSQL URL may carry a password
    }
)

ADMIN_PLATFORMS = ("telegram", "discord", "web")


class ConfigError(ValueError):
    """The configuration cannot be used; str(error) names the file, section and key to fix."""


# --- Value rules --------------------------------------------------------------------------------


class _Invalid(ValueError):
    """A value was refused; args[0] says what it must be ("must be a list of ...").

    A ValueError, so pydantic reports it as the field's error. `whole`: the reason already quotes
    the offending part (one entry of a list), so the usual ", got <value>" is left off.
    """

    def __init__(self, reason: str, *, whole: bool = False) -> None:
        super().__init__(reason)
        self.whole = whole


Check = Callable[[Any], Any]


@dataclass(frozen=True)
class Rule:
    """What a value must be, for the error message ("a number >= 0"); rides in Annotated."""

    text: str


def _fmt(n: float) -> str:
    return str(int(n)) if isinstance(n, int) else str(n)


@dataclass(frozen=True)
class Limits(GroupedMetadata):
    """A number's limits and the Rule that words them, as one piece of `Annotated` metadata:
    pydantic unpacks it (annotated_types.GroupedMetadata) as if both had been written there."""

    limits: FieldInfo
    rule: Rule

    def __iter__(self) -> Iterator[object]:
        yield from self.limits.metadata
        yield self.rule


def Number(lo: float | None = None, hi: float | None = None, *, above: float | None = None) -> Limits:
    """A float field's limits, `Annotated[float, Number(0)]` (ints accepted, bools, nan and inf
    not: TOML allows both)."""
    if above is not None:
        rule = f"a number > {_fmt(above)}"
    elif lo is not None and hi is None:
        rule = f"a number >= {_fmt(lo)}"
    elif lo is not None and hi is not None:
        rule = f"a number from {_fmt(lo)} to {_fmt(hi)}"
    else:
        rule = "a number"
    return Limits(Field(ge=lo, le=hi, gt=above, allow_inf_nan=False), Rule(rule))


def Whole(lo: int | None = None, hi: int | None = None) -> Limits:
    """A whole number field's limits, `Annotated[int, Whole(1)]`."""
    if lo is None:
        rule = "a whole number"
    elif hi is None:
        rule = f"a whole number >= {lo}"
    else:
        rule = f"a whole number from {lo} to {hi}"
    return Limits(Field(ge=lo, le=hi), Rule(rule))


Flag = Annotated[bool, Rule("true or false (without quotes)")]


def Checked(check: Check) -> Any:
    """A value one of the checks below validates (and converts) itself."""
    return BeforeValidator(check)


def _shown(value: Any) -> str:
    # Echo values the way they look in TOML, so the reader can find them in the file.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 60 else f"'{value[:59]}…'"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value[:5]) + (", …]" if len(value) > 5 else "]")
    return str(value)


def _text(*, choices: tuple[str, ...] = (), pattern: str | None = None, hint: str = "") -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise _Invalid("must be a non-empty text in quotes" + (f" ({hint})" if hint else ""))
        if choices and value not in choices:
            raise _Invalid("must be one of " + ", ".join(f'"{c}"' for c in choices))
        if pattern and not re.fullmatch(pattern, value):
            raise _Invalid(f"must be {hint}")
        return value

    return check


def _shards(value: Any) -> str | int:
    # Discord allows at most 2,500 servers per shard; "auto" asks Discord (GET /gateway/bot).
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
        raise _Invalid('must be "auto" or a whole number of shards from 1 to 1024')
    return value


def _optional_text(*, schemes: tuple[str, ...] = ()) -> Check:
    def check(value: Any) -> str | None:
        if value is None:  # already "not set" (a copy made with dataclasses.replace)
            return None
        if not isinstance(value, str):
            raise _Invalid("must be a text in quotes (or leave the line out)")
        # token = "" is how templates often say "not set"; treat it like a missing line.
        if not value.strip():
            return None
        if schemes and not value.startswith(tuple(s + "://" for s in schemes)):
            raise _Invalid("must be a URL starting with " + " or ".join(s + "://" for s in schemes))
        return value.strip()

    return check


def _sizes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise _Invalid('must be a list of picture sizes like ["512x512", "512x384"]')
    for entry in value:
        width, sep, height = entry.strip().lower().partition("x")
        if not (sep and width.isdigit() and height.isdigit() and int(width) % 8 == 0 and int(height) % 8 == 0
                and min(int(width), int(height)) >= 64):  # fmt: skip
            raise _Invalid(f'entry {_shown(entry)} must be WIDTHxHEIGHT, multiples of 8, like "512x384".', whole=True)
    if len(value) > 4:  # each size is two compiles at start, and torch recompiles 8 shapes at most
        raise _Invalid("may list at most 4 sizes")
    return tuple(entry.strip().lower() for entry in value)


def _admins(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _Invalid('must be a list like ["telegram:12345", "discord:67890", "web:local"]')
    out = []
    for entry in value:
        platform, _, member = entry.strip().partition(":")
        if platform not in ADMIN_PLATFORMS or not member.strip():
            raise _Invalid(
                f'entry {_shown(entry)} must be "platform:id" with platform telegram, discord or web,'
                ' like "telegram:12345".',
                whole=True,
            )
        if platform in ("telegram", "discord") and not member.isdigit():
            # Adapters compare numeric ids; a @username would silently never match.
            raise _Invalid(
                f'entry {_shown(entry)} must use the numeric {platform} user id, like "{platform}:12345";'
                " a name would never match.",
                whole=True,
            )
        out.append(f"{platform}:{member.strip()}")
    return tuple(out)


def _ids(what: str, example: str, *, negative: bool = False) -> Check:
    def check(value: Any) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)):
            raise _Invalid(f"must be a list of {what} ids, like [{example}]")
        out = []
        for v in value:
            # Accept quoted ids too: people copy them from the apps as text.
            if isinstance(v, str) and v.strip().lstrip("-").isdigit():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int) or (v <= 0 and not negative) or v == 0:
                raise _Invalid(f"entry {_shown(v)} must be a {what} id (a number), like [{example}].", whole=True)
            out.append(v)
        return tuple(out)

    return check


_guild_ids = _ids("Discord server", "123456789012345678")


def _words(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _Invalid('must be a list of words or phrases, like ["gore", "real person"]')
    return tuple(v.strip() for v in value)


def _secrets_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _Invalid('must be a list of former secrets, like ["old secret"]')
    return tuple(v.strip() for v in value)


def _patterns(value: Any) -> tuple[str, ...]:
    words = _words(value)
    for pattern in words:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _Invalid(f"entry {_shown(pattern)} is not a valid regular expression ({exc}).", whole=True) from None
    return words


def _store_url(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("must be a text in quotes")
    url = value.strip()
    if url and not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise _Invalid(
            'must be "" (SQLite in [bot] data_dir), "sqlite:///path/to/file" or "postgresql://user:password@host/db"'
        )
    return url


def _path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("must be a folder path in quotes")
    return Path(value)


def _sku(value: Any) -> int | None:
    if value is None:  # not on sale on Discord (a copy made with dataclasses.replace)
        return None
    # Accept a quoted id too: the developer portal shows it as text to copy.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _Invalid("must be a Discord SKU id (a number from the developer portal's Monetization page)")
    return value


# --- The tables -------------------------------------------------------------------------------

# strict: TOML's types are what they are; "4" is not a number and 1 is not true.
_TABLE = ConfigDict(extra="forbid", strict=True)


@settings(frozen=True, config=_TABLE)
class TierSettings:
    name: str  # "free" | "pro" | "max"
    rank: Annotated[int, Whole()]  # higher runs first: 0 free, 1 pro, 2 max by default
    min_turnaround_s: Annotated[float, Number(0)]  # a result is delivered no sooner than this after the request
    max_queued: Annotated[int, Whole(1)]  # waiting + running jobs per member
    daily_quota: Annotated[int, Whole(1)]  # jobs per UTC day
    max_side: Annotated[
        int, Whole(64, 2048)
    ]  # longest side of the prepared picture; the multiple-of-8 rule is checked (and explained) apart
    max_steps: Annotated[int, Whole(1, 50)]  # cap on steps=
    # strength=sweep and the "Try 3 strengths" button: 3 jobs (and 3 of the quota) per request
    sweep: Flag = False


DEFAULT_TIERS: Mapping[str, TierSettings] = MappingProxyType(
    {
        "free": TierSettings(
            "free", rank=0, min_turnaround_s=40.0, max_queued=2, daily_quota=20, max_side=512, max_steps=8
        ),
        "pro": TierSettings(
            "pro", rank=1, min_turnaround_s=0.0, max_queued=5, daily_quota=200, max_side=768, max_steps=20, sweep=True
        ),
        "max": TierSettings(
            "max",
            rank=2,
            min_turnaround_s=0.0,
            max_queued=10,
            daily_quota=1000,
            max_side=1024,
            max_steps=50,
            sweep=True,
        ),
    }
)

_ADDRESS = "an address to listen on, like 127.0.0.1"
_OptionalText = Annotated[str | None, Checked(_optional_text())]
_OptionalHttp = Annotated[str | None, Checked(_optional_text(schemes=("http", "https")))]


@settings(frozen=True, config=_TABLE)
class BotSettings:
    data_dir: Annotated[Path, Checked(_path)] = Path(
        "data"
    )  # load_config makes it absolute (relative to the config file)
    admins: Annotated[tuple[str, ...], Checked(_admins)] = ()  # "telegram:12345", "discord:67890", "web:local"
    default_strength: Annotated[float, Number(0.05, 1.0)] = 0.5
    max_upload_mb: Annotated[float, Number(above=0)] = 20.0


@settings(frozen=True, config=_TABLE)
class EngineSettings:
    model: Annotated[str, Checked(_text(hint="a hub id like stabilityai/sd-turbo or a local folder"))] = (
        "stabilityai/sd-turbo"
    )
    device: Annotated[str, Checked(_text(pattern=r"auto|cpu|cuda|cuda:[0-9]+|mps",
                                         hint='"auto", "cpu", "cuda", "cuda:N" or "mps"'))] = "auto"  # fmt: skip
    dtype: Annotated[str, Checked(_text(choices=("auto", "float16", "bfloat16", "float32")))] = "auto"
    steps: Annotated[int, Whole(1, 50)] = 4
    guidance_scale: Annotated[float, Number(0, 50)] | None = None  # None: 0 for turbo models, 7.5 otherwise
    max_batch: Annotated[int, Whole(1, 64)] = 4
    turbo: Flag | None = None  # None: guess from the model name
    local_files_only: Flag = False  # true: never try the hub
    # full: the model's own VAE | tiny: tiny_vae (AutoencoderTiny), faster, coarser
    vae: Annotated[str, Checked(_text(choices=("full", "tiny")))] = "full"
    # hub id or folder of the AutoencoderTiny used when vae = "tiny"
    tiny_vae: Annotated[str, Checked(_text(hint="a hub id like madebyollin/taesd or a local folder"))] = (
        "madebyollin/taesd"
    )
    cudnn_benchmark: Flag = False  # CUDA: let cuDNN time its convolution kernels per shape
    compile: Flag = False  # torch.compile the UNet and VAE (channels_last) for compile_sizes, at start
    cuda_graphs: Flag = False  # CUDA: compile's kernels captured and replayed as CUDA graphs
    # picture sizes ("WIDTHxHEIGHT") compiled at start, at batch 1 and max_batch; others run eagerly
    compile_sizes: Annotated[tuple[str, ...], Checked(_sizes)] = ("512x512",)


@settings(frozen=True, config=_TABLE)
class QueueSettings:
    aging_s: Annotated[float, Number(above=0)] = 30.0  # a waiting job climbs one tier per aging_s
    member_gap_s: Annotated[float, Number(0)] = (
        30.0  # a member's next waiting job ranks this far behind their previous one
    )
    eta_window: Annotated[int, Whole(1, 1000)] = 20  # recent jobs in the rolling mean used for ETAs
    shutdown_grace_s: Annotated[float, Number(0)] = 60.0  # on SIGTERM, how long the running batch may finish


@settings(frozen=True, config=_TABLE)
class StoreSettings:
    url: Annotated[str, Checked(_store_url)] = (
        ""  # "": SQLite in [bot] data_dir; sqlite:///path; postgresql://user:pw@host/db
    )
    lease_s: Annotated[float, Number(3)] = 30.0  # a worker holds its jobs this long between renewals
    poll_s: Annotated[float, Number(above=0)] = (
        2.0  # how often processes look for work and results a lost notification hid
    )
    listener_lease_s: Annotated[float, Number(3)] = (
        10.0  # a front end holds a Telegram token's / Discord shard's updates this long between renewals
    )

    @property
    def shared(self) -> bool:
        """PostgreSQL: other processes (front ends, workers) may use the same database."""
        return self.url.startswith(("postgresql://", "postgres://"))


@settings(frozen=True, config=_TABLE)
class TelegramSettings:
    token: _OptionalText = None
    base_url: _OptionalHttp = None  # e.g. "http://127.0.0.1:8081/bot" for a self-hosted Bot API server
    base_file_url: _OptionalHttp = None
    webhook_url: _OptionalHttp = None  # None: long polling
    webhook_listen: Annotated[str, Checked(_text(hint=_ADDRESS))] = "127.0.0.1"
    webhook_port: Annotated[int, Whole(1, 65535)] = 8443
    max_download_mb: Annotated[float, Number(above=0)] = (
        20.0  # 20 on the cloud Bot API; raise with a self-hosted server
    )


@settings(frozen=True, config=_TABLE)
class DiscordSettings:
    token: _OptionalText = None
    api_base: _OptionalHttp = None  # e.g. "http://127.0.0.1:9000/api/v10"
    gateway_url: Annotated[str | None, Checked(_optional_text(schemes=("ws", "wss")))] = (
        None  # e.g. "ws://127.0.0.1:9000/"
    )
    proxy: _OptionalHttp = (
        None  # an HTTP(S) proxy for everything sent to Discord: REST, the gateway (resumes too), downloads
    )
    guild_ids: Annotated[
        tuple[int, ...], Checked(_guild_ids)
    ] = ()  # sync commands to these guilds (instant); empty: global
    message_replies: Flag = False  # "@bot prompt" replies (mentions are readable without privileged intents)
    reply_pictures: Flag = True  # with message_replies: read pictures in replied-to messages (message-content intent)
    shards: Annotated[Any, Checked(_shards)] = "auto"  # gateway shards: "auto" (Discord's advice) or a number


@settings(frozen=True, config=_TABLE)
class WebSettings:
    enabled: Flag | None = None  # None: on when no chat token is configured
    host: Annotated[str, Checked(_text(hint=_ADDRESS))] = "127.0.0.1"
    port: Annotated[int, Whole(0, 65535)] = 8080
    access_token: _OptionalText = None  # required when host is not loopback
    tier: Annotated[str, Checked(_text())] = "free"  # the tier of the page's member; checked against the tiers
    body_timeout_s: Annotated[float, Number(above=0, hi=3600)] = (
        120.0  # a request body (an upload) must arrive whole within this
    )
    public_url: _OptionalHttp = None  # where members' browsers reach this page; set: results get a Compare link
    compare_link_days: Annotated[float, Number(above=0, hi=365)] = 7.0  # how long a Compare link opens


@settings(frozen=True, config=_TABLE)
class AccessSettings:
    # Telegram group ids are negative (-100...), so negatives are allowed there.
    telegram_chats: Annotated[tuple[int, ...], Checked(_ids("Telegram chat", "-1001234567890", negative=True))] = ()
    discord_guilds: Annotated[tuple[int, ...], Checked(_guild_ids)] = ()  # server ids; empty: every server
    discord_channels: Annotated[tuple[int, ...], Checked(_ids("Discord channel", "123456789012345678"))] = ()
    direct_messages: Flag = True  # whether the bot works in private chats / DMs


@settings(frozen=True, config=_TABLE)
class ModerationSettings:
    blocked_words: Annotated[
        tuple[str, ...], Checked(_words)
    ] = ()  # whole words or phrases, case- and accent-insensitive
    blocked_patterns: Annotated[
        tuple[str, ...], Checked(_patterns)
    ] = ()  # regular expressions, matched on the folded prompt
    retention_days: Annotated[float, Number(above=0)] = (
        30.0  # jobs and their pictures are purged this long after they end
    )
    safety_checker: _OptionalText = None  # hub id or folder of diffusers' safety checker; None: off
    exempt_age_restricted: Flag = False  # Discord age-restricted channels skip the safety check


@settings(frozen=True, config=_TABLE)
class PlanSettings:
    """One thing members can buy: a tier for a period ([plans.<name>])."""

    name: str  # the table name: 1 to 32 of a-z, 0-9, _ and -
    tier: Annotated[str, Checked(_text())]  # "pro" | "max" (a defined tier other than free)
    days: Annotated[int, Whole(1, 3650)]  # length of the period
    stars: Annotated[int, Whole(1, 10000)] | None = None  # price in Telegram Stars; None: not on sale on Telegram
    subscription: Flag = False  # a monthly Stars subscription (needs days = 30)
    discord_sku: Annotated[int | None, Checked(_sku)] = None  # Discord SKU id; None: not on sale on Discord


@settings(frozen=True, config=_TABLE)
class StyleSettings:
    """A named recipe ([styles.<name>]): a prompt and the strength it works best at, used with
    /restyle style=<name> (a prompt given with it is added to the recipe's)."""

    name: str  # the table name: 1 to 32 of a-z, 0-9, _ and -
    prompt: Annotated[str, Checked(_text(hint="the recipe's prompt"))]
    strength: Annotated[float, Number(0.05, 1.0)]
    about: _OptionalText = None  # a few words /styles shows; None: the prompt


# The recipes every bot has (the owner's [styles.<name>] add to them, or replace one by its name).
DEFAULT_STYLES: Mapping[str, StyleSettings] = MappingProxyType({
    "watercolour": StyleSettings("watercolour", "soft watercolour portrait, gentle washes of colour, paper texture", 0.3,
                                 "a soft watercolour portrait; keeps the face and the layout"),
    "neon": StyleSettings("neon", "rainy night with neon signs, wet streets, reflections", 0.5,
                          "a rainy neon night; a clear new look, the shapes kept"),
    "fantasy": StyleSettings("fantasy", "full-colour fantasy painting, vivid colours, dramatic light, detailed", 0.8,
                             "a pencil sketch (or anything) to full-colour fantasy art; reworks a lot"),
    "autumn": StyleSettings("autumn", "warm autumn palette, golden light, orange and red leaves", 0.25,
                            "warm autumn colours; everything else stays"),
})  # fmt: skip


@settings(frozen=True, config=_TABLE)
class PaymentSettings:
    # The defaults are in the catalogue (said in the member's language); an admin's own text is shown as written.
    terms: Annotated[str, Checked(_text(hint="the text /terms shows"))] = N_(
        "Upgrades give a higher tier for the period bought. Payments are final, except where the admin refunds "
        "them; a refund ends the tier it paid for. The service may change or stop; unused paid time is refunded then."
    )
    support: Annotated[str, Checked(_text(hint="the text /paysupport shows"))] = N_(
        "For help with a payment, write to the bot's admin and give the date and the charge id."
    )
    secret: _OptionalText = None  # signs invoice payloads; None: a random one kept in data_dir
    # former secrets (or bot tokens) whose payloads still count
    previous_secrets: Annotated[tuple[str, ...], Checked(_secrets_list)] = ()


@dataclass(frozen=True)
class Config:
    # Every part defaults, so Config() is the all-defaults configuration (handy in tests).
    bot: BotSettings = field(default_factory=BotSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    tiers: dict[str, TierSettings] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    queue: QueueSettings = field(default_factory=QueueSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    web: WebSettings = field(default_factory=WebSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    moderation: ModerationSettings = field(default_factory=ModerationSettings)
    plans: dict[str, PlanSettings] = field(default_factory=dict)  # by name, in file order
    styles: dict[str, StyleSettings] = field(default_factory=lambda: dict(DEFAULT_STYLES))  # recipes by name
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    path: Path | None = None  # the file it was loaded from

    def tier(self, name: str) -> TierSettings:
        """The named tier; an unknown name (say, one removed from the config) gets "free"."""
        return self.tiers.get(name) or self.tiers["free"]

    @property
    def web_enabled(self) -> bool:
        # Without a chat token the web page is the only way in, so it turns itself on.
        if self.web.enabled is not None:
            return self.web.enabled
        return not (self.telegram.token or self.discord.token)


def is_admin(config: Config, platform: str, user_id: str | int) -> bool:
    """Whether this member is listed in [bot] admins (as "platform:id")."""
    return f"{platform.strip().lower()}:{str(user_id).strip()}" in config.bot.admins


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read and check `path` (None: all defaults); tokens in `env` (default os.environ) win."""
    env = os.environ if env is None else env
    where = str(path) if path is not None else "config"
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_toml(path)
    loader = _Loader(where)
    config = loader.build(raw, env)
    base = path.resolve().parent if path is not None else Path.cwd()
    data_dir = config.bot.data_dir.expanduser()
    if not data_dir.is_absolute():
        # Relative to the file, not to wherever the bot happens to be started from, so a service
        # manager and a shell find the same database.
        data_dir = base / data_dir
    return replace(config, bot=replace(config.bot, data_dir=data_dir), path=path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found. Copy config.example.toml to start one, or leave --config out for the defaults."
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already says "(at line N, column M)".
        raise ConfigError(f"{path}: not valid TOML: {exc}.") from None


# --- Loading -----------------------------------------------------------------------------------

_SECTIONS: dict[str, type] = {
    "bot": BotSettings,
    "engine": EngineSettings,
    "queue": QueueSettings,
    "store": StoreSettings,
    "telegram": TelegramSettings,
    "discord": DiscordSettings,
    "web": WebSettings,
    "access": AccessSettings,
    "moderation": ModerationSettings,
    "payments": PaymentSettings,
}
PLAN_NAME = re.compile(r"[a-z0-9_-]{1,32}")
SUBSCRIPTION_DAYS = 30  # Telegram Stars subscriptions renew every 30 days, no other period

ALL_SECTIONS = (
    "bot",
    "engine",
    "tiers",
    "queue",
    "store",
    "telegram",
    "discord",
    "web",
    "access",
    "moderation",
    "plans",
    "styles",
    "payments",
)


def _keys(cls: type) -> tuple[str, ...]:
    """The keys a table takes (a tier's and a plan's name is its table's name, not a key)."""
    return tuple(f.name for f in fields(cls) if f.name != "name")


def _rule(cls: type, key: str) -> str:
    """The Rule a field's type carries, looked for through Optional and Annotated."""
    hints = typing.get_type_hints(cls, include_extras=True)
    stack = [hints[key]]
    while stack:
        hint = stack.pop()
        for extra in getattr(hint, "__metadata__", ()):
            if isinstance(extra, Rule):
                return extra.text
            if isinstance(extra, Limits):
                return extra.rule.text
        stack.extend(typing.get_args(hint))
    return "something else"


def _suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


class _Loader:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, section: str, message: str) -> ConfigError:
        label = f"[{section}] " if section else ""
        return ConfigError(f"{self.where}: {label}{message}")

    def build(self, raw: dict[str, Any], env: Mapping[str, str]) -> Config:
        for name, value in raw.items():
            if name not in ALL_SECTIONS:
                home = [s for s, cls in _SECTIONS.items() if name in _keys(cls)]
                if home and not isinstance(value, dict):
                    raise self.fail("", f"'{name}' must go inside a section: put it under [{home[0]}].")
                raise self.fail(
                    "",
                    f"unknown section [{name}].{_suggest(name, ALL_SECTIONS)} Sections are: "
                    + ", ".join(f"[{s}]" for s in ALL_SECTIONS)
                    + ".",
                )
            if not isinstance(value, dict):
                raise self.fail("", f"'{name}' must be a section written [{name}], got {_shown(value)}.")

        parts: dict[str, Any] = {}
        for section, cls in _SECTIONS.items():
            parts[section] = self.table(section, cls, raw.get(section, {}))
        for var, (section, key) in ENV_TOKENS.items():
            token = env.get(var, "").strip()
            if token:  # an empty variable is "not set", not "no token"
                parts[section] = replace(parts[section], **{key: token})
        tiers = self.tiers(raw.get("tiers", {}))
        plans = self.plans(raw.get("plans", {}), tiers)
        styles = self.styles(raw.get("styles", {}))
        config = Config(tiers=tiers, plans=plans, styles=styles, **parts)
        self.cross_checks(config)
        return config

    def table(self, section: str, cls: type, values: dict[str, Any], **fixed: Any) -> Any:
        """`cls(**fixed, **values)`, or ConfigError for the first key (in file order) it refuses."""
        keys = _keys(cls)
        known = {k: v for k, v in values.items() if k in keys}
        errors: dict[str, Any] = {}
        try:
            built = cls(**fixed, **known)
        except ValidationError as exc:
            for error in exc.errors():
                errors.setdefault(str(error["loc"][0]), error)  # the first error of each key
        else:
            if len(known) == len(values):
                return built
        for key in values:  # in file order, as a reader goes through it
            if key not in keys:
                # A near-miss spelling in this section is the likelier mistake; else maybe the
                # right key in the wrong section.
                elsewhere = [f"[{s}]" for s, c in _SECTIONS.items() if key in _keys(c) and s != section]
                hint = _suggest(key, keys) or (f" It belongs in {' or '.join(elsewhere)}." if elsewhere else "")
                raise self.fail(section, f"unknown key '{key}'.{hint} Valid keys: {', '.join(keys)}.")
            if key in errors:
                raise self.refusal(section, cls, values, errors[key])
        raise self.refusal(section, cls, values, next(iter(errors.values())))  # a required key left out

    def refusal(self, section: str, cls: type, values: dict[str, Any], error: Any) -> ConfigError:
        key = str(error["loc"][0])
        if error["type"] == "missing":
            return self.fail(section, f"{key} is required (a plan sells a tier for a number of days).")
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _Invalid):
            reason, whole = cause.args[0], cause.whole
        else:
            reason, whole = f"must be {_rule(cls, key)}", False
        got = "" if whole else f", got {_shown(values[key])}."
        return self.fail(section, f"{key} {reason}{got}")

    def tiers(self, table: dict[str, Any]) -> dict[str, TierSettings]:
        tiers = dict(DEFAULT_TIERS)
        for name, overrides in table.items():
            if name not in DEFAULT_TIERS:
                raise self.fail(
                    "tiers",
                    f"unknown tier '{name}'.{_suggest(name, tuple(DEFAULT_TIERS))} The tiers are free, pro and max.",
                )
            if not isinstance(overrides, dict):
                raise self.fail("tiers", f"'{name}' must be a section written [tiers.{name}], got {_shown(overrides)}.")
            # Only the keys given change; the rest keep that tier's defaults.
            defaults = {f.name: getattr(tiers[name], f.name) for f in fields(TierSettings)}
            tier = self.table(f"tiers.{name}", TierSettings, overrides, **{k: v for k, v in defaults.items()
                                                                          if k not in overrides})  # fmt: skip
            if tier.max_side % 8:
                raise self.fail(
                    f"tiers.{name}",
                    f"max_side must be a multiple of 8 (the model works on 8-pixel blocks), got {tier.max_side};"
                    f" try {tier.max_side // 8 * 8}.",
                )
            tiers[name] = tier
        ranks: dict[int, str] = {}
        for tier in tiers.values():
            if tier.rank in ranks:
                raise self.fail(
                    f"tiers.{tier.name}",
                    f"rank {tier.rank} is also the rank of [tiers.{ranks[tier.rank]}]; each tier needs its own rank"
                    " (higher runs first).",
                )
            ranks[tier.rank] = tier.name
        return tiers

    def plans(self, table: dict[str, Any], tiers: dict[str, TierSettings]) -> dict[str, PlanSettings]:
        plans: dict[str, PlanSettings] = {}
        skus: dict[int, str] = {}
        paid = [t.name for t in sorted(tiers.values(), key=lambda t: t.rank) if t.name != "free"]
        for name, values in table.items():
            where = f"plans.{name}"
            if not isinstance(values, dict):
                raise self.fail("plans", f"'{name}' must be a section written [plans.{name}], got {_shown(values)}.")
            if not PLAN_NAME.fullmatch(name):
                raise self.fail(where, "the plan name must be 1 to 32 of a-z, 0-9, _ and - (it goes into invoices).")
            plan = self.table(where, PlanSettings, values, name=name)
            if plan.tier not in paid:
                raise self.fail(where, f"tier must be one of {', '.join(paid)}, got {_shown(plan.tier)}.")
            if plan.subscription and plan.stars is None:
                raise self.fail(where, "subscription = true needs stars (a Telegram Stars subscription has a price).")
            if plan.subscription and plan.days != SUBSCRIPTION_DAYS:
                raise self.fail(
                    where,
                    f"a subscription renews every {SUBSCRIPTION_DAYS} days (Telegram's only period): set days ="
                    f" {SUBSCRIPTION_DAYS}, got {plan.days}.",
                )
            if plan.stars is None and plan.discord_sku is None:
                raise self.fail(
                    where, "set stars (Telegram) or discord_sku (Discord), or both: otherwise nobody can buy it."
                )
            if plan.discord_sku is not None:
                if plan.discord_sku in skus:
                    raise self.fail(
                        where, f"discord_sku {plan.discord_sku} is also used by [plans.{skus[plan.discord_sku]}]."
                    )
                skus[plan.discord_sku] = name
            plans[name] = plan
        return plans

    def styles(self, table: dict[str, Any]) -> dict[str, StyleSettings]:
        styles = dict(DEFAULT_STYLES)
        for name, values in table.items():
            where = f"styles.{name}"
            if not isinstance(values, dict):
                raise self.fail("styles", f"'{name}' must be a section written [styles.{name}], got {_shown(values)}.")
            if not PLAN_NAME.fullmatch(name):
                raise self.fail(
                    where, "the style name must be 1 to 32 of a-z, 0-9, _ and - (members type it: style=name)."
                )
            style = self.table(where, StyleSettings, values, name=name)
            if len(style.prompt) > MAX_PROMPT_CHARS:
                raise self.fail(
                    where, f"the prompt is {len(style.prompt)} characters long; the limit is {MAX_PROMPT_CHARS}."
                )
            styles[name] = style
        return styles

    def cross_checks(self, config: Config) -> None:
        if config.web.tier not in config.tiers:
            raise self.fail(
                "web",
                f"tier must be one of {', '.join(config.tiers)}, got {_shown(config.web.tier)}."
                + _suggest(config.web.tier, tuple(config.tiers)),
            )
        if config.web_enabled and not config.web.access_token and not is_loopback(config.web.host):
            raise self.fail(
                "web",
                f"access_token is required when host is {_shown(config.web.host)}: without it the web UI would be"
                ' open to anyone on the network. Set access_token (or RESTYLE_WEB_TOKEN), or use host = "127.0.0.1".',
            )
        if config.web.public_url:
            parts = urlsplit(config.web.public_url)
            if is_loopback(parts.hostname or "") or parts.query or parts.fragment:
                raise self.fail(
                    "web",
                    f"public_url must be the address members' browsers open (like https://restyle.example.org),"
                    f" got {_shown(config.web.public_url)}: Telegram and Discord members cannot open a loopback"
                    " address, and the link adds its own query.",
                )
            if config.web.enabled is False:
                raise self.fail(
                    "web", "public_url needs the web listener, but enabled = false turns it off: remove one of them."
                )


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere
