"""Every ``polyroute`` command the README and docs/*.md show names a real subcommand and real flags.

Commands are read from the shell blocks (continued lines joined, ``# also: a, b`` comments read as
more commands) and from inline code: a span that starts with ``polyroute``, or with a subcommand
followed by its own subcommand or a flag (``keys rotate NAME --reactivate``, ``eval report --agreement``).
Each is checked against the CLI's own parser: the subcommand path must exist and every flag must be
one of that subcommand's. A command of a shell block written without placeholder syntax (``[…]``, ``(a | b)``,
``X...``) is also parsed whole, so values are checked too (choices, types, required arguments).
Other programs the blocks run (``make``, ``bench/run``, ``python -m MODULE``, ``python FILE``) must exist.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import re
from dataclasses import dataclass
from functools import cache

import pytest

from polyroute.cli import build_parser
from tests.unit.test_readme import ROOT, blocks, shell_commands, spans

METASYNTAX = re.compile(r"[\[\]()|]|\.\.\.$")


@dataclass(frozen=True)
class Command:
    where: str
    words: tuple[str, ...]  # after "polyroute"
    whole: bool  # a whole invocation (from a shell block), not a command named in prose

    def __str__(self) -> str:
        return "polyroute " + " ".join(self.words)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@cache
def top() -> argparse.ArgumentParser:
    return build_parser()


def inline_command(code: str) -> tuple[str, ...] | None:
    """An inline span as a command's words, or None when it is not one."""
    words = tuple(code.split())
    if words[:1] == ("polyroute",) and len(words) > 1:
        return words[1:]
    if len(words) >= 2 and words[0] in subparsers(top()):
        inner = subparsers(subparsers(top())[words[0]])
        if words[1] in inner or words[1].startswith("--"):
            return words
    return None


def readme_commands() -> list[Command]:
    out = []
    for block in blocks("sh", "bash"):
        for line, words in shell_commands(block.text):
            if "polyroute" in words:
                out.append(Command(block.where, tuple(words[words.index("polyroute") + 1:]), True))
                also = re.search(r"#\s*also:\s*(.+)$", line)
                for more in also.group(1).split(",") if also else []:
                    out.append(Command(block.where, tuple(more.split()), False))
    for span in spans():
        named = inline_command(span.code)
        if named is not None:
            out.append(Command(span.where, named, False))
    return out


def resolve(words: tuple[str, ...]) -> tuple[list[argparse.ArgumentParser], list[str]]:
    """The parsers of the deepest subcommand the words name (all of its subcommands where a ``...`` stands
    for one, as in ``keys ... --store URL``), and the path to it."""
    parsers, path = [top()], list[str]()
    for word in words:
        inner = subparsers(parsers[0])
        if not inner:
            break
        if word in ("...", "…"):
            return list(inner.values()), [*path, word]
        assert word in inner, f"{' '.join(path) or 'polyroute'} has no subcommand {word!r} (it has: {', '.join(inner)})"
        parsers, path = [inner[word]], [*path, word]
    return parsers, path


def flags(words: tuple[str, ...]) -> list[str]:
    out = []
    for word in words:
        bare = word.strip("[](),").removesuffix("...")
        if re.match(r"--?[a-zA-Z]", bare):
            out.append(bare.split("=", 1)[0])
    return out


COMMANDS = readme_commands()


def test_the_commands_are_found() -> None:
    assert len(COMMANDS) >= 40
    assert any(c.words[:2] == ("keys", "rotate") for c in COMMANDS)  # from an "also:" comment
    assert any(c.words[:1] == ("usage",) and "--rebuild-rollup" in c.words for c in COMMANDS)  # inline


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.where}:{' '.join(c.words[:3])}")
def test_every_command_names_a_real_subcommand_and_real_flags(command: Command) -> None:
    parsers, path = resolve(command.words)
    assert path, f"{command.where}: {command}: names no subcommand"
    unknown = [f for f in flags(command.words) if not any(f in p._option_string_actions for p in parsers)]
    assert not unknown, f"{command.where}: {command}: `polyroute {' '.join(path)}` has no {', '.join(unknown)}"


WHOLE = [c for c in COMMANDS if c.whole and not any(METASYNTAX.search(w) for w in c.words)]


@pytest.mark.parametrize("command", WHOLE, ids=lambda c: f"{c.where}:{' '.join(c.words[:3])}")
def test_every_plain_command_parses_whole(command: Command) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = top().parse_args(list(command.words))
        except SystemExit:
            pytest.fail(f"{command.where}: {command}: {err.getvalue().strip()}")
    assert getattr(args, "func", None) is not None, f"{command.where}: {command}: names no command that runs"


def programs() -> list[tuple[str, list[str]]]:
    return [(b.where, words) for b in blocks("sh", "bash") for _, words in shell_commands(b.text)]


@pytest.mark.parametrize(("where", "words"), programs(), ids=lambda v: v if isinstance(v, str) else " ".join(v[:3]))
def test_every_other_program_exists(where: str, words: list[str]) -> None:
    words = [w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)]  # VAR=value before a command
    program = words[0]
    if "/" in program:
        path = ROOT / program.removeprefix("./")
        assert path.is_file() and os.access(path, os.X_OK), f"{where}: {program} is not an executable file"
    if program.endswith("python") or program == "python":
        if words[1] == "-m":
            assert importlib.util.find_spec(words[2]) is not None, f"{where}: no module {words[2]}"
        elif words[1].endswith(".py"):
            assert (ROOT / words[1]).is_file(), f"{where}: no file {words[1]}"


def every_parser(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [parser, *(p for inner in subparsers(parser).values() for p in every_parser(inner))]


def lone_flags() -> list[tuple[str, str]]:
    """Flags named in prose on their own (``--limit N``, ``--json``): (where, flag)."""
    return [(s.where, s.code.split()[0].split("=")[0]) for s in spans() if re.match(r"--[a-z]", s.code)]


@pytest.mark.parametrize(("where", "flag"), lone_flags(), ids=lambda v: v)
def test_every_flag_named_in_prose_is_a_flag_of_some_subcommand(where: str, flag: str) -> None:
    # Prose names a flag after naming its command, a sentence or a table earlier: the flag must at
    # least exist somewhere, so a renamed one cannot linger.
    assert any(flag in p._option_string_actions for p in every_parser(top())), f"{where}: no subcommand has {flag}"
