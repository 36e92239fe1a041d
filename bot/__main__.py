"""`python -m bot`: run the bot, or one of the admin commands.

    python -m bot [--config PATH]                     run the bot (chat front ends, web page, worker)
    python -m bot restyle IN OUT --prompt "..."       restyle one file, to check a model and a GPU
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
    parser.add_argument("--config", type=Path, help="config file (see config.example.toml); default: ./config.toml if present")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the bot (the default)")
    run.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    restyle = sub.add_parser("restyle", help="restyle one picture file with the configured model")
    restyle.add_argument("input", type=Path)
    restyle.add_argument("output", type=Path, help="the suffix picks the format: .png, .jpg, .webp")
    restyle.add_argument("--prompt", required=True)
    restyle.add_argument("--strength", type=float, default=None, help="0.05 to 1.0 (default: [bot] default_strength)")
    restyle.add_argument("--seed", type=int, default=None)
    restyle.add_argument("--steps", type=int, default=None)
    restyle.add_argument("--max-side", type=int, default=None, help="longest side (default: the max tier's)")
    restyle.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    return parser


def _config_path(arg: Path | None) -> Path | None:
    if arg is not None:
        return arg
    default = Path("config.toml")
    return default if default.exists() else None


def _restyle_file(config: Config, args: argparse.Namespace) -> int:
    from engine.api import ModelLoadError
    from engine.pictures import PictureError
    from bot.app import load_diffusers_engine
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


async def _run_bot(config: Config) -> int:
    from bot.adapters import AdapterStartError
    from bot.app import App
    from bot.store import StoreError
    from engine.api import ModelLoadError

    try:
        app = await App.create(config)
    except StoreError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        await app.run_until_signalled()
    except (ModelLoadError, AdapterStartError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from bot.logs import hide_secrets

    hide_secrets()
    try:
        config = load_config(_config_path(args.config))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    hide_secrets(tuple(t for t in (config.telegram.token, config.discord.token, config.web.access_token) if t))
    if args.command == "restyle":
        return _restyle_file(config, args)
    try:
        return asyncio.run(_run_bot(config))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
