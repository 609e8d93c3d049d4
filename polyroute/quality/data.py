"""Labelled prompts in RouteLLM's layout: a ``prompt`` column and one True/False column per model.

A label is a number from 0 to 1 (True is 1): how well that model answered. A prompt
may lack a label for some model (results from ``polyroute eval`` of models run on
different items); training leaves it out of that model's head only.

A path is a CSV file or a folder of them; a file's stem names its group (for MMLU,
its subject), which cross-validation keeps whole. A folder's
``contaminated_prompts.jsonl`` (RouteLLM's list of evaluation prompts that overlap
router training data, field ``eval_prompt``) is honoured: those prompts are dropped.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from polyroute.errors import ConfigError

CONTAMINATED = "contaminated_prompts.jsonl"
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True, slots=True)
class Example:
    prompt: str
    group: str
    labels: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Dataset:
    examples: list[Example]
    dropped: int  # contaminated prompts left out

    def column(self, name: str) -> list[bool]:
        """Whether each prompt was answered well (a label of 0.5 or more)."""
        return [e.labels[name] >= 0.5 for e in self.examples]

    def having(self, columns: Sequence[str]) -> Dataset:
        """Only the prompts labelled for every one of ``columns``."""
        kept = [e for e in self.examples if all(c in e.labels for c in columns)]
        return Dataset(kept, self.dropped)

    def groups(self) -> list[str]:
        return sorted({e.group for e in self.examples})


def load(paths: Sequence[str | Path], columns: Sequence[str]) -> Dataset:
    """Every row of every CSV under ``paths`` that has a value for each of ``columns``."""
    csv.field_size_limit(sys.maxsize)
    files: list[Path] = []
    drop: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(path.glob("*.csv")))
            drop |= _contaminated(path / CONTAMINATED)
        elif path.is_file():
            files.append(path)
            drop |= _contaminated(path.parent / CONTAMINATED)
        else:
            raise ConfigError(f"No such file or folder: {path}")
    if not files:
        raise ConfigError(f"No CSV files under {', '.join(map(str, paths))}.")
    examples: list[Example] = []
    dropped = 0
    for file in files:
        for ex in _read(file, columns):
            if ex.prompt in drop:
                dropped += 1
            else:
                examples.append(ex)
    if not examples:
        raise ConfigError("No labelled prompts were read.")
    return Dataset(examples, dropped)


def _read(file: Path, columns: Sequence[str]) -> list[Example]:
    with file.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in ("prompt", *columns) if c not in header]
        if missing:
            raise ConfigError(f"{file}: no column {', '.join(map(repr, missing))} (it has {', '.join(header)}).")
        out: list[Example] = []
        for line, row in enumerate(reader, start=2):
            labels = {c: _bool(row[c], file, line, c) for c in columns}
            out.append(Example(row["prompt"], file.stem, labels))
        return out


def _bool(value: str | None, file: Path, line: int, column: str) -> bool:
    v = (value or "").strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{file}:{line}: column {column!r} is {value!r}, not True or False.")


def _contaminated(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    out: set[str] = set()
    for line in path.read_bytes().splitlines():
        if line.strip():
            record = orjson.loads(line)
            if isinstance(record, dict) and isinstance(record.get("eval_prompt"), str):
                out.add(record["eval_prompt"])
    return out
