"""The settings tables of config.toml, one frozen pydantic dataclass each, and `Config` holding them.

Every setting has its default here (the tiers theirs in DEFAULT_TIERS; only the owner's own
[plans.<name>] and [styles.<name>] tables must give keys), so `Config()` is the all-defaults
configuration: no file at all is a working setup (the web page on 127.0.0.1). To add a key: a field
with its default on its table's class (`Annotated[float, Number(...)]`, `Annotated[int, Whole(...)]`,
`Flag`, or a check from bot/config/checks.py in `Annotated`), documented in config.example.toml
(tests keep the two in step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as settings

from bot.config.checks import (
    Checked,
    Flag,
    Number,
    Whole,
    _admins,
    _guild_ids,
    _ids,
    _optional_text,
    _path,
    _patterns,
    _secrets_list,
    _shards,
    _sizes,
    _sku,
    _store_url,
    _text,
    _words,
)
from bot.i18n import N_

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
