"""Features of a prompt, from its text alone, on the CPU, in tens of microseconds.

Two parts. Cheap features of the text: lengths, script, code, math, the shape of a
multiple-choice question. And a static word embedding: the mean of the rows of
``wordllama``'s shipped embedding table (256 dimensions) for the prompt's words.

The embedding table and tokenizer are read from the files the ``wordllama``
package ships, without importing the package: importing it configures the root
logger, and its loader looks for the tokenizer in the wrong folder and then
tries the network. Words are looked up whole (``▁word``, as SentencePiece spells
a word that starts after a space); a word the vocabulary lacks is split by the
real tokenizer once and remembered, so a decision costs dictionary lookups, not
a BPE pass over the whole prompt.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt

from polyroute.errors import ConfigError

F32 = npt.NDArray[np.float32]

WEIGHTS = "weights/l2_supercat_256.safetensors"
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"
EMBED_DIM = 256
# Only the start of a very long prompt is embedded: its mean changes little after this.
EMBED_CHARS = 2000
_SPLIT_CACHE_MAX = 50_000

_WORD = re.compile(r"\w+|[^\w\s]")
_CHOICE = re.compile(r"^\(?([A-J])[.)]\s*(.*)$", re.MULTILINE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_CODE = re.compile(r"```|\bdef \w+\(|\breturn\b|[{};]\s*$|\bint \w+|#include|=>|\bfunction\b", re.MULTILINE)
_MATH = re.compile(r"[=+*/^<>]|\\frac|\\sqrt|\$")
_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_NEGATION = re.compile(r"\b(?:NOT|EXCEPT|LEAST|not true|false)\b")
_PASSAGE = re.compile(r"refers to the following|the following (?:information|passage|excerpt)|Read the", re.I)
_STATEMENTS = re.compile(r"Statement 1\s*\|")
_WH = ("which", "what", "how", "why", "who", "when", "where")

CHEAP_NAMES = (
    "log_chars", "log_words", "log_stem_words", "cjk_share", "code", "math_symbols", "digit_share",
    "log_numbers", "choices", "log_choice_words", "choice_len_spread", "numeric_choices", "negation",
    "passage", "statements", "wh_question", "fill_blank", "mean_word_len", "rare_word_share",
    "log_token_rank", "choice_similarity", "stem_choice_similarity",
)  # fmt: skip


class Embedder:
    """Static word embeddings from the table that ``wordllama`` ships."""

    def __init__(self, root: Path | None = None) -> None:
        root = root or _package_root()
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - the [quality] extra brings both
            raise ConfigError(_MISSING) from exc
        table = load_file(str(root / WEIGHTS))["embedding.weight"]
        self.table: F32 = np.ascontiguousarray(table, dtype=np.float32)
        self._tokenizer = Tokenizer.from_file(str(root / TOKENIZER))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._vocab: dict[str, int] = self._tokenizer.get_vocab()
        self._split: dict[str, tuple[int, ...]] = {}

    def ids(self, text: str) -> list[int]:
        out: list[int] = []
        vocab, split = self._vocab, self._split
        for word in _WORD.findall(text[:EMBED_CHARS]):
            whole = vocab.get("\u2581" + word)
            if whole is not None:
                out.append(whole)
                continue
            pieces = split.get(word)
            if pieces is None:
                pieces = tuple(self._tokenizer.encode(word, add_special_tokens=False).ids)
                if len(split) < _SPLIT_CACHE_MAX:
                    split[word] = pieces
            out.extend(pieces)
        return out

    def is_word(self, word: str) -> bool:
        """Whether the vocabulary holds ``word`` whole (a common word, not split into pieces)."""
        return ("\u2581" + word) in self._vocab

    def mean(self, ids: list[int]) -> F32:
        """Unit-length mean of the rows for ``ids``; zeros for no ids."""
        if not ids:
            return np.zeros(EMBED_DIM, dtype=np.float32)
        v: F32 = self.table.take(ids, axis=0).sum(axis=0)
        norm = float(np.sqrt(v @ v))
        return v / norm if norm > 0 else v


def _package_root() -> Path:
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(_MISSING)
    root = Path(next(iter(spec.submodule_search_locations)))
    if not (root / WEIGHTS).is_file() or not (root / TOKENIZER).is_file():
        raise ConfigError(f"wordllama at {root} lacks its shipped model files ({WEIGHTS}, {TOKENIZER}).")
    return root


_MISSING = "Routing on quality needs the wordllama embeddings: pip install 'polyroute[quality]'."


def cheap_features(text: str, embedder: Embedder | None) -> tuple[list[float], F32 | None]:
    """The cheap features (in ``CHEAP_NAMES`` order) and, given an embedder, the prompt's embedding."""
    words = text.split()
    n_words = len(words)
    choices = _CHOICE.findall(text)
    first = _CHOICE.search(text)
    stem = text[: first.start()] if first else text
    choice_words = [len(c[1].split()) for c in choices]
    mean_choice = sum(choice_words) / len(choice_words) if choice_words else 0.0
    spread = (max(choice_words) - min(choice_words)) / (1 + mean_choice) if choice_words else 0.0
    numeric = sum(1 for c in choices if _NUMBER.fullmatch(c[1].strip().rstrip(".").replace(",", ""))) / max(
        1, len(choices)
    )
    lower = stem.lstrip().lower()
    chars = max(1, len(text))
    feats = [
        math.log1p(len(text)),
        math.log1p(n_words),
        math.log1p(len(stem.split())),
        len(_CJK.findall(text)) / chars,
        1.0 if _CODE.search(text) else 0.0,
        math.log1p(len(_MATH.findall(text))),
        len(_DIGIT.findall(text)) / chars,
        math.log1p(len(_NUMBER.findall(text))),
        float(len(choices)),
        math.log1p(mean_choice),
        spread,
        numeric,
        1.0 if _NEGATION.search(text) else 0.0,
        1.0 if _PASSAGE.search(text) else 0.0,
        1.0 if _STATEMENTS.search(text) else 0.0,
        1.0 if lower.startswith(_WH) else 0.0,
        1.0 if "___" in text or stem.rstrip().endswith(("is", "are", "was", "the", "of", "to")) else 0.0,
        sum(len(w) for w in words) / max(1, n_words),
    ]
    if embedder is None:
        return [*feats, 0.0, 0.0, 0.0, 0.0], None
    ids = embedder.ids(text)
    whole = sum(1 for w in _WORD.findall(text[:EMBED_CHARS]) if embedder.is_word(w))
    n_pieces = max(1, len(_WORD.findall(text[:EMBED_CHARS])))
    rank = sum(math.log1p(i) for i in ids) / max(1, len(ids))
    emb = embedder.mean(ids)
    choice_sim, stem_sim = _choice_similarity(embedder, stem, [c[1] for c in choices])
    return [*feats, 1.0 - whole / n_pieces, rank, choice_sim, stem_sim], emb


def _choice_similarity(embedder: Embedder, stem: str, choices: list[str]) -> tuple[float, float]:
    """Mean pairwise cosine of the choices, and the best cosine of a choice to the stem."""
    if len(choices) < 2:
        return 0.0, 0.0
    vs = np.stack([embedder.mean(embedder.ids(c)) for c in choices])
    sims = vs @ vs.T
    k = len(choices)
    pairwise = (float(sims.sum()) - float(np.trace(sims))) / (k * (k - 1))
    stem_v = embedder.mean(embedder.ids(stem))
    return pairwise, float((vs @ stem_v).max())
