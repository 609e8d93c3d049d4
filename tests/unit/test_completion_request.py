"""A text completion request: OpenAI's prompt forms, what goes to an OpenAI-wire upstream, and its size."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from polyroute.completions.types import CompletionRequest
from polyroute.routing.needs import needs_of


def req(**fields: Any) -> CompletionRequest:
    return CompletionRequest.from_json({"model": "m", **fields})


@pytest.mark.parametrize(("prompt", "prompts"), [
    ("hi", ["hi"]), ("", [""]), (["hi"], ["hi"]), (["a", "b"], ["a", "b"]), ([1, 2], [[1, 2]]),
    ([[1], [2, 3]], [[1], [2, 3]]),
])
def test_every_form_of_prompt_is_a_list_of_prompts(prompt: Any, prompts: list[Any]) -> None:
    assert req(prompt=prompt).prompts == prompts


@pytest.mark.parametrize("prompt", [None, 5, [], [1, "a"], ["a", 1], [[1], []], [-1], [True], [[1.5]], [{"a": 1}]])
def test_what_is_no_prompt_is_refused(prompt: Any) -> None:
    with pytest.raises(ValidationError):
        req(prompt=prompt)


def test_a_whole_answers_body_says_openais_default_max_tokens_and_no_stream_options() -> None:
    body = req(prompt="x", stream_options={"include_usage": True}, top_k=5).upstream_body("up", stream=False)
    assert body == {"model": "up", "prompt": "x", "top_k": 5, "stream": False, "max_tokens": 16}


def test_a_streams_body_always_asks_for_usage() -> None:
    body = req(prompt="x", stream=True, max_tokens=3).upstream_body("up", stream=True)
    assert body["stream_options"] == {"include_usage": True} and body["max_tokens"] == 3


def test_max_tokens_null_leaves_the_limit_to_the_upstream() -> None:
    assert "max_tokens" not in req(prompt="x", max_tokens=None).upstream_body("up", stream=False)


def test_its_size_for_routing_and_admission_counts_token_ids_and_every_choice() -> None:
    needs = needs_of(req(prompt=[[1] * 40, [2] * 40], n=2, best_of=3, max_tokens=10).stand_in())
    assert needs.prompt_tokens >= 80
    assert needs.max_tokens == 10 * 3 * 2  # best_of generations for each of two prompts
