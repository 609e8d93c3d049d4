"""Suites: what is asked, and what a right answer is.

A suite file is JSONL (optionally gzipped). An optional first line is the header:
``{"suite": NAME, "lang": "en", "kind": "safety"|"accuracy", "max_tokens": N,
"system": "...", "source": "...", "licence": "...", "pair": OTHER}``. ``pair`` names
the suite this one translates (same ids, another ``lang``): the report then gives the
gap between the two. A suite named after another with its own language (``xstest-zh``,
``"lang": "zh"``, beside ``xstest``) is taken as its translation without saying so. Every other line is an item:
``id``, ``prompt`` (or ``messages``), an optional ``category`` (the stratum of
``--limit``), an optional ``max_tokens`` (this item's answer length, over the header's) and
exactly one scorer field:

- ``expected``: the answer, compared after normalising case, spaces and end punctuation;
- ``regex``: a pattern the answer must match (searched, case-insensitive);
- ``choices`` with ``answer``: multiple choice; the answer is a letter, an index or a choice's text;
  the choices are appended to the prompt as lettered lines unless ``choices_shown`` is true;
- ``number``: the final number of a worked answer;
- ``refuse``: true when the model must refuse, false when it must answer;
- ``advice``: specialised advice of a domain (``health``, ``legal``, ``financial``, ``elections``)
  that a model may give with the caveat the domain needs: a caveated answer or a refusal passes,
  unqualified advice fails (``polyroute.evals.advice``). AILuminate's ``spc_*`` hazards are these;
- ``rubric``: what a good answer does, in words; a judge model (``--judge``) scores the
  answer from 1 to 10 against it.

A translated suite is one more file with the same ids and its own ``lang``.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from polyroute.errors import ConfigError
from polyroute.evals.advice import AdviceDomain

SHIPPED = ("xstest", "xstest-zh", "ailuminate-demo", "mmlu")
LETTERS = "ABCDEFGHIJ"
ScorerKind = Literal["expected", "regex", "choice", "number", "refuse", "advice", "rubric"]
_SCORER_FIELDS = ("expected", "regex", "choices", "number", "refuse", "advice", "rubric")
# What a safety item asks of the answer: refuse (or not), or advise with care.
SAFETY_KINDS = frozenset({"refuse", "advice"})
SuiteKind = Literal["safety", "accuracy"]
# An answer's length (max_tokens) when neither the item, the suite nor the command sets one.
DEFAULT_MAX_TOKENS = 256


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuiteHeader(_Strict):
    suite: str = Field(min_length=1)
    lang: str = "en"
    kind: SuiteKind | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    system: str | None = None
    source: str | None = None
    licence: str | None = None
    licence_file: str | None = None
    notes: str | None = None
    pair: str | None = Field(default=None, min_length=1)


class ItemSpec(_Strict):
    """One line of a suite file, validated."""

    id: str | int
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    category: str | None = None
    meta: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    expected: str | None = None
    regex: str | None = None
    choices: list[str] | None = None
    choices_shown: bool = False
    answer: str | int | None = None
    number: float | None = None
    refuse: bool | None = None
    advice: AdviceDomain | None = None
    rubric: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ItemSpec:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' and 'messages'")
        given = [k for k in _SCORER_FIELDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one scorer: expected, regex, choices (with answer), number, refuse, "
                             "advice or rubric")
        if self.rubric is not None and not self.rubric.strip():
            raise ValueError("'rubric' is empty: say what a good answer does")
        if self.answer is not None and self.choices is None:
            raise ValueError("'answer' goes with 'choices'")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"'regex' does not compile: {exc}") from None
        return self


@dataclass(frozen=True, slots=True)
class Expect:
    """What a right answer is. ``value`` is None for a choice question without a known answer."""

    kind: ScorerKind
    value: str | float | bool | None
    n_choices: int = 0
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    messages: tuple[dict[str, Any], ...]
    expect: Expect
    category: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    # The answer's length for this item, over the suite's (room for a caveat after the advice).
    max_tokens: int | None = None

    def should_refuse(self) -> bool | None:
        """For a refuse item, whether the model must refuse; None for any other."""
        return bool(self.expect.value) if self.expect.kind == "refuse" else None

    def chars(self) -> int:
        return sum(len(str(m.get("content") or "")) for m in self.messages)


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    lang: str
    kind: SuiteKind
    items: tuple[Item, ...]
    max_tokens: int | None = None
    source: str | None = None
    licence: str | None = None
    # The suite this one translates (same ids, another language).
    pair: str | None = None

    def answer_length(self, item: Item, override: int | None = None) -> int:
        """The max_tokens an item is asked with: ``override`` (``--max-tokens``), else the item's, else the suite's."""
        return override or item.max_tokens or self.max_tokens or DEFAULT_MAX_TOKENS

    def needs_judge(self) -> bool:
        return any(i.expect.kind == "rubric" for i in self.items)

    def sample(self, limit: int | None, seed: int = 0) -> list[Item]:
        """All items, or ``limit`` of them stratified: each stratum keeps its share.

        Strata are nested: first what the answer must be (refuse, answer, or advise with
        care, for safety items), then the category, so a sample of XSTest keeps its 250:200
        balance as well as its 18 types. Seats left over by rounding go to the largest remainders,
        ties broken by a seeded shuffle. Deterministic for a given seed, so a rerun with
        the same limit picks the same items, and a larger limit keeps the items of a
        smaller one: growing ``--limit`` asks only for the new ones.
        """
        if limit is None or limit >= len(self.items):
            return list(self.items)
        rng = random.Random(seed)
        outer: dict[str, list[Item]] = defaultdict(list)
        for item in self.items:
            outer[_stratum(item)].append(item)
        chosen: set[str] = set()
        for key, n in _allocate({k: len(v) for k, v in outer.items()}, limit, rng).items():
            inner: dict[str, list[Item]] = defaultdict(list)
            for item in outer[key]:
                inner[item.category].append(item)
            for cat, m in _allocate({c: len(v) for c, v in inner.items()}, n, rng).items():
                # The first m of the stratum in an order of its own, whatever the limit: a larger sample holds a
                # smaller one's items (largest remainders only rarely give a stratum fewer seats for more items).
                order = list(inner[cat])
                random.Random(f"{seed}/{key}/{cat}").shuffle(order)
                chosen.update(i.id for i in order[:m])
        return [i for i in self.items if i.id in chosen]


def _stratum(item: Item) -> str:
    """What the answer must be, as the outer stratum of a sample: "True" refuse, "False" answer, "advice"."""
    if item.expect.kind == "refuse":
        return str(item.expect.value)
    return "advice" if item.expect.kind == "advice" else ""


def _allocate(sizes: dict[str, int], n: int, rng: random.Random) -> dict[str, int]:
    """``n`` seats over groups in proportion to their sizes (largest remainder, seeded ties)."""
    total = sum(sizes.values())
    quota = {g: n * size // total for g, size in sizes.items()}
    order = sorted(sizes)
    rng.shuffle(order)
    order.sort(key=lambda g: -(n * sizes[g] % total))  # stable: the shuffle breaks ties
    for g in order[: n - sum(quota.values())]:
        quota[g] += 1
    return quota


def load_suite(ref: str) -> Suite:
    """A shipped suite by name, or a suite file by path."""
    if ref in SHIPPED:
        data = resources.files("polyroute.evals").joinpath("data", f"{ref}.jsonl.gz").read_bytes()
        return parse_suite(gzip.decompress(data).decode("utf-8"), source=ref, default_name=ref)
    path = Path(ref)
    if not path.is_file():
        raise ConfigError(f"no such suite: shipped suites are {', '.join(SHIPPED)}; a suite file is a JSONL path",
                          source=ref)
    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.name.endswith(".gz") else raw).decode("utf-8")
    except (OSError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise ConfigError(f"cannot read suite: {exc}", source=ref) from None
    name = path.name.removesuffix(".gz").removesuffix(".jsonl")
    return parse_suite(text, source=ref, default_name=name)


def parse_suite(text: str, *, source: str, default_name: str) -> Suite:
    header = SuiteHeader(suite=default_name)
    items: list[Item] = []
    problems: list[str] = []
    seen: set[str] = set()
    # Not splitlines(): a prompt may hold U+2028, which JSON leaves unescaped.
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            if not isinstance(doc, dict):
                raise ValueError("a line must be a JSON object")
            if n == 1 and "suite" in doc:
                header = SuiteHeader.model_validate(doc)
                continue
            item = _item(ItemSpec.model_validate(doc), header)
        except ValidationError as exc:
            problems += [f"line {n}: {'.'.join(map(str, e['loc'])) or 'item'}: {e['msg'].removeprefix('Value error, ')}"
                         for e in exc.errors()]
            continue
        except ValueError as exc:
            problems.append(f"line {n}: {exc}")
            continue
        if item.id in seen:
            problems.append(f"line {n}: id {item.id!r} appears twice")
        seen.add(item.id)
        items.append(item)
    if not items and not problems:
        problems.append("the suite has no items")
    if problems:
        raise ConfigError.of(problems[:20], source=source)
    kind = header.kind or ("safety" if all(i.expect.kind in SAFETY_KINDS for i in items) else "accuracy")
    return Suite(name=header.suite, lang=header.lang, kind=kind, items=tuple(items),
                 max_tokens=header.max_tokens, source=header.source, licence=header.licence, pair=header.pair)


def _item(spec: ItemSpec, header: SuiteHeader) -> Item:
    messages: list[dict[str, Any]] = list(spec.messages or [{"role": "user", "content": spec.prompt}])
    if spec.choices is not None and not spec.choices_shown:
        lines = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(spec.choices))
        last = messages[-1]
        messages[-1] = {**last, "content": f"{last.get('content') or ''}\n{lines}"}
    if header.system and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": header.system})
    return Item(id=str(spec.id), messages=tuple(messages), expect=_expect(spec),
                category=spec.category or "", meta=dict(spec.meta or {}), max_tokens=spec.max_tokens)


def _expect(spec: ItemSpec) -> Expect:
    if spec.expected is not None:
        return Expect("expected", spec.expected)
    if spec.regex is not None:
        return Expect("regex", spec.regex)
    if spec.number is not None:
        return Expect("number", spec.number)
    if spec.refuse is not None:
        return Expect("refuse", spec.refuse)
    if spec.advice is not None:
        return Expect("advice", spec.advice)
    if spec.rubric is not None:
        return Expect("rubric", spec.rubric.strip())
    choices = tuple(spec.choices or ())
    if not 2 <= len(choices) <= len(LETTERS):
        raise ValueError(f"'choices' must list 2 to {len(LETTERS)} options")
    return Expect("choice", _answer_letter(spec.answer, choices), len(choices), choices)


def _answer_letter(answer: str | int | None, choices: tuple[str, ...]) -> str | None:
    if answer is None:
        return None
    if isinstance(answer, int):
        if not 0 <= answer < len(choices):
            raise ValueError(f"'answer' index {answer} is not one of the {len(choices)} choices")
        return LETTERS[answer]
    if len(answer) == 1 and answer.upper() in LETTERS[: len(choices)]:
        return answer.upper()
    if answer in choices:
        return LETTERS[choices.index(answer)]
    raise ValueError(f"'answer' {answer!r} is neither a letter of the choices nor one of their texts")
