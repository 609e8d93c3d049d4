"""Strategies, request needs, moving averages and explanations."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.errors import Attempt
from polyroute.fleet import Fleet, ModelEntry
from polyroute.routing import Plan, Principal, Router
from polyroute.routing.explain import explain, header_value, render
from polyroute.routing.needs import DEFAULT_OUTPUT_TOKENS, estimate_text_tokens, needs_of
from polyroute.routing.stats import LatencyStats
from polyroute.types import ChatRequest, Usage, make_usage

HOSTED = {
    "gpt": "gpt-4-1",
    "gpt-mini": "gpt-4-1-mini",
    "deepseek": "deepseek-v4-flash",
    "qwen": "qwen3-235b",
    "claude": "claude-haiku-4-5",
}


def build(route: dict[str, Any], models: dict[str, Any] | None = None, rng: random.Random | None = None,
          stats: LatencyStats | None = None) -> Router:
    models = models or {name: {"backend": "hosted", "family": fam} for name, fam in HOSTED.items()}
    raw = {
        "backends": {"hosted": {"type": "fake", "locality": "remote"}, "box": {"type": "fake"}},
        "models": models,
        "routes": {"r": {"models": list(models), **route}},
    }
    return Router(Fleet.build(cfg.parse(raw, env={}), load_catalog()), stats=stats, rng=rng)


def ask(text: str = "hello", **extra: Any) -> ChatRequest:
    return ChatRequest.from_json({"model": "r", "messages": [{"role": "user", "content": text}], **extra})


def plan_of(router: Router, req: ChatRequest | None = None) -> Plan:
    return router.plan(router.fleet.routes["r"], req or ask(), Principal())


def names(plan: Plan) -> list[str]:
    return [e.name for e in plan.candidates]


def expected_cost(e: ModelEntry, prompt: int, output: int) -> float:
    return (prompt * e.input_per_mtok + output * e.output_per_mtok) / 1e6


# --- ordered ------------------------------------------------------------------------------


def test_ordered_keeps_the_listed_order() -> None:
    plan = plan_of(build({"strategy": "ordered"}))
    assert names(plan) == list(HOSTED)
    assert plan.strategy == "ordered" and plan.scores["deepseek"] == 3.0


# --- cheapest -----------------------------------------------------------------------------


def test_cheapest_ranks_by_estimated_cost_of_this_request() -> None:
    router = build({"strategy": "cheapest"})
    plan = plan_of(router, ask("hi " * 400, max_tokens=100))
    needs = plan.needs
    assert needs is not None and needs.output_tokens == 100
    costs = {e.name: expected_cost(e, needs.prompt_tokens, 100) for e in router.fleet.models.values()}
    assert names(plan) == sorted(costs, key=costs.__getitem__)
    assert plan.scores == pytest.approx(costs)
    assert names(plan)[-1] == "gpt"  # 2 in / 8 out per Mtok: the dearest of the five


def test_cheapest_weighs_input_and_output_by_what_the_request_needs() -> None:
    # GPT-5.4 mini: cheaper input than Kimi K2.6, dearer output (shipped catalog prices).
    router = build({"strategy": "cheapest"}, models={
        "kimi": {"backend": "hosted", "family": "kimi-k2-6"},
        "mini": {"backend": "hosted", "family": "gpt-5-4-mini"},
    })
    km, mini = router.fleet.models["kimi"], router.fleet.models["mini"]
    assert mini.input_per_mtok < km.input_per_mtok and mini.output_per_mtok > km.output_per_mtok
    assert names(plan_of(router, ask("long prompt " * 5000, max_tokens=10))) == ["mini", "kimi"]
    assert names(plan_of(router, ask("short", max_tokens=8000))) == ["kimi", "mini"]


def test_cheapest_without_max_tokens_expects_the_default_output() -> None:
    plan = plan_of(build({"strategy": "cheapest"}), ask("hi"))
    assert plan.needs is not None and plan.needs.output_tokens == DEFAULT_OUTPUT_TOKENS


def test_cheapest_puts_an_unpriced_model_last_and_a_local_one_first() -> None:
    router = build({"strategy": "cheapest"}, models={
        "mystery": {"backend": "hosted"},
        "gpt": {"backend": "hosted", "family": "gpt-4-1"},
        "smol": {"backend": "box", "family": "smollm2-135m"},
    })
    plan = plan_of(router)
    assert names(plan) == ["smol", "gpt", "mystery"]
    assert plan.scores["smol"] == 0.0 and plan.scores["mystery"] == float("inf")
    assert plan.cost(router.fleet.models["mystery"]) is None


# --- fastest and its moving averages -------------------------------------------------------


@dataclass
class FakeReport:
    attempts: list[Attempt]
    model: ModelEntry | None
    usage: Usage = field(default_factory=lambda: make_usage(10, 100))


def answered(router: Router, name: str, ms: float, tokens: int = 100) -> FakeReport:
    entry = router.fleet.models[name]
    return FakeReport([Attempt(entry.backend, name, "ok", ms)], entry, make_usage(10, tokens))


def test_fastest_tries_unmeasured_models_first_then_ranks_by_expected_time() -> None:
    router = build({"strategy": "fastest"})
    assert names(plan_of(router)) == list(HOSTED)  # nothing measured: listed order
    t = 100.0
    # Streams: first token after 0.2 s / 1.5 s, then 100 tokens at 100 / 20 tokens per second.
    router.observe(answered(router, "claude", 1200), first_token_at=t + 0.2, ended_at=t + 1.2)
    router.observe(answered(router, "gpt", 6500), first_token_at=t + 1.5, ended_at=t + 6.5)
    speed = router.stats.models["claude"]
    assert speed.ttft_s == pytest.approx(0.2) and speed.tokens_per_s == pytest.approx(100)
    plan = plan_of(router, ask(max_tokens=100))
    # Unmeasured models rank as fast as the fastest measured one, and ahead of it.
    assert names(plan) == ["gpt-mini", "deepseek", "qwen", "claude", "gpt"]
    assert plan.scores["claude"] == pytest.approx(1.2) and plan.scores["gpt"] == pytest.approx(6.5)
    assert plan.scores["deepseek"] == pytest.approx(1.2)


def test_fastest_weighs_first_token_against_speed_by_the_expected_output() -> None:
    router = build({"strategy": "fastest"}, models={
        "snappy": {"backend": "hosted", "family": "gpt-4-1-mini"},  # quick to start, slow to write
        "steady": {"backend": "hosted", "family": "gpt-4-1"},  # slow to start, quick to write
    })
    t = 0.0
    router.observe(answered(router, "snappy", 2100), first_token_at=t + 0.1, ended_at=t + 2.1)  # 50 tok/s
    router.observe(answered(router, "steady", 1500), first_token_at=t + 1.0, ended_at=t + 1.5)  # 200 tok/s
    assert names(plan_of(router, ask(max_tokens=20))) == ["snappy", "steady"]
    assert names(plan_of(router, ask(max_tokens=2000))) == ["steady", "snappy"]


def test_a_failure_counts_as_a_slow_sample() -> None:
    router = build({"strategy": "fastest"}, models={
        "a": {"backend": "hosted", "family": "gpt-4-1"}, "b": {"backend": "hosted", "family": "gpt-4-1-mini"},
    })
    router.observe(answered(router, "a", 500))
    router.observe(answered(router, "b", 900))
    assert names(plan_of(router)) == ["a", "b"]
    failed = FakeReport([Attempt("hosted", "a", "unavailable", 30.0), Attempt("hosted", "b", "ok", 900)],
                        router.fleet.models["b"])
    router.observe(failed)
    assert names(plan_of(router)) == ["b", "a"]
    # A refusal of the request itself says nothing about speed.
    rejected = FakeReport([Attempt("hosted", "b", "rejected", 5.0)], None)
    before = router.stats.models["b"].ttft_s
    router.observe(rejected)
    assert router.stats.models["b"].ttft_s == before


def test_whole_answers_are_split_with_the_known_speed() -> None:
    stats = LatencyStats(alpha=0.5, prior_tokens_per_s=50)
    router = build({"strategy": "fastest"}, stats=stats)
    router.observe(answered(router, "gpt", 3000, tokens=100))  # 3 s - 100 tokens at the 50/s prior
    assert stats.models["gpt"].ttft_s == pytest.approx(1.0)
    router.observe(answered(router, "gpt", 2000, tokens=100))  # sample 0.0, averaged at alpha 0.5
    assert stats.models["gpt"].ttft_s == pytest.approx(0.5)
    assert stats.expected_seconds("gpt", 50) == pytest.approx(1.5)
    assert stats.expected_seconds("never-seen", 50) is None


# --- weighted -----------------------------------------------------------------------------


def test_weighted_shares_first_attempts_by_weight_and_keeps_the_rest_as_fallbacks() -> None:
    router = build({"strategy": "weighted", "weights": {"gpt": 3, "deepseek": 1}}, rng=random.Random(7))
    firsts: Counter[str] = Counter()
    for _ in range(4000):
        order = names(plan_of(router))
        firsts[order[0]] += 1
        assert set(order[:2]) == {"gpt", "deepseek"}
        assert order[2:] == ["gpt-mini", "qwen", "claude"]  # unweighted: listed order, after
    assert firsts["gpt"] / 4000 == pytest.approx(0.75, abs=0.03)
    plan = plan_of(router)
    assert plan.scores["gpt"] == 0.75 and plan.scores["qwen"] == 0.0


def test_weighted_without_weights_shares_equally() -> None:
    router = build({"strategy": "weighted"}, rng=random.Random(1))
    firsts = Counter(names(plan_of(router))[0] for _ in range(5000))
    assert set(firsts) == set(HOSTED)
    assert all(n / 5000 == pytest.approx(0.2, abs=0.03) for n in firsts.values())


def test_weighted_renormalises_over_the_candidates_a_policy_leaves() -> None:
    raw = {
        "backends": {"hosted": {"type": "fake", "locality": "remote"}},
        "models": {n: {"backend": "hosted", "family": f} for n, f in HOSTED.items()},
        "policies": {"us": {"origins_allow": ["US"]}},
        "routes": {"r": {"models": list(HOSTED), "strategy": "weighted", "policy": "us",
                         "weights": {"deepseek": 5, "gpt": 1, "claude": 1}}},
    }
    router = Router(Fleet.build(cfg.parse(raw, env={}), load_catalog()), rng=random.Random(3))
    plan = plan_of(router)
    assert "deepseek" not in names(plan)
    assert plan.scores["gpt"] == plan.scores["claude"] == 0.5


# --- needs --------------------------------------------------------------------------------


def test_token_estimates() -> None:
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("abcd" * 10) == 10
    assert estimate_text_tokens("你好世界") == 4  # 12 UTF-8 bytes, about one token a character


def test_needs_from_the_request() -> None:
    tool = {"type": "function", "function": {"name": "f"}}
    image = {"type": "image_url", "image_url": {"url": "data:,"}}
    req = ChatRequest.from_json({
        "model": "r", "tools": [tool], "response_format": {"type": "json_schema", "json_schema": {}},
        "max_completion_tokens": 50,
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "see"}, image]}],
    })
    needs = needs_of(req)
    assert needs.capabilities == {"tools", "json_mode", "vision"}
    assert needs.max_tokens == 50 and needs.output_tokens == 50
    # Two messages of framing, "be brief" (2), "see" (1), one image, the tools' JSON at 4 chars a token.
    tools_json = len(json.dumps([tool], separators=(",", ":")))
    assert needs.prompt_tokens == 4 + 2 + 4 + 1 + 765 + -(-tools_json // 4)
    assert needs_of(ask("plain")).capabilities == frozenset()


# --- explanations -------------------------------------------------------------------------


def test_explanation_has_order_scores_costs_and_reasons() -> None:
    raw = {
        "backends": {"hosted": {"type": "fake", "locality": "remote"}},
        "models": {n: {"backend": "hosted", "family": f} for n, f in HOSTED.items()},
        "policies": {"no-cn": {"origins_deny": ["CN"]}},
        "routes": {"r": {"models": list(HOSTED), "strategy": "cheapest", "policy": "no-cn"}},
    }
    router = Router(Fleet.build(cfg.parse(raw, env={}), load_catalog()))
    plan = plan_of(router, ask("hello", max_tokens=1000))
    doc = explain(plan)
    assert doc["route"] == "r" and doc["strategy"] == "cheapest" and doc["policy"] == "no-cn"
    assert [row["model"] for row in doc["order"]] == ["gpt-mini", "claude", "gpt"]
    assert all(row["score"] == row["cost_usd_est"] for row in doc["order"])
    ds = next(row for row in doc["excluded"] if row["model"] == "deepseek")
    assert ds["reason"] == "origin DeepSeek, CN matches origins_deny [CN] of policy 'no-cn'"
    assert ds["cost_usd_est"] == pytest.approx(expected_cost(router.fleet.models["deepseek"], 6, 1000))
    header = header_value(plan)
    assert header.isascii() and "\n" not in header and ", " not in header.split('"excluded"')[0]
    assert json.loads(header) == doc
    text = render(plan)
    assert "1. gpt-mini [hosted]" in text and "deepseek [hosted]" in text and "origins_deny [CN]" in text


def test_an_empty_decision_explains_itself_rather_than_raising() -> None:
    router = build({"strategy": "cheapest"}, models={"smol": {"backend": "box", "family": "smollm2-135m"}})
    plan = router.decide(router.fleet.routes["r"], ask(tools=[{"type": "function", "function": {"name": "f"}}],
                                                       tool_choice="required"), Principal())
    assert plan.candidates == []
    assert "no candidate qualifies; the request would be refused (422)" in render(plan)
