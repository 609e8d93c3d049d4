"""``read_usage``: an upstream's usage is billed only when it is made of counts."""

from __future__ import annotations

import pytest

from polyroute.types import MOST_TOKENS, read_usage


def test_counts_are_read_and_a_missing_total_is_their_sum() -> None:
    assert read_usage({"prompt_tokens": 3, "completion_tokens": 4}) == {
        "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert read_usage({"prompt_tokens": 3.0, "completion_tokens": 4, "total_tokens": 9}) == {
        "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 9}  # reasoning may make the total larger
    assert read_usage({"prompt_tokens": 3, "completion_tokens": None})["completion_tokens"] == 0  # type: ignore[index]


@pytest.mark.parametrize("bad", [-1, MOST_TOKENS + 1, "12", 1.5, True, [], {"n": 1}, float("nan"), float("inf")])
def test_anything_else_is_not_a_count(bad: object) -> None:
    assert read_usage({"prompt_tokens": bad, "completion_tokens": 1}) is None
    assert read_usage({"prompt_tokens": 1, "completion_tokens": bad}) is None


def test_a_total_smaller_than_its_parts_is_replaced_by_their_sum() -> None:
    assert read_usage({"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": -3})["total_tokens"] == 10  # type: ignore[index]


@pytest.mark.parametrize("raw", [None, [], "usage", 3])
def test_no_usage(raw: object) -> None:
    assert read_usage(raw) is None


def test_reasoning_left_out_of_completion_tokens_is_billed_when_the_total_says_so() -> None:
    """A relay that counts a model's thoughts in total_tokens and reasoning_tokens but not in completion_tokens
    (completion 0, reasoning 60, total 81 = 21 + 60): the 60 are output, billed as such. A total that is larger for
    another reason leaves the counts as they are."""
    hidden = {"prompt_tokens": 21, "completion_tokens": 0, "total_tokens": 81,
              "completion_tokens_details": {"reasoning_tokens": 60}}
    assert read_usage(hidden) == {"prompt_tokens": 21, "completion_tokens": 60, "total_tokens": 81}
    counted = {"prompt_tokens": 21, "completion_tokens": 70, "total_tokens": 91,
               "completion_tokens_details": {"reasoning_tokens": 60}}  # OpenAI's way: reasoning inside completion
    assert read_usage(counted) == {"prompt_tokens": 21, "completion_tokens": 70, "total_tokens": 91}
    other = {"prompt_tokens": 21, "completion_tokens": 10, "total_tokens": 100,
             "completion_tokens_details": {"reasoning_tokens": 60}}  # the sum does not say what the rest is
    assert read_usage(other) == {"prompt_tokens": 21, "completion_tokens": 10, "total_tokens": 100}
