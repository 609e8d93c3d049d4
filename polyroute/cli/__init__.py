"""The ``polyroute`` command. Each subcommand lives in its own module with a
``register(subparsers)`` function that adds its parser and sets ``func``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import import_module

from polyroute import __version__
from polyroute.errors import PolyrouteError

# Subcommand modules, in the order --help lists them.
_COMMANDS = ("serve", "chat", "models", "config_cmd", "probe", "route_cmd", "router_cmd", "keys", "usage", "eval_cmd")


def out_file(value: str) -> str:
    """An ``--out``-like argument: a file whose folder exists, checked before any work is done."""
    folder = os.path.dirname(os.path.abspath(value))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {value}: the folder {folder} does not exist")
    if os.path.isdir(value):
        raise argparse.ArgumentTypeError(f"cannot write {value}: it is a folder; name a file in it")
    return value


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
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here for output still buffered
        return code
    except PolyrouteError as exc:
        print(f"polyroute: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_went_away()


def _reader_went_away() -> int:
    """The reader of our output closed it (``polyroute models | head``): stop quietly.

    Standard output is pointed at /dev/null so that the flush at interpreter exit does
    not fail again; the exit code is the shell's for a command ended by SIGPIPE.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return 128 + 13


if __name__ == "__main__":
    sys.exit(main())
