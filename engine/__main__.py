"""`python -m engine make-test-model DIR`: write the tiny random-weight test pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description="restyle-bot engine tools")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser(
        "make-test-model",
        help="write a tiny random-weight image-to-image pipeline (for tests and smoke runs; its pictures are noise)",
    )
    make.add_argument("dir", type=Path, help="folder to write (created if missing)")
    args = parser.parse_args(argv)

    if args.command == "make-test-model":
        from engine.testmodel import make_test_model

        folder = make_test_model(args.dir)
        print(f'wrote the tiny test model to {folder}; use it with [engine] model = "{folder}"')
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
