"""`python -m bot`: run the bot, or one of the admin commands.

python -m bot [--config PATH] [--role all|frontend|worker]
                                                  run the bot: front ends and worker (all, the
                                                  default), or one half, many of each on one
                                                  PostgreSQL ([store] url)
python -m bot restyle IN OUT --prompt "..."       restyle one file, to check a model and a GPU
python -m bot codes mint --tier pro --days 30 --count 10 [--valid-days 90]
                                                  print new single-use redeem codes
python -m bot doctor [--skip-model]               check the config, database, device, model,
                                                  chat tokens and their settings
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot.config import Config, ConfigError, load_config

log = logging.getLogger("bot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="restyle-bot: restyle pictures in chat")
    parser.add_argument(
        "--config", type=Path, help="config file (see config.example.toml); default: ./config.toml if present"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    role_help = (
        "all: chat front ends, web page and a worker in one process (the default); frontend: accept, "
        "queue and deliver; worker: run the engine. frontend and worker need [store] url = postgresql://..."
    )
    parser.add_argument("--role", default="all", choices=("all", "frontend", "worker"), help=role_help)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the bot (the default)")
    run.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    run.add_argument("--role", choices=("all", "frontend", "worker"), default=argparse.SUPPRESS, help=role_help)
    restyle = sub.add_parser("restyle", help="restyle one picture file with the configured model")
    restyle.add_argument("input", type=Path)
    restyle.add_argument("output", type=Path, help="the suffix picks the format: .png, .jpg, .webp")
    restyle.add_argument("--prompt", required=True)
    restyle.add_argument("--strength", type=float, default=None, help="0.05 to 1.0 (default: [bot] default_strength)")
    restyle.add_argument("--seed", type=int, default=None)
    restyle.add_argument("--steps", type=int, default=None)
    restyle.add_argument("--max-side", type=int, default=None, help="longest side (default: the max tier's)")
    restyle.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    codes = sub.add_parser("codes", help="redeem codes for /upgrade CODE")
    codes_sub = codes.add_subparsers(dest="codes_command", required=True)
    mint = codes_sub.add_parser("mint", help="make new single-use codes and print them, one a line")
    mint.add_argument("--tier", required=True, help="the tier a code gives: pro or max")
    mint.add_argument("--days", type=int, required=True, help="how long the tier lasts once redeemed")
    mint.add_argument("--count", type=int, default=1, help="how many codes (default 1)")
    mint.add_argument("--valid-days", type=float, default=90.0, help="days a code can be redeemed in (default 90)")
    mint.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    doctor = sub.add_parser("doctor", help="check the config, database, device, model and chat tokens, one line each")
    doctor.add_argument("--skip-model", action="store_true", help="do not load the model (it can take minutes)")
    doctor.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    return parser


def _config_path(arg: Path | None) -> Path | None:
    if arg is not None:
        return arg
    default = Path("config.toml")
    return default if default.exists() else None


def _restyle_file(config: Config, args: argparse.Namespace) -> int:
    from bot.app import load_diffusers_engine
    from engine.api import ModelLoadError
    from engine.pictures import PictureError
    from engine.pipeline import restyle_file

    strength = args.strength if args.strength is not None else config.bot.default_strength
    if not 0.05 <= strength <= 1.0:
        print("--strength must be from 0.05 to 1.0", file=sys.stderr)
        return 2
    try:
        engine = load_diffusers_engine(config)
        output = restyle_file(
            engine,
            args.input,
            args.output,
            prompt=args.prompt,
            strength=strength,
            seed=args.seed,
            steps=args.steps,
            max_side=args.max_side or max(t.max_side for t in config.tiers.values()),
        )
    except (ModelLoadError, PictureError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"Could not read or write a file: {exc}", file=sys.stderr)
        return 2
    if output.error:
        print(output.error, file=sys.stderr)
        return 1
    print(f"wrote {args.output} (seed {output.seed}, {output.steps} steps, {output.seconds:.2f} s)")
    return 0


async def _mint_codes(config: Config, args: argparse.Namespace) -> int:
    from bot.clock import SystemClock
    from bot.service import RestyleService
    from bot.store import Store, StoreError

    paid = [t for t in config.tiers if t != "free"]
    if args.tier not in paid:
        print(f"--tier must be one of {', '.join(paid)}", file=sys.stderr)
        return 2
    if not 1 <= args.days <= 3650 or not 1 <= args.count <= 10000 or args.valid_days <= 0:
        print("--days must be 1 to 3650, --count 1 to 10000 and --valid-days above 0", file=sys.stderr)
        return 2
    try:
        store = await Store.open(config.bot.data_dir, config.store.url)
    except StoreError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        service = RestyleService(config, store, SystemClock())
        codes = await service.codes.mint_codes(args.tier, args.days, args.count, args.valid_days)
    finally:
        await store.close()
    print("\n".join(codes))
    print(
        f"{len(codes)} code(s) for {args.days} days of {args.tier}, redeemable for {args.valid_days:g} days "
        "with /upgrade CODE. Only their hashes are stored: keep this list.",
        file=sys.stderr,
    )
    return 0


async def _doctor(config: Config, config_path: Path | None, args: argparse.Namespace) -> int:
    from bot.app import load_diffusers_engine
    from bot.doctor import run_checks

    checks = await run_checks(config, config_path, load_engine=None if args.skip_model else load_diffusers_engine)
    for check in checks:
        print(check.line())
    return 0 if all(check.ok for check in checks) else 1


async def _run_bot(config: Config, role: str) -> int:
    from bot.adapters import AdapterStartError
    from bot.app import App, check_role
    from bot.store import StoreError
    from engine.api import ModelLoadError

    problem = check_role(config, role)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:
        app = await App.create(config, role=role)
    except StoreError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        await app.run_until_signalled()
    except (ModelLoadError, AdapterStartError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0


def _url_password(url: str) -> str | None:
    """The password inside a database URL, so the logs never show it."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password if url else None
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from bot.logs import hide_secrets

    hide_secrets()
    config_path = _config_path(args.config)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        if args.command == "doctor":
            print(f"FAIL  config    {exc}")
            return 1
        print(str(exc), file=sys.stderr)
        return 2
    hide_secrets(
        tuple(
            t
            for t in (
                config.telegram.token,
                config.discord.token,
                config.web.access_token,
                _url_password(config.store.url),
            )
            if t
        )
    )
    if args.command == "restyle":
        return _restyle_file(config, args)
    if args.command == "codes":
        return asyncio.run(_mint_codes(config, args))
    if args.command == "doctor":
        return asyncio.run(_doctor(config, config_path, args))
    try:
        return asyncio.run(_run_bot(config, args.role))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
