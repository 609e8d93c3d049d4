"""Whatever a client sends to the Messages API, the answer is a success or an Anthropic-shaped 4xx: never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.live import Live, live_gateway

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
BLOCK_TYPES = ["text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
               "server_tool_use", "search_result"]
# A block of a known type with fields of any value, or anything at all.
block = st.fixed_dictionaries(
    {"type": st.sampled_from(BLOCK_TYPES) | json_values},
    optional={k: json_values | st.text(max_size=10) for k in (
        "text", "source", "id", "name", "input", "tool_use_id", "content", "is_error", "thinking", "signature",
        "data", "cache_control", "title")},
) | json_values
turn = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool"]) | json_values},
    optional={"content": st.text(max_size=20) | st.lists(block, max_size=3) | json_values},
)
FIELDS = ["system", "stream", "stop_sequences", "temperature", "top_p", "top_k", "metadata", "tools", "tool_choice",
          "thinking", "output_config", "cache_control", "container", "service_tier"]
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["echo", "nope"]) | json_values, "messages": st.lists(turn, max_size=3) | json_values},
    optional={"max_tokens": st.integers(-5, 100) | json_values, **{f: json_values for f in FIELDS}},
)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    raw = {"backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}}}
    with live_gateway(raw) as g:
        yield g


def check(resp: httpx.Response) -> None:
    assert resp.status_code in (200, 400, 404, 413), resp.text
    if resp.status_code != 200:
        doc = resp.json()
        assert doc["type"] == "error" and set(doc["error"]) == {"type", "message"} and doc["error"]["message"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_structured_nonsense_never_500(live: Live, body: dict[str, Any]) -> None:
    with httpx.Client(timeout=10) as client:
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            # The stdlib encoder: it also sends integers past 64 bits, which the gateway must refuse cleanly.
            check(client.post(f"{live.root}{path}", content=json.dumps(body),
                              headers={"content-type": "application/json"}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_never_500(live: Live, raw: bytes) -> None:
    with httpx.Client(timeout=10) as client:
        check(client.post(f"{live.root}/v1/messages", content=raw))
