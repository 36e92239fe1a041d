"""`python -m bot doctor`: check a deployment before it goes live, one line per check.

Each check says what it found, or what to do when it failed. The chats are asked directly over
HTTP (Telegram's getMe and getWebhookInfo, Discord's users/@me, oauth2/applications/@me and
users/@me/guilds), so no chat library is imported here; the engine is imported only for the
device and model checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.config import Config

TELEGRAM_API = "https://api.telegram.org/bot"
DISCORD_API = "https://discord.com/api/v10"
HTTP_TIMEOUT_S = 10.0

# Discord application flags (developer docs, "Application Object" > "Application Flags"): the
# message-content intent is granted when either is set (LIMITED: a bot in fewer than 100 servers).
GATEWAY_MESSAGE_CONTENT = 1 << 18
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
# Discord permission bits (developer docs, "Permissions"): what the bot needs in a server to post
# a result in the channel when an interaction's 15-minute follow-up token has run out.
DISCORD_PERMISSIONS = {1 << 10: "View Channels", 1 << 11: "Send Messages", 1 << 15: "Attach Files"}
ADMINISTRATOR = 1 << 3


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found, or (failed) what is wrong and what to do

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name:<9} {self.detail}"


def _host(url: str) -> str:
    """The server part of a URL: never the path, which for Telegram carries the token."""
    parts = urlsplit(url)
    return parts.netloc or url


async def check_database(config: Config) -> Check:
    from bot.store import Store, StoreError

    try:
        store = await Store.open(config.bot.data_dir, config.store.url)
    except StoreError as exc:
        return Check("database", False, f"{exc} Fix [store] url or [bot] data_dir.")
    try:
        where = f"PostgreSQL at {_host(config.store.url)}" if store.shared else f"SQLite in {config.bot.data_dir}"
        return Check("database", True, f"{where}, opened and up to date")
    finally:
        await store.close()


def check_device(config: Config) -> Check:
    from engine.api import ModelLoadError
    from engine.loading import describe_device, resolve_device

    try:
        device = resolve_device(config.engine.device)
    except ModelLoadError as exc:
        return Check("device", False, str(exc))
    if device.startswith("cuda"):
        return Check("device", True, describe_device(device))
    if device == "cpu" and config.engine.device == "auto":
        return Check("device", True, "cpu (no GPU found: a picture takes seconds to minutes)")
    return Check("device", True, device)


def check_model(config: Config, load_engine: Callable[[Config], Any]) -> Check:
    from engine.api import ModelLoadError

    started = time.perf_counter()
    try:
        engine = load_engine(config)
    except ModelLoadError as exc:
        return Check("model", False, str(exc))
    summary = getattr(engine, "settings_summary", lambda: config.engine.model)()
    return Check("model", True, f"loaded in {time.perf_counter() - started:.1f} s: {summary}")


async def _telegram_call(http: aiohttp.ClientSession, config: Config, method: str) -> tuple[int, dict[str, Any]]:
    base = (config.telegram.base_url or TELEGRAM_API).rstrip("/")
    async with http.post(f"{base}{config.telegram.token}/{method}") as response:
        return response.status, await response.json(content_type=None)


async def check_telegram(config: Config, http: aiohttp.ClientSession) -> list[Check]:
    server = _host(config.telegram.base_url or TELEGRAM_API)
    try:
        status, me = await _telegram_call(http, config, "getMe")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return [
            Check(
                "telegram",
                False,
                f"cannot reach {server} ({type(exc).__name__}); check the network or [telegram] base_url.",
            )
        ]
    if status in (401, 404) or not me.get("ok"):
        # The Bot API answers 401 to a wrong token and 404 to one that is not a token at all.
        return [Check("telegram", False, f"Telegram refused the token ({status}); copy it again from @BotFather "
                                         "into RESTYLE_TELEGRAM_TOKEN (or [telegram] token), and check "
                                         "[telegram] base_url if you set one.")]  # fmt: skip
    bot = me["result"]
    found = f"@{bot.get('username')} (id {bot.get('id')})"
    if not bot.get("can_read_all_group_messages"):
        found += ", privacy mode on (in groups it sees only commands and replies to it)"
    checks = [Check("telegram", True, found)]
    try:
        status, info = await _telegram_call(http, config, "getWebhookInfo")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return checks + [Check("webhook", False, f"getWebhookInfo failed ({type(exc).__name__}); try again.")]
    hook = info.get("result") or {}
    registered, wanted = hook.get("url") or "", config.telegram.webhook_url
    if wanted is None:
        note = "long polling" + (
            "; a webhook is registered at Telegram, the bot deletes it at start" if registered else ""
        )
        return checks + [Check("webhook", True, note)]
    if hook.get("last_error_message") and registered == wanted:
        return checks + [Check("webhook", False,
                               f"Telegram's last delivery to {wanted} failed ({hook['last_error_message']}); make that "
                               f"HTTPS address reach {config.telegram.webhook_listen}:{config.telegram.webhook_port} "
                               "(a TLS proxy in front), or remove [telegram] webhook_url to poll.")]  # fmt: skip
    if registered != wanted:
        return checks + [Check("webhook", True, f"{wanted} (the bot registers it at start)")]
    return checks + [Check("webhook", True, f"{wanted}, {hook.get('pending_update_count', 0)} update(s) waiting")]


async def _discord_get(http: aiohttp.ClientSession, config: Config, path: str) -> tuple[int, Any]:
    base = (config.discord.api_base or DISCORD_API).rstrip("/")
    async with http.get(f"{base}{path}", headers={"Authorization": f"Bot {config.discord.token}"}) as response:
        return response.status, await response.json(content_type=None)


async def check_discord(config: Config, http: aiohttp.ClientSession) -> list[Check]:
    server = _host(config.discord.api_base or DISCORD_API)
    try:
        status, me = await _discord_get(http, config, "/users/@me")
        if status == 401:
            return [Check("discord", False, "Discord refused the token; reset it in the developer portal (Bot > "
                                            "Reset Token) and set RESTYLE_DISCORD_TOKEN (or [discord] token).")]  # fmt: skip
        if status != 200:
            return [Check("discord", False, f"Discord answered {status} to users/@me; try again later.")]
        checks = [Check("discord", True, f"{me.get('username')} (id {me.get('id')})")]
        status, app = await _discord_get(http, config, "/oauth2/applications/@me")
        flags = int(app.get("flags") or 0) if status == 200 else 0
        content = bool(flags & (GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED))
        if config.discord.message_replies and not content:
            checks.append(Check("intents", False, "[discord] message_replies needs the Message Content intent: turn it "
                                                  "on in the developer portal (Bot > Privileged Gateway Intents), or "
                                                  "set message_replies = false."))  # fmt: skip
        else:
            checks.append(Check("intents", True, "message content " + ("granted" if content else "not needed")))
        if config.discord.guild_ids:
            status, guilds = await _discord_get(http, config, "/users/@me/guilds")
            checks += _guild_checks(config, app.get("id") or me.get("id"), guilds if status == 200 else [])
        return checks
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return [
            Check(
                "discord",
                False,
                f"cannot reach {server} ({type(exc).__name__}); check the network or [discord] api_base.",
            )
        ]


def _guild_checks(config: Config, app_id: Any, guilds: list[dict[str, Any]]) -> list[Check]:
    needed = sum(DISCORD_PERMISSIONS)
    invite = (f"https://discord.com/oauth2/authorize?client_id={app_id}&scope=bot+applications.commands"
              f"&permissions={needed}")  # fmt: skip
    joined = {int(g["id"]): g for g in guilds}
    checks = []
    for guild_id in config.discord.guild_ids:
        guild = joined.get(guild_id)
        if guild is None:
            checks.append(
                Check(
                    "server", False, f"the bot is not in server {guild_id} ([discord] guild_ids); invite it: {invite}"
                )
            )
            continue
        granted = int(guild.get("permissions") or 0)
        missing = [name for bit, name in DISCORD_PERMISSIONS.items() if not granted & bit]
        if missing and not granted & ADMINISTRATOR:
            checks.append(Check("server", False, f"in {guild.get('name')} ({guild_id}) the bot lacks {', '.join(missing)}; "
                                                 f"grant them to its role, or invite it again: {invite}"))  # fmt: skip
        else:
            checks.append(Check("server", True, f"{guild.get('name')} ({guild_id}): can see, send and attach"))
    return checks


async def run_checks(
    config: Config,
    config_path: Path | None,
    *,
    load_engine: Callable[[Config], Any] | None,
    http: aiohttp.ClientSession | None = None,
) -> list[Check]:
    """Every check in order; `load_engine` None skips the model (--skip-model)."""
    checks = [Check("config", True, str(config_path) if config_path else "no file: every setting at its default")]
    checks.append(await check_database(config))
    checks.append(check_device(config))
    if load_engine is None:
        checks.append(Check("model", True, f"{config.engine.model} not loaded (--skip-model)"))
    else:
        checks.append(check_model(config, load_engine))
    own = http is None
    session = http or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))
    try:
        if config.telegram.token:
            checks += await check_telegram(config, session)
        if config.discord.token:
            checks += await check_discord(config, session)
    finally:
        if own:
            await session.close()
    if not config.telegram.token and not config.discord.token:
        checks.append(Check("chats", True, "no chat token: only the web page runs"))
    return checks
