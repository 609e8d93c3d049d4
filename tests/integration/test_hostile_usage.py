"""An upstream whose usage is not a count: billed by estimate, never as it says (a negative count gives budget back)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.fault_upstream import FaultUpstream
from tests.support.live import Live, live_gateway

ENV = {"KEY": "sk-usage-0123456789abcdef"}
KINDS = ("negative", "huge", "text")


@pytest.fixture(scope="module")
def live(up: FaultUpstream) -> Iterator[Live]:
    raw = {
        "backends": {"up": {"type": "openai", "base_url": up.url + "/v1"}},
        "models": {
            **{kind: {"backend": "up", "upstream": f"badusage-{kind}", "input_per_mtok": 1000.0,
                      "output_per_mtok": 2000.0} for kind in KINDS},
            "honest": {"backend": "up", "upstream": "ok", "input_per_mtok": 1000.0, "output_per_mtok": 2000.0},
        },
        "keys": {"k": {"secret": "env:KEY", "budget_usd": 1.0, "budget_period": "day", "tpm": 1_000_000}},
    }
    with live_gateway(raw, env=ENV) as g:
        yield g


def chat(live: Live, model: str, stream: bool) -> httpx.Response:
    body = {"model": model, "max_tokens": 16, "stream": stream, "messages": [{"role": "user", "content": "hi"}],
            **({"stream_options": {"include_usage": True}} if stream else {})}
    return httpx.post(f"{live.base_url}/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {ENV['KEY']}"})


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("kind", KINDS)
def test_usage_that_is_not_a_count_is_estimated_and_never_gives_budget_back(
    live: Live, kind: str, stream: bool
) -> None:
    honest = chat(live, "honest", stream)
    answer = chat(live, kind, stream)
    assert answer.status_code == 200, answer.text
    if stream:  # the headers left at the first token: the bill is in the last chunk
        usage = json.loads(next(line for line in reversed(answer.text.splitlines()) if '"cost_usd"' in line)[6:])
        usage, cost = usage["usage"], usage["usage"]["cost_usd"]
        honest_cost = json.loads(next(line for line in reversed(honest.text.splitlines())
                                      if '"cost_usd"' in line)[6:])["usage"]["cost_usd"]
    else:
        usage, cost = answer.json()["usage"], float(answer.headers["x-polyroute-cost-usd"])
        honest_cost = float(honest.headers["x-polyroute-cost-usd"])
    # An estimate of a short prompt and answer: positive, and of the order of the honest answer's cost.
    assert 0 < cost < 10 * honest_cost
    assert usage["estimated"] is True
    assert 0 < usage["prompt_tokens"] < 100 and 0 < usage["completion_tokens"] < 100
    # The budget only went down: what is left is less than before this answer, by what it cost.
    before = float(honest.headers["x-polyroute-budget-remaining-usd"])
    after = float(chat(live, "honest", stream).headers["x-polyroute-budget-remaining-usd"])
    assert after < before
