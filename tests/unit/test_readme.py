"""The README (and docs/*.md) read as a user reads it: what it shows must still work.

This module reads the documents once and checks the Python snippets, the headers the gateway
is said to send or read, and the two commands the README opens with. Its siblings check the
rest: ``test_readme_configs.py`` every TOML block, ``test_readme_commands.py`` every
``polyroute`` command and flag, ``test_readme_keys.py`` every config key named in prose.
Nothing here touches the network; the one snippet that is run talks to a gateway on loopback.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from polyroute.settings import effective_config
from tests.support.live import live_gateway

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language and its text."""

    path: Path
    line: int  # of the opening fence
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Span:
    """One inline code span outside the fenced blocks, with the whole line it sits on."""

    path: Path
    line: int
    code: str
    context: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@cache
def blocks(*langs: str) -> tuple[Block, ...]:
    out = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if m.group(1) in langs:
                out.append(Block(path, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)))
    return tuple(out)


@cache
def spans() -> tuple[Span, ...]:
    out = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        # Fenced blocks blanked out, line breaks kept, so that line numbers still hold.
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for number, line in enumerate(prose.splitlines(), start=1):
            out += [Span(path, number, m.group(1), line) for m in SPAN.finditer(line)]
    return tuple(out)


def test_the_documents_hold_what_the_checks_read() -> None:
    # A change to how fences are written must not leave every check below with nothing to read.
    assert len(blocks("toml")) >= 10 and len(blocks("sh")) >= 10 and len(blocks("python")) >= 3
    assert len(spans()) > 500


# --- Python snippets -----------------------------------------------------------------------------

@pytest.mark.parametrize("block", blocks("python"), ids=lambda b: b.where)
def test_python_snippets_compile(block: Block) -> None:
    compile(block.text, block.where, "exec")


def test_the_first_snippet_names_what_the_embedded_default_serves() -> None:
    first = blocks("python")[0]
    base_url = re.search(r'base_url="([^"]+)"', first.text)
    model = re.search(r'model="([^"]+)"', first.text)
    assert base_url and model, first.where
    embedded = effective_config(None, env={})
    assert base_url.group(1) == f"http://{embedded.gateway.listen}/v1"
    assert model.group(1) in embedded.client_names()


def test_the_first_snippet_runs_against_a_live_gateway() -> None:
    # tests/integration/test_embedded_model.py asks the bundled model the same way; here the snippet
    # itself runs, as written, against a fake model of the same name (no model to load).
    first = blocks("python")[0]
    model = re.search(r'model="([^"]+)"', first.text)
    assert model, first.where
    raw = {"backends": {"f": {"type": "fake"}}, "models": {model.group(1): {"backend": "f", "upstream": "echo"}}}
    with live_gateway(raw) as g:
        code = re.sub(r'base_url="[^"]+"', f'base_url="{g.base_url}"', first.text)
        printed = io.StringIO()
        namespace: dict[str, Any] = {}
        with contextlib.redirect_stdout(printed):
            exec(compile(code, first.where, "exec"), namespace)
    assert printed.getvalue().startswith(f"{model.group(1)} ")
    assert "Say hi" in printed.getvalue()  # the fake echoes the prompt


# --- headers -------------------------------------------------------------------------------------

HEADER = re.compile(r"^(x-[a-z0-9-]+|retry-after(-ms)?|request-id|traceparent|authorization)$", re.I)
PACKAGE = ROOT / "polyroute"


@cache
def package_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8").lower() for p in PACKAGE.rglob("*.py"))


def documented_headers() -> dict[str, str]:
    """Every header the documents name in backticks (``x-...``, ``Name: value``), with where."""
    found: dict[str, str] = {}
    for span in spans():
        name = span.code.split(":", 1)[0].strip()
        if name.endswith("*"):
            continue  # x-polyroute-*: the family, not a header
        if HEADER.match(name):
            found.setdefault(name.lower(), span.where)
        # "`x-polyroute-model`, `-backend`, `-route`": the rest of a list written once in full.
        elif re.fullmatch(r"-[a-z][a-z-]*", span.code) and "`x-polyroute-" in span.context:
            found.setdefault(f"x-polyroute{span.code}", span.where)
    return found


def test_the_documents_name_the_headers_of_every_answer() -> None:
    headers = documented_headers()
    for name in ("x-polyroute-model", "x-polyroute-request-id", "x-should-retry", "retry-after-ms"):
        assert name in headers


@pytest.mark.parametrize("name", sorted(documented_headers()))
def test_every_documented_header_is_in_the_package(name: str) -> None:
    where = documented_headers()[name]
    assert name in package_source(), f"{where}: the header {name!r} appears nowhere in polyroute/"


# --- the two commands the README opens with --------------------------------------------------------

def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))


def test_the_readme_opens_with_make_serve_and_make_test() -> None:
    start = blocks("sh")[0]
    assert start.path.name == "README.md"
    assert [words for _, words in shell_commands(start.text)] == [["make", "serve"], ["make", "test"]], start.where


def shell_commands(text: str) -> list[tuple[str, list[str]]]:
    """Each command of a shell block, its continued lines joined: (as written, its words)."""
    out = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append((line.strip(), words))
    return out


@pytest.mark.parametrize("block", blocks("sh"), ids=lambda b: b.where)
def test_every_make_target_exists(block: Block) -> None:
    for line, words in shell_commands(block.text):
        if words[:1] == ["make"]:
            target = next((w for w in words[1:] if "=" not in w), None)
            assert target in make_targets(), f"{block.where}: {line.strip()!r}: no such target in the Makefile"


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test( |$)", ci, re.M), ".ci/run does not call `make test`"


# --- an evaluation suite of your own ---------------------------------------------------------------

def test_the_example_suite_loads_as_polyroute_eval_reads_it() -> None:
    from polyroute.evals.suites import SuiteHeader, parse_suite

    suites = blocks("json")
    assert suites, "the README's own-suite example is gone"
    for block in suites:
        suite = parse_suite(block.text, source=block.where, default_name="mine")
        assert len(suite.items) == block.text.strip().count("\n") + 1, block.where
    # The header line the prose shows before the block.
    header = next(s for s in spans() if s.code.startswith('{"suite": '))
    SuiteHeader.model_validate_json(header.code)
