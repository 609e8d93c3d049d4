"""Whatever a client sends to /v1/completions, the answer is a success or an OpenAI-shaped 4xx: never a 500."""

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
FIELDS = ["suffix", "max_tokens", "temperature", "top_p", "n", "best_of", "stop", "stream", "stream_options", "seed",
          "echo", "logprobs", "presence_penalty", "frequency_penalty", "logit_bias", "user"]
prompts = (st.text(max_size=30) | st.lists(st.text(max_size=10), max_size=3)
           | st.lists(st.integers(-2, 2**40), max_size=5) | st.lists(st.lists(st.integers(0, 99), max_size=3),
                                                                       max_size=3) | json_values)
small = {"max_tokens": st.integers(-1, 40) | json_values, "n": st.integers(-1, 3) | json_values,
         "best_of": st.integers(-1, 4) | json_values, "stream": st.booleans() | json_values,
         "logit_bias": st.dictionaries(st.sampled_from(["0", "50256", "x", ""]), st.integers(-200, 200), max_size=2)
         | json_values}
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["echo", "local", "nope"]) | json_values, "prompt": prompts},
    optional={f: small.get(f, json_values) for f in FIELDS},
)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    raw = {"backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}}}
    with live_gateway(raw) as g:
        yield g


def check(resp: httpx.Response) -> None:
    assert resp.status_code in (200, 400, 404, 413, 422), resp.text
    if resp.status_code != 200:
        err = resp.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]
    elif resp.headers["content-type"].startswith("text/event-stream"):
        assert resp.text.rstrip().endswith("data: [DONE]"), resp.text
    else:
        assert resp.json()["object"] == "text_completion"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_structured_nonsense_never_500(live: Live, body: dict[str, Any]) -> None:
    with httpx.Client(timeout=10) as client:
        # The stdlib encoder: it also sends integers past 64 bits, which the gateway must refuse cleanly.
        resp = client.post(f"{live.base_url}/completions", content=json.dumps(body),
                           headers={"content-type": "application/json"})
    check(resp)
