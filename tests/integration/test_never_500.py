"""Whatever a client sends, the answer is a success or an OpenAI-shaped 4xx: never a 500."""

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
FIELDS = ["model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
          "top_p", "stop", "seed", "tools", "tool_choice", "response_format", "n", "user", "logprobs"]
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool", "robot"]) | json_values},
    optional={"content": json_values | st.text(max_size=30), "tool_calls": json_values, "name": json_values},
)
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["echo", "nope"]) | json_values, "messages": st.lists(message, max_size=3) | json_values},
    optional={f: json_values for f in FIELDS[2:]},
)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    raw = {"backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}}}
    with live_gateway(raw) as g:
        yield g


def check(resp: httpx.Response) -> None:
    assert resp.status_code in (200, 400, 404, 413), resp.text
    if resp.status_code != 200:
        err = resp.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_structured_nonsense_never_500(live: Live, body: dict[str, Any]) -> None:
    with httpx.Client(timeout=10) as client:
        # The stdlib encoder: it also sends integers past 64 bits, which the gateway must refuse cleanly.
        resp = client.post(f"{live.base_url}/chat/completions", content=json.dumps(body),
                           headers={"content-type": "application/json"})
    check(resp)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_never_500(live: Live, raw: bytes) -> None:
    with httpx.Client(timeout=10) as client:
        check(client.post(f"{live.base_url}/chat/completions", content=raw))
