"""Reading config.toml into a `Config`: the file, the environment's tokens, and the refusals.

Mistakes are refused at start-up with a `ConfigError` naming the file, the section and the key,
rather than surfacing later as a confusing failure deep inside an adapter. `_Loader` turns
pydantic's first error into one sentence naming the key, then checks what no single table can
(tier ranks, plans against tiers, the web page's exposure).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from bot.commands import MAX_PROMPT_CHARS
from bot.config.checks import Limits, Rule, _Invalid, _shown
from bot.config.settings import (
    DEFAULT_STYLES,
    DEFAULT_TIERS,
    AccessSettings,
    BotSettings,
    Config,
    DiscordSettings,
    EngineSettings,
    ModerationSettings,
    PaymentSettings,
    PlanSettings,
    QueueSettings,
    StoreSettings,
    StyleSettings,
    TelegramSettings,
    TierSettings,
    WebSettings,
)

# Environment variables that supply secrets, so they can stay out of the file (and out of git).
ENV_TOKENS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "RESTYLE_TELEGRAM_TOKEN": ("telegram", "token"),
        "RESTYLE_DISCORD_TOKEN": ("discord", "token"),
        "RESTYLE_WEB_TOKEN": ("web", "access_token"),
        "RESTYLE_STORE_URL": ("store", "url"),  # a PostgreSQL URL may carry a password
    }
)


class ConfigError(ValueError):
    """The configuration cannot be used; str(error) names the file, section and key to fix."""


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


# --- Checking the tables -------------------------------------------------------------------------

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
