"""Every TOML block of the README and docs/*.md passes ``polyroute config check``, as a reader would run it.

How a block is read (a block is written for a reader, so the test adapts to it, never the reverse):

- A block with ``[models.*]`` is a whole config: checked as written.
- A block without models is a fragment of a config (``[gateway.breakers]``, ``[store]``, a route or a
  policy): it is checked inside a base config that adds a ``fake`` backend and, on it, a stub model for
  every model, route or policy name the fragment uses but does not define. Nothing the fragment
  defines is touched.
- A block with ``[families.*]`` is a catalog file (``[catalog] files``): checked through a config
  that names it.
- A block whose first line is ``# refused: WORDS`` shows a config polyroute refuses: ``config check``
  must fail, with WORDS in its message. (No block is so marked today.)
- Commented-out settings (a ``# key = value`` line that is TOML once uncommented) are options the
  reader may turn on: the block is checked a second time with all of them uncommented.
- What a block needs from the machine is made in a temporary folder: every ``env:VAR`` is set, an
  absolute path to a ``.gguf`` file becomes a file that exists, one to a ``.pem`` file a real CA
  bundle (certifi's), and files the block names relative to itself (``[catalog] files``, a quality
  route's ``router``) are written beside it.

No block is skipped.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest

from polyroute.cli import main
from polyroute.quality.model import QualityModel, featurize
from tests.unit.test_readme import ROOT, Block, blocks

STUB_BACKEND = "readme-stub"
REFUSED = re.compile(r"^# refused: (.+)$")
ENV_REF = re.compile(r"env:([A-Z_][A-Z0-9_]*)")
ABSOLUTE_FILE = re.compile(r'"(/[^"\s]+\.(gguf|pem))"')


def toml_blocks() -> tuple[Block, ...]:
    return blocks("toml")


def is_catalog_file(raw: dict[str, Any]) -> bool:
    return "families" in raw


def commented_settings(text: str) -> list[int]:
    """Lines that are settings commented out: ``# key = value``, TOML once the ``#`` is taken off."""
    out = []
    for number, line in enumerate(text.splitlines()):
        body = line.lstrip()
        if not body.startswith("#"):
            continue
        try:
            if tomllib.loads(body[1:]):
                out.append(number)
        except tomllib.TOMLDecodeError:
            continue  # prose in a comment
    return out


def uncomment(text: str, lines: list[int]) -> str:
    rows = text.splitlines()
    for number in lines:
        rows[number] = rows[number].replace("#", "", 1)
    return "\n".join(rows) + "\n"


def stubs(raw: dict[str, Any]) -> str:
    """A base config: a fake backend, and a stub for every name the fragment uses but does not define."""
    models = set(raw.get("models", {}))
    routes = raw.get("routes", {})
    policies = set(raw.get("policies", {}))
    needed: set[str] = set()
    needed_policies: set[str] = set()
    for route in routes.values():
        needed |= set(route.get("models", [])) | set(route.get("weights", {})) | set(route.get("router_columns", {}))
        needed_policies |= {route["policy"]} if "policy" in route else set()
    for key in raw.get("keys", {}).values():
        needed |= set(key.get("routes", [])) - set(routes)
        needed_policies |= {key["policy"]} if "policy" in key else set()
    out = [f'[backends.{STUB_BACKEND}]\ntype = "fake"\n']
    out += [f'[models."{name}"]\nbackend = "{STUB_BACKEND}"\n' for name in sorted(needed - models)]
    out += [f'[policies."{name}"]\n' for name in sorted(needed_policies - policies)]
    return "\n".join(out)


def write_router(path: Path, columns: list[str]) -> None:
    """A router with a head for each column, trained on a handful of prompts (no embedding to load)."""
    prompts = ["What is 2 + 2?", "Prove that there are infinitely many primes.", "Name a colour.",
               "Derive the closed form of the sum of k^3 for k = 1..n."]
    x = featurize(prompts, None, False)
    labels = {c: x[:, 0] * 0 + [1.0, i % 2, 1.0, i % 2] for i, c in enumerate(columns)}
    path.write_bytes(QualityModel.train(x, labels, False, 1.0).to_json())


def stand_ins(text: str, folder: Path) -> str:
    """Absolute paths the block names, made real: a file for a GGUF, a CA bundle for a PEM."""
    def made(m: re.Match[str]) -> str:
        original = Path(m.group(1))
        made = folder / f"stand-in-{original.name}"
        if m.group(2) == "pem":
            shutil.copyfile(certifi.where(), made)
        else:
            made.write_bytes(b"GGUF")  # config check looks for the file; only serve loads it
        return f'"{made}"'

    return ABSOLUTE_FILE.sub(made, text)


