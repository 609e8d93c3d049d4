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

import hashlib
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
# Only the start of a long prompt is embedded and searched: its mean changes little after this,
# and the decision's cost stays flat.
EMBED_CHARS = 1000
# Multiple-choice options are looked for in this many characters at the end of a prompt.
CHOICE_CHARS = 1500
# Each choice is embedded from its start only.
CHOICE_EMBED_CHARS = 100
_SPLIT_CACHE_MAX = 50_000

_WORD = re.compile(r"\w+|[^\w\s]")
_CHOICE = re.compile(r"^\(?([A-J])[.)]\s*(.*)$", re.MULTILINE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
# Substrings, not one alternation with word boundaries: ten times faster on a long prompt.
_CODE = ("```", "def ", "return ", ";\n", "{\n", "}\n", "#include", "=>", "function ", "int ")
_MATH = re.compile(r"[=+*/^<>]|\\frac|\\sqrt|\$")
_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_NEGATION = (" NOT ", "EXCEPT", "LEAST", "not true", "false")
_PASSAGE = ("refers to the following", "the following information", "the following passage", "the following excerpt",
            "read the")
_OPEN_ENDS = ("is", "are", "was", "the", "of", "to")
_WH = ("which", "what", "how", "why", "who", "when", "where")

CHEAP_NAMES = (
    "log_chars", "log_words", "log_stem_words", "cjk_share", "code", "math_symbols", "digit_share",
    "log_numbers", "choices", "log_choice_words", "choice_len_spread", "numeric_choices", "negation",
    "passage", "statements", "wh_question", "fill_blank", "mean_word_len", "rare_word_share",
    "log_token_rank", "choice_similarity", "prompt_choice_similarity",
)  # fmt: skip


# Names the layout of the feature vector (cheap features, then the embedding). Recorded beside
# features kept for retraining, so that rows of another layout are never mixed in.
FEATURE_SET = hashlib.sha256("|".join((*CHEAP_NAMES, WEIGHTS, str(EMBED_DIM))).encode()).hexdigest()[:12]


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
        self._log_ids = np.log1p(np.arange(len(self.table), dtype=np.float64))

    def lookup(self, text: str) -> tuple[list[int], float]:
        """Token ids of ``text``, and the share of its words the vocabulary holds whole (common words)."""
        out: list[int] = []
        vocab, split = self._vocab, self._split
        words = _WORD.findall(text)
        whole_words = 0
        for word in words:
            whole = vocab.get("\u2581" + word)
            if whole is not None:
                out.append(whole)
                whole_words += 1
                continue
            pieces = split.get(word)
            if pieces is None:
                pieces = tuple(self._tokenizer.encode(word, add_special_tokens=False).ids)
                if len(split) < _SPLIT_CACHE_MAX:
                    split[word] = pieces
            out.extend(pieces)
        return out, whole_words / max(1, len(words))

    def log_rank(self, ids: list[int]) -> float:
        """Mean log of the token ids: the vocabulary is ordered roughly by frequency, so rarer text scores higher."""
        return float(self._log_ids.take(ids).mean()) if ids else 0.0

    def means(self, groups: list[list[int]]) -> F32 | None:
        """Unit-length means of several id lists in one gather; None if any list is empty."""
        if not groups or any(not g for g in groups):
            return None
        starts = np.cumsum([0, *(len(g) for g in groups[:-1])])
        sums: F32 = np.add.reduceat(self.table.take([i for g in groups for i in g], axis=0), starts, axis=0)
        norms = np.sqrt(np.einsum("ij,ij->i", sums, sums))
        norms[norms == 0] = 1.0
        unit: F32 = sums / norms[:, None]
        return unit

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
    """The cheap features (in ``CHEAP_NAMES`` order) and, given an embedder, the prompt's embedding.

    Patterns run over the head of the prompt (and the choices over its tail, where a
    multiple-choice question puts them), so the cost stays flat for long prompts.
    """
    head = text[:EMBED_CHARS]
    tail_at = max(0, len(text) - CHOICE_CHARS)
    found = list(_CHOICE.finditer(text, tail_at))
    choices = [m.groups() for m in found]
    stem = text[: found[0].start()] if found else text
    n_words = len(text.split())
    stem_words = len(stem.split())
    choice_words = [len(c[1].split()) for c in choices]
    mean_choice = sum(choice_words) / len(choice_words) if choice_words else 0.0
    spread = (max(choice_words) - min(choice_words)) / (1 + mean_choice) if choice_words else 0.0
    numeric = sum(1 for c in choices if _NUMBER.fullmatch(c[1].strip().rstrip(".").replace(",", "")))
    lower = stem.lstrip()[:20].lower()
    head_lower = head.lower()
    chars = max(1, len(head))
    feats = [
        math.log1p(len(text)),
        math.log1p(n_words),
        math.log1p(stem_words),
        0.0 if head.isascii() else len(_CJK.findall(head)) / chars,
        1.0 if any(c in head for c in _CODE) else 0.0,
        math.log1p(len(_MATH.findall(head))),
        len(_DIGIT.findall(head)) / chars,
        math.log1p(len(_NUMBER.findall(head))),
        float(len(choices)),
        math.log1p(mean_choice),
        spread,
        numeric / max(1, len(choices)),
        1.0 if any(c in head for c in _NEGATION) else 0.0,
        1.0 if any(p in head_lower for p in _PASSAGE) else 0.0,
        1.0 if "statement 1" in head_lower else 0.0,
        1.0 if lower.startswith(_WH) else 0.0,
        1.0 if "___" in head or stem.rstrip().endswith(_OPEN_ENDS) else 0.0,
        (len(text) - text.count(" ") - text.count("\n")) / max(1, n_words),
    ]
    if embedder is None:
        return [*feats, 0.0, 0.0, 0.0, 0.0], None
    ids, whole_share = embedder.lookup(head)
    emb = embedder.mean(ids)
    choice_sim, text_sim = _choice_similarity(embedder, emb, [c[1] for c in choices])
    return [*feats, 1.0 - whole_share, embedder.log_rank(ids), choice_sim, text_sim], emb


def _choice_similarity(embedder: Embedder, whole: F32, choices: list[str]) -> tuple[float, float]:
    """Mean pairwise cosine of the choices, and the best cosine of a choice to the whole prompt."""
    if len(choices) < 2:
        return 0.0, 0.0
    vs = embedder.means([embedder.lookup(c[:CHOICE_EMBED_CHARS])[0] for c in choices])
    if vs is None:
        return 0.0, 0.0
    sims = vs @ vs.T
    k = len(choices)
    pairwise = (float(sims.sum()) - float(np.trace(sims))) / (k * (k - 1))
    return pairwise, float((vs @ whole).max())
