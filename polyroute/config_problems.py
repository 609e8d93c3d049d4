"""A config's (or a catalog file's) validation errors as its reader wrote it: dotted keys, plain reasons.

Unknown keys come first, each with the key of its own table it is one typo away from; pydantic's
union tags are left out of locations; a backend's unknown or missing ``type`` names the known ones.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from polyroute.errors import ConfigError


def problems_of(
    exc: ValidationError, source: str, schema: type[BaseModel], backend_types: Sequence[str],
) -> ConfigError:
    """Every problem of a validation of ``schema``, each as dotted key and reason. ``backend_types``: the tags of
    the backend union, which pydantic puts in a location and a reader does not write."""
    problems: list[str] = []
    # A misspelt key shows up twice, as unknown and as the real key missing: the unknown
    # one names the typo, so unknown keys come first.
    for e in sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden"):
        loc = _untagged(e["loc"], backend_types)
        known = ", ".join(backend_types)
        if e["type"] == "extra_forbidden":
            reason = "unknown key" + _did_you_mean(loc, schema)
        elif e["type"] == "missing":
            reason = "required key is missing"
        elif e["type"] == "union_tag_invalid":
            loc, reason = (*loc, "type"), f"unknown backend type {e['input'].get('type')!r} (known: {known})"
        elif e["type"] == "union_tag_not_found":
            loc, reason = (*loc, "type"), f"required key is missing (known types: {known})"
        else:
            reason = e["msg"].removeprefix("Value error, ")
        key = ".".join(str(p) for p in loc)
        for line in reason.splitlines():
            problems.append(f"{key}: {line}" if key else line)
    return ConfigError.of(problems, source=source)


def _did_you_mean(loc: tuple[int | str, ...], schema: type[BaseModel]) -> str:
    """`` (did you mean 'x'?)`` when a key of the table at ``loc`` is one typo away from its last part."""
    key = loc[-1] if loc else ""
    if not isinstance(key, str):
        return ""
    # The table's own keys (a backend's: those of every backend type); where the walk cannot follow, any table's.
    known = _keys_at(loc[:-1], schema) or _schema_keys(schema)
    if key in known:  # a key of another backend type (a llamacpp key on an HTTP backend): no typo to name
        return ""
    return did_you_mean(key, known)


def _keys_at(path: tuple[int | str, ...], schema: type[BaseModel]) -> set[str]:
    """The keys the table at ``path`` may hold: its model's fields, or every member's of a union (a backend)."""
    level: list[Any] = [schema]
    for part in path:
        following: list[Any] = []
        for tp in level:
            for model in _models_in(tp):
                if isinstance(part, str) and (field := model.model_fields.get(part)) is not None:
                    following.append(field.annotation)
            following += _values_of(tp)  # ``part`` is a name in a table of tables ([backends.NAME])
        level = following
    return {name for tp in level for model in _models_in(tp) for name in model.model_fields if name != "source"}


def _unwrapped(tp: Any) -> list[Any]:
    """The types an annotation stands for: Annotated and Optional and unions opened up."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrapped(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return [t for arg in get_args(tp) for t in _unwrapped(arg)]
    return [tp]


def _models_in(tp: Any) -> list[type[BaseModel]]:
    return [t for t in _unwrapped(tp) if isinstance(t, type) and issubclass(t, BaseModel)]


def _values_of(tp: Any) -> list[Any]:
    """What a table of tables (``dict[str, X]``) or a list holds."""
    out = []
    for t in _unwrapped(tp):
        origin = get_origin(t)
        if origin is dict:
            out.append(get_args(t)[1])
        elif origin is list:
            out.append(get_args(t)[0])
    return out


def did_you_mean(name: str, known: Mapping[str, Any] | set[str], *, fold: bool = False) -> str:
    """`` (did you mean 'x'?)`` when one of ``known`` is one typo away from ``name``: two letters swapped
    (``rmp``), or close by difflib's measure; with ``fold``, whatever the case of either."""
    names = {(k.casefold() if fold else k): k for k in known}
    wanted = name.casefold() if fold else name
    swapped = [names[k] for k in sorted(names) if _swapped(wanted, k)]
    close = swapped or [names[k] for k in difflib.get_close_matches(wanted, sorted(names), n=1, cutoff=0.75)]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _swapped(a: str, b: str) -> bool:
    """Whether ``a`` is ``b`` with two neighbouring letters swapped."""
    if len(a) != len(b) or a == b:
        return False
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def _schema_keys(schema: type[BaseModel]) -> set[str]:
    """Every key a table of ``schema`` (and of the tables it holds, and of their subclasses) may hold."""
    keys: set[str] = set()
    seen: set[type[BaseModel]] = set()
    todo: list[Any] = [schema]
    while todo:
        tp = todo.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in seen:
                continue
            seen.add(tp)
            keys.update(name for name in tp.model_fields if name != "source")
            todo += tp.__subclasses__()
            todo += [f.annotation for f in tp.model_fields.values()]
        else:
            todo += get_args(tp)
    return keys


def _untagged(loc: tuple[int | str, ...], backend_types: Sequence[str]) -> tuple[int | str, ...]:
    """A location without the union tag pydantic puts after a backend's name (``backends.x.llamacpp.n_ctx``)."""
    if len(loc) > 2 and loc[0] == "backends" and loc[2] in backend_types:
        return (*loc[:2], *loc[3:])
    if len(loc) > 0 and loc[0] in backend_types:  # backend_config() on its own
        return loc[1:]
    return loc