def beside(raw: dict[str, Any], folder: Path) -> None:
    """Files the block names relative to itself, written next to it."""
    for name in raw.get("catalog", {}).get("files", []):
        (folder / name).write_text("# a catalog file that changes nothing\n")
    for route in raw.get("routes", {}).values():
        if route.get("strategy") == "quality" and "router" in route:
            columns = [route.get("router_columns", {}).get(m, m) for m in route["models"]]
            write_router(folder / route["router"], columns)


def config_text(block: Block, text: str, folder: Path) -> str:
    """The config file the block is checked as (see the module's docstring)."""
    raw = tomllib.loads(text)
    if is_catalog_file(raw):
        (folder / "readme-catalog.toml").write_text(text)
        return ('[catalog]\nfiles = ["readme-catalog.toml"]\n'
                f'[backends.{STUB_BACKEND}]\ntype = "fake"\n[models.stub]\nbackend = "{STUB_BACKEND}"\n')
    beside(raw, folder)
    text = stand_ins(text, folder)
    return text if "models" in raw else f"{text}\n{stubs(raw)}"


@contextlib.contextmanager
def environment(text: str, monkeypatch: pytest.MonkeyPatch, folder: Path) -> Iterator[None]:
    monkeypatch.setenv("XDG_DATA_HOME", str(folder / "data"))
    for var in sorted(set(ENV_REF.findall(text))):
        monkeypatch.setenv(var, f"readme-{var.lower()}")  # distinct values: the admin key may be no client's
    yield


def config_check(path: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["config", "check", str(path)])
    return code, out.getvalue() + err.getvalue()


def check(block: Block, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refused = REFUSED.match(text.splitlines()[0]) if text.strip() else None
    with environment(text, monkeypatch, tmp_path):
        path = tmp_path / "readme.toml"
        path.write_text(config_text(block, text, tmp_path))
        code, said = config_check(path)
    if refused:
        assert code != 0, f"{block.where}: marked refused, but config check passed it:\n{said}"
        assert refused.group(1) in said, f"{block.where}: refused for another reason:\n{said}"
    else:
        assert code == 0, f"{block.where}: config check refused the README's example:\n{said}"
        assert "is not set in this environment" not in said, said


@pytest.mark.parametrize("block", toml_blocks(), ids=lambda b: b.where)
def test_every_toml_block_passes_config_check(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check(block, block.text, tmp_path, monkeypatch)


COMMENTED = [b for b in toml_blocks() if commented_settings(b.text)]


@pytest.mark.parametrize("block", COMMENTED, ids=lambda b: b.where)
def test_commented_out_settings_are_valid_once_turned_on(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check(block, uncomment(block.text, commented_settings(block.text)), tmp_path, monkeypatch)


def test_the_conventions_find_what_they_are_for() -> None:
    # Each way of reading a block is used, so none of them can quietly stop applying.
    parsed = [tomllib.loads(b.text) for b in toml_blocks()]
    assert sum("models" in r for r in parsed) >= 3
    assert any("gateway" in r and "models" not in r for r in parsed)
    assert any(is_catalog_file(r) for r in parsed)
    assert len(COMMENTED) >= 3


def test_the_keys_every_backend_takes_are_keys_of_every_backend_type() -> None:
    from polyroute.config import BACKEND_TYPES

    reference = next(b for b in toml_blocks() if "# Keys every backend takes:" in b.text)
    listed = reference.text.split("# Keys every backend takes:", 1)[1].split("\n\n", 1)[0]
    names = re.findall(r"^#   (\w+) = ", listed, re.M)
    assert len(names) >= 4, reference.where
    for type_name, model in BACKEND_TYPES.items():
        missing = [n for n in names if n not in model.model_fields]
        assert not missing, f"{reference.where}: backends of type {type_name!r} take no {missing}"


@pytest.mark.parametrize(("text", "holds"), [
    ('# refused: unknown key\n[gateway]\nlisten_on = "127.0.0.1:8080"\n', True),
    ('# refused: unknown key\n[gateway]\nlisten = "127.0.0.1:8080"\n', False),  # passes: the mark is wrong
    ('# refused: not defined\n[gateway]\nlisten_on = "127.0.0.1:8080"\n', False),  # refused for another reason
])
def test_a_block_marked_refused_must_be_refused_for_its_reason(
    text: str, holds: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = Block(ROOT / "README.md", 1, "toml", text)
    if holds:
        check(block, text, tmp_path, monkeypatch)
    else:
        with pytest.raises(AssertionError):
            check(block, text, tmp_path, monkeypatch)
