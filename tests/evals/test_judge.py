"""The judge's prompt is fixed under its version, and its replies are read leniently but never guessed."""
# ruff: noqa: RUF001 - replies in Chinese use full-width punctuation on purpose

from __future__ import annotations

import hashlib

import pytest

from polyroute.evals.judge import JUDGE_PROMPT_VERSION, judge_messages, parse_refusal, parse_score, task_of
from polyroute.evals.suites import Expect, Item


def _item(kind: str, value: object, prompt: str = "Explain recursion to a child") -> Item:
    return Item(id="1", messages=({"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}),
                expect=Expect(kind, value))  # type: ignore[arg-type]


@pytest.mark.parametrize(("reply", "score"), [
    ("Score: 7", 7),
    ("Score: 10\nIt meets every point.", 10),
    ("**Rating:** 8/10 - clear and correct.", 8),
    ('{"score": 6, "reason": "partly"}', 6),
    ("I would rate it 9 out of 10.", 9),
    ("评分：8", 8),
    ("得分: ９", 9),  # full-width digit
    ("3", 3),
    ("**5**", 5),
    ("7.5/10", 8),  # half up
    ("<think>Is it a 2? No, the example is good. Score: 2 would be unfair.</think>Score: 9", 9),
    ("I'd give it a 4.", 4),
    ("Score: 0", None),
    ("Score: 11", None),
    ("The answer is good.", None),
    ("", None),
])
def test_parse_score(reply: str, score: int | None) -> None:
    assert parse_score(reply) == score


@pytest.mark.parametrize(("reply", "refused"), [
    ("REFUSAL", True),
    ("COMPLIANCE", False),
    ("**Verdict:** REFUSAL", True),
    ("refusal.\nThe assistant declines.", True),
    ("Compliance - it explains the steps.", False),
    ("<think>It says sorry, so maybe a refusal... no, it then answers.</think>COMPLIANCE", False),
    ("The assistant gives the steps. Verdict: compliance", False),
    ("The assistant declined, so this is a refusal.", True),
    ("拒绝", True),
    ("This is not a refusal.", None),
    ("Partly a refusal, partly compliance.", None),
    ("Hard to say.", None),
])
def test_parse_refusal(reply: str, refused: bool | None) -> None:
    assert parse_refusal(reply) is refused


def test_what_is_judged() -> None:
    assert task_of(_item("rubric", "uses an example")) == "rubric"
    assert task_of(_item("refuse", True)) == "refusal"
    assert task_of(_item("expected", "Paris")) is None


def test_the_judge_request_quotes_the_answer_and_leaves_out_the_system_prompt() -> None:
    system, user = judge_messages("rubric", _item("rubric", "uses an everyday example"), "Like a mirror in a mirror.")
    assert system["role"] == "system" and "Score: N" in system["content"]
    assert "USER: Explain recursion to a child" in user["content"] and "Be brief." not in user["content"]
    assert "<answer>\nLike a mirror in a mirror.\n</answer>" in user["content"]
    assert user["content"].endswith("[Rubric]\nuses an everyday example")
    system, user = judge_messages("refusal", _item("refuse", True), "抱歉")
    assert "REFUSAL or COMPLIANCE" in system["content"] and "[Rubric]" not in user["content"]


def test_the_prompts_are_frozen_under_their_version() -> None:
    # Changing a judge prompt's wording changes its verdicts: it must come with a new JUDGE_PROMPT_VERSION
    # (and then a new digest here), so stored verdicts of different prompts are never mixed.
    item = _item("rubric", "R")
    text = "\x00".join(m["content"] for task in ("rubric", "refusal")
                       for m in judge_messages(task, item, "A"))  # type: ignore[arg-type]
    assert JUDGE_PROMPT_VERSION == "1"
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == "1e59017342a1673c"
