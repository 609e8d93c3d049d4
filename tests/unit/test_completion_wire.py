"""OpenAI's text_completion as upstreams send it, whole and streamed: taken as it came, or refused as a bad answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from polyroute.adapters.openai_compat import read_error
from polyroute.completions.openai_wire import TextEvents, text_answer
from polyroute.errors import UpstreamBadResponse, UpstreamError, UpstreamRateLimited
from tests.support.upstreams import load


def test_the_documented_answer_passes_as_it_came() -> None:
    doc = load("openai", "text_completion")
    got = text_answer(json.loads(json.dumps(doc)), "a", "m", read_error)
    assert got == doc


@pytest.mark.parametrize("doc", [
    load("openai", "completion"),  # a chat completion: its choices have a message, not text
    {"object": "text_completion", "choices": []}, {"choices": [5]}, {"choices": [{"text": 5}]},
    {"choices": [{"text": "x", "index": "0"}]}, [1], None,
])
def test_what_is_not_a_text_completion_is_a_bad_answer(doc: Any) -> None:
    with pytest.raises(UpstreamBadResponse):
        text_answer(doc, "a", "m", read_error)


def test_an_error_in_a_200_is_the_error_its_code_says() -> None:
    doc = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    with pytest.raises(UpstreamRateLimited):
        text_answer(doc, "a", "m", read_error)


def events(*docs: object) -> tuple[TextEvents, list[dict[str, Any]]]:
    reader = TextEvents("a", "m", read_error)
    out: list[dict[str, Any]] = []
    for doc in docs:
        out += reader.on("", doc if isinstance(doc, str) else json.dumps(doc))  # type: ignore[arg-type]
    return reader, out


def test_the_documented_stream_passes_chunk_for_chunk_and_ends_at_done() -> None:
    documented = load("openai", "text_completion_stream")
    reader, chunks = events(*documented, "[DONE]")
    assert reader.ended and chunks == documented


def test_usage_that_comes_with_the_last_text_goes_in_a_chunk_of_its_own() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    _, chunks = events({"id": "c", "choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}], "usage": usage})
    assert [c["choices"] for c in chunks][1] == [] and chunks[1]["usage"] == usage and "usage" not in chunks[0]
    assert chunks[0]["choices"][0]["text"] == "hi" and chunks[0]["object"] == "text_completion"


def test_a_chunk_that_only_ends_its_choice_may_leave_out_the_text() -> None:
    _, chunks = events({"choices": [{"index": 0, "finish_reason": "length"}]})
    assert chunks[0]["choices"][0]["text"] == ""


@pytest.mark.parametrize("data", ["{", "[]", json.dumps({"id": "c"}), json.dumps({"choices": [{"text": 3}]})])
def test_a_malformed_event_is_a_bad_answer(data: str) -> None:
    with pytest.raises(UpstreamBadResponse):
        events(data)


def test_an_error_event_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        events({"error": {"message": "The server had an error", "type": "server_error"}})


def test_a_whole_answer_sent_for_a_stream_is_one_chunk_and_the_end() -> None:
    reader = TextEvents("a", "m", read_error)
    chunks = reader.whole(load("openai", "text_completion"))
    assert reader.ended and len(chunks) == 1 and chunks[0]["usage"] is not None
