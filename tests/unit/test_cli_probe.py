"""``polyroute probe``'s parts in-process: which models are named, what the cost notice says, the asking over the
fake backend (no network), and the hints the live tests do not reach."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from polyroute.catalog import load_catalog
from polyroute.cli.probe import _announce, _names
from polyroute.cli.probe_ask import PROBE_TOKENS, PROMPT_BOUND, Asker, ProbePlan, worst_cost
from polyroute.cli.probe_hints import hint_for, words
from polyroute.config import Config, parse
from polyroute.errors import InvalidRequest

RAW: dict[str, Any] = {
    "backends": {
        "f": {"type": "fake"},
        "hosted": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "env:HOSTED_KEY",
                   "locality": "remote"},
        "priced": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "env:HOSTED_KEY",
                   "provider": "openai"},
    },
    "models": {
        "echo": {"backend": "f", "upstream": "echo"},
        "limited": {"backend": "f", "upstream": "error-429"},
        "blocked": {"backend": "f", "upstream": "blocked"},
        "vectors": {"backend": "f", "upstream": "dims-16", "capabilities": ["embeddings"]},
        "unpriced": {"backend": "hosted", "upstream": "some-model"},
        "flagship": {"backend": "priced", "upstream": "gpt-5.5", "family": "gpt-5-5"},
    },
    "routes": {"main": {"models": ["echo", "limited"]}},
}


def config(env: dict[str, str] | None = None) -> Config:
    return parse(RAW, source="probe.toml", env={"HOSTED_KEY": "sk-test-0123456789"} if env is None else env)


def test_a_route_stands_for_its_models_each_once_in_the_order_named() -> None:
    assert _names("blocked, main,echo", config()) == ["blocked", "echo", "limited"]
    assert _names(None, config()) == list(RAW["models"])


def test_an_unknown_name_is_refused_with_the_nearest_one() -> None:
    with pytest.raises(InvalidRequest, match=r"no model or route 'ehco' in probe.toml \(did you mean 'echo'\?\)"):
        _names("ehco", config())
    with pytest.raises(InvalidRequest, match="names no model"):
        _names(" , ", config())


def test_the_notice_counts_paid_models_and_their_worst_cost_before_asking() -> None:
    plan = ProbePlan.build(config(), load_catalog(), list(RAW["models"]))
    out = io.StringIO()
    _announce(plan, file=out)
    # gpt-5-5 at its list price, for the prompt bound and the answer limit; the unpriced one said apart.
    worst = (PROMPT_BOUND * 5.0 + PROBE_TOKENS * 30.0) / 1e6
    assert worst_cost(plan.fleet.models["flagship"]) == pytest.approx(worst)
    assert worst_cost(plan.fleet.models["unpriced"]) is None
    assert out.getvalue() == (f"polyroute: asking 6 model(s); 2 paid: at most ${worst:.6f} in all at the catalog's "
                              f"list prices ({PROMPT_BOUND} prompt and {PROBE_TOKENS} answer tokens each), plus 1 "
                              "with no known price\n")


def test_models_without_their_key_are_neither_counted_nor_asked() -> None:
    plan = ProbePlan.build(config(env={}), load_catalog(), ["echo", "unpriced", "flagship"])
    out = io.StringIO()
    _announce(plan, file=out)
    assert out.getvalue() == "polyroute: asking 1 model(s); none of them is paid\n"
    results = asyncio.run(Asker(plan, timeout=5.0, concurrency=2).run())
    assert [(r.model, r.result, r.message) for r in results] == [
        ("echo", "ok", ""), ("unpriced", "skipped", "HOSTED_KEY is not set"),
        ("flagship", "skipped", "HOSTED_KEY is not set")]


def test_the_fake_backend_answers_and_fails_as_the_adapters_classify() -> None:
    plan = ProbePlan.build(config(), load_catalog(), ["echo", "limited", "blocked", "vectors"])
    results = {r.model: r for r in asyncio.run(Asker(plan, timeout=5.0, concurrency=1).run())}
    echo = results["echo"]
    assert (echo.result, echo.kind, echo.paid, echo.cost_usd) == ("ok", "chat", False, 0.0)
    assert echo.usage is not None and 0 < echo.usage["completion_tokens"] <= PROBE_TOKENS
    assert (results["limited"].result, results["limited"].upstream_status) == ("rate_limited", 429)
    assert "probe again later" in results["limited"].hint
    assert results["blocked"].result == "blocked" and "another provider" in results["blocked"].hint
    assert (results["vectors"].result, results["vectors"].kind) == ("ok", "embeddings")


@pytest.mark.parametrize(("result", "model", "said"), [
    ("unavailable", "unpriced", "cannot connect to http://127.0.0.1:9/v1: check backends.hosted.base_url"),
    ("bad_response", "unpriced", "not of the 'openai' wire format: check backends.hosted.type and base_url"),
    ("timeout", "unpriced", "raise --timeout (or backends.hosted.timeout), or check that http://127.0.0.1:9/v1 is up"),
    ("timeout", "echo", "raise --timeout (or backends.f.timeout): an in-process model on a busy machine"),
    ("server_error", "unpriced", "the provider failed on its side: probe again later"),
    ("param_refused", "flagship", "the key, the account and the model id were accepted"),
])
def test_hints_name_what_to_change(result: str, model: str, said: str) -> None:
    cfg = config()
    plan = ProbePlan.build(cfg, load_catalog(), [model])
    assert said in hint_for(result, plan.fleet.models[model], cfg, plan.fleet.catalog)


def test_results_in_plain_words() -> None:
    assert [words(r) for r in ("ok", "auth_error", "billing", "model_not_found", "unavailable", "not_started")] == [
        "ok", "key refused", "account cannot pay", "model not found", "unreachable", "did not start"]
