"""Prompt features: read from wordllama's shipped files, nothing fetched, values that mean what they say."""

from __future__ import annotations

import numpy as np
import pytest

from polyroute.quality.features import CHEAP_NAMES, Embedder, cheap_features


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def named(text: str, embedder: Embedder | None) -> dict[str, float]:
    values, _ = cheap_features(text, embedder)
    return dict(zip(CHEAP_NAMES, values, strict=True))


def test_a_multiple_choice_question(embedder: Embedder) -> None:
    f = named("Which of these is NOT a prime?\nA. 2\nB. 3\nC. 9\nD. 7\nAnswer:", embedder)
    assert f["choices"] == 4 and f["numeric_choices"] == 1.0
    assert f["wh_question"] == 1.0 and f["negation"] == 1.0
    assert f["code"] == 0.0 and f["cjk_share"] == 0.0


def test_code_statements_and_cjk_are_seen(embedder: Embedder) -> None:
    assert named("def add(a, b):\n    return a + b\nWhat does it return?", embedder)["code"] == 1.0
    assert named("Statement 1 | Every group is abelian. Statement 2 | ...", embedder)["statements"] == 1.0
    assert named("日本の首都はどこですか", embedder)["cjk_share"] > 0.9


def test_the_embedding_is_unit_length_and_tells_topics_apart(embedder: Embedder) -> None:
    _, cat = cheap_features("The cat sat on the mat and purred.", embedder)
    _, kitten = cheap_features("A kitten was sleeping on the rug.", embedder)
    _, tax = cheap_features("Compute the deferred tax liability under IFRS.", embedder)
    assert cat is not None and kitten is not None and tax is not None
    assert float(np.linalg.norm(cat)) == pytest.approx(1.0, abs=1e-5)
    assert float(cat @ kitten) > float(cat @ tax)


def test_rare_words_and_rank_rise_with_jargon(embedder: Embedder) -> None:
    plain = named("What is the name of the big red fruit?", embedder)
    jargon = named("Which cytokine drives Th17 polarisation in psoriatic plaques?", embedder)
    assert jargon["rare_word_share"] > plain["rare_word_share"]
    assert jargon["log_token_rank"] > plain["log_token_rank"]


def test_without_an_embedder_the_embedding_features_are_zero() -> None:
    values, emb = cheap_features("hello", None)
    assert emb is None and values[-4:] == [0.0, 0.0, 0.0, 0.0]
