"""The ``polyroute`` command. Each subcommand lives in its own module with a
``register(subparsers)`` function that adds its parser and sets ``func``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from polyroute import __version__
from polyroute.errors import PolyrouteError

# Subcommand modules, in the order --help lists them.
_COMMANDS = ("serve", "chat", "models", "config_cmd", "route_cmd", "eval_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polyroute",
        description="One OpenAI-compatible endpoint in front of a fleet of models.",
    )
    parser.add_argument("--version", action="version", version=f"polyroute {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = import_module(f"polyroute.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"polyroute.cli.{name}":
                continue  # a subcommand not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PolyrouteError as exc:
        print(f"polyroute: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
