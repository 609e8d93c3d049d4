"""Claude's classifier refusals: a 200 with ``stop_reason: "refusal"``, read as OpenAI's clients read a refusal.

The newer Claude models run safety classifiers that can decline a request before any output, or stop an answer
during its stream (https://platform.claude.com/docs/en/build-with-claude/refusals-and-fallback). The answer ends
with ``finish_reason: "content_filter"`` and says why in ``message.refusal`` (its category too), where OpenAI's
SDKs put a refusal; one declined before any output is not billed, one stopped during its answer is billed as
reported (``tests/fixtures/anthropic/refusal.json``, ``refusal_stream.sse``).
"""

from __future__ import annotations

import pytest

from polyroute.adapters import Adapter
from tests.conformance.helpers import as_sdk_reads, call, collect
from tests.conformance.providers import ANTHROPIC_PROVIDER, Provider
from tests.support.upstreams import FakeUpstream, load

pytestmark = pytest.mark.anyio


@pytest.fixture
def provider() -> Provider:
    return ANTHROPIC_PROVIDER


def before_output_stream() -> list[dict[str, object]]:
    """The whole refusal as Claude streams it: message_start, then message_delta with the stop, message_stop."""
    doc = load("anthropic", "refusal")
    start = {**doc, "stop_reason": None, "stop_details": None}
    events = [{"type": "message_start", "message": start},
              {"type": "message_delta", "delta": {"stop_reason": "refusal", "stop_sequence": None,
                                                  "stop_details": doc["stop_details"]}, "usage": {"output_tokens": 0}},
              {"type": "message_stop"}]
    return [{"event": e["type"], "data": e} for e in events]


async def test_a_refusal_before_any_output_says_why_and_costs_nothing(upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.json(load("anthropic", "refusal"))
    answer = await adapter.complete(call(upstream="claude-opus-5-5"))
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["refusal"] == "This request was declined by a safety classifier. (category: cyber)"
    assert choice["message"]["content"] == ""
    assert (answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"]) == (0, 0)


async def test_a_streamed_refusal_before_any_output_says_why_and_costs_nothing(
        upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.stream(before_output_stream())
    chunks = await collect(adapter, call(upstream="claude-opus-5-5", stream=True))
    message = as_sdk_reads(chunks)
    assert message["refusal"] == "This request was declined by a safety classifier. (category: cyber)"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] == [
        "content_filter"]
    usage = next(c["usage"] for c in chunks if c.get("usage"))
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (0, 0)


async def test_a_refusal_during_the_answer_keeps_its_text_and_is_billed(
        upstream: FakeUpstream, adapter: Adapter) -> None:
    upstream.stream([{"event": e["type"], "data": e} for e in load("anthropic", "refusal_stream")])
    chunks = await collect(adapter, call(upstream="claude-opus-5-5", stream=True))
    message = as_sdk_reads(chunks)
    assert message["content"] == "Hello.."
    assert message["refusal"] == "Claude's safety classifiers declined this request (category: bio)"
    usage = next(c["usage"] for c in chunks if c.get("usage"))
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (61, 3)
