"""Every config key the README and docs/*.md name in prose is a key of the config's models.

Read from inline code: ``[section] key`` (``[store] responses_retention_days``, ``[metrics] public = true``),
``[section.NAME].key`` (``[models.NAME].upstream``), a section alone (``[gateway.breakers]``,
``[keys.NAME]``), and a dotted path that starts with a top-level section (``gateway.unsupported_params``,
``backends.local.model_path: …`` in a quoted message). A table of names (``[keys.NAME]``) takes any
name. A ``key = value`` span without a section (``hedge_after = 0.5``) must name a key of some
section. The TOML blocks themselves are checked whole by ``test_readme_configs.py``.
"""

from __future__ import annotations

import re
import types
import typing
from functools import cache
from typing import Any

import pytest
from pydantic import BaseModel

from polyroute.config import Config
from tests.unit.test_readme import Span, spans

SECTION_KEY = re.compile(r"^\[([\w.*-]+)\](?:\s+(\w+)|\.(\w+))?(?:\s*=.*)?$")
DOTTED = re.compile(r"^([a-z_]+(?:\.[\w*-]+)+)(?:\s*(?:=|:).*)?$")
ASSIGNMENT = re.compile(r"^([a-z_]+) = \S")
# Spans written as `name = value` that are not config: what they are instead.
NOT_CONFIG = {"tool_choice": "a chat request's field"}


def members(annotation: Any) -> list[Any]:
    """The types an annotation may hold: Optional, unions and Annotated unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in members(arg)]
    return [annotation]


def step(annotation: Any, segments: list[str]) -> bool:
    """Whether ``segments`` lead somewhere from a field of this annotation."""
    if not segments:
        return True
    for member in members(annotation):
        if typing.get_origin(member) is dict:
            # A table of names: the first segment is the name, any name.
            if step(typing.get_args(member)[1], segments[1:]):
                return True
        elif isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get(segments[0])
            if field is not None and step(field.annotation, segments[1:]):
                return True
    return False


def exists(path: str) -> bool:
    return step(Config, path.split("."))


@cache
def every_key() -> frozenset[str]:
    seen: set[str] = set()

    def walk(annotation: Any) -> None:
        for member in members(annotation):
            if typing.get_origin(member) is dict:
                walk(typing.get_args(member)[1])
            elif isinstance(member, type) and issubclass(member, BaseModel):
                for name, field in member.model_fields.items():
                    if name not in seen:
                        seen.add(name)
                        walk(field.annotation)

    walk(Config)
    return frozenset(seen)


def named_key(span: Span) -> str | None:
    """The dotted config path a span names, or None when it names none."""
    sections = set(Config.model_fields) - {"source"}
    code = span.code.strip()
    m = SECTION_KEY.match(code)
    if m:
        section, key = m.group(1), m.group(2) or m.group(3)
        if section.split(".")[0] in sections or key:
            return f"{section}.{key}" if key else section
        return None  # [DONE], [redacted]: not config
    m = DOTTED.match(code)
    if m and m.group(1).split(".")[0] in sections and not re.search(r"\.(py|md|toml|json)$", m.group(1)):
        return m.group(1)
    return None


def named_keys() -> list[tuple[str, str]]:
    return [(span.where, key) for span in spans() if (key := named_key(span)) is not None]


def assignments() -> list[tuple[str, str]]:
    out = []
    for span in spans():
        m = ASSIGNMENT.match(span.code)
        if m and named_key(span) is None and m.group(1) not in NOT_CONFIG:
            out.append((span.where, m.group(1)))
    return out


def test_the_keys_are_found() -> None:
    keys = {k for _, k in named_keys()}
    assert {"store.responses_retention_days", "gateway.unsupported_params", "admin.secret"} <= keys
    assert "metrics.public" in keys and "models.NAME.upstream" in keys
    assert len(assignments()) >= 15


@pytest.mark.parametrize(("where", "key"), named_keys(), ids=lambda v: v)
def test_every_config_key_named_in_prose_exists(where: str, key: str) -> None:
    assert exists(key), f"{where}: the config has no key {key}"


@pytest.mark.parametrize(("where", "key"), assignments(), ids=lambda v: v)
def test_every_setting_written_in_prose_names_a_config_key(where: str, key: str) -> None:
    assert key in every_key(), f"{where}: no section of the config has a key {key!r}"


@pytest.mark.parametrize(("key", "holds"), [
    ("store.responses_retention_days", True), ("gateway.breakers.window", True), ("models.NAME.upstream", True),
    ("backends.local.model_path", True), ("keys.*.secret", True), ("gateway.send_timeout", True),
    ("gateway.breakers.windows", False), ("store.retention", False), ("models.NAME.upstreams", False),
])
def test_the_resolver_tells_keys_from_typos(key: str, holds: bool) -> None:
    assert exists(key) is holds
