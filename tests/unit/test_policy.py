"""Policies over the shipped catalog: who may reach which model, and why not."""

from __future__ import annotations

from typing import Any

import pytest

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.errors import Forbidden, InvalidRequest, PolicyViolation
from polyroute.fleet import Fleet
from polyroute.routing import Plan, Principal, Router
from polyroute.types import ChatRequest

# Every hosted model sits on a backend that is never called: a fake marked remote,
# or an OpenAI-compatible one at a public URL. Local ones are fakes (local by type).
MODELS: dict[str, dict[str, Any]] = {
    "gpt": {"backend": "openai", "family": "gpt-4-1"},
    "gpt-mini": {"backend": "openai", "family": "gpt-4-1-mini"},
    "claude": {"backend": "hosted", "family": "claude-sonnet-4-5"},
    "deepseek": {"backend": "hosted", "family": "deepseek-v4-flash"},
    "kimi": {"backend": "hosted", "family": "kimi-k2-6"},
    "glm": {"backend": "hosted", "family": "glm-4-6"},
    "llama": {"backend": "hosted", "family": "llama-3-3-70b"},
    "ernie": {"backend": "hosted", "family": "ernie-4-5"},
    "qwen-local": {"backend": "box", "family": "qwen3-8b"},
    "smol": {"backend": "box", "family": "smollm2-135m"},
}


def build(policies: dict[str, Any] | None = None, route: dict[str, Any] | None = None,
          keys: dict[str, Any] | None = None, models: dict[str, Any] | None = None) -> Router:
    models = models or MODELS
    raw = {
        "backends": {
            "openai": {"type": "openai", "base_url": "https://api.openai.com/v1"},
            "hosted": {"type": "fake", "locality": "remote"},
            "box": {"type": "fake"},
        },
        "models": models,
        "policies": policies or {},
        "routes": {"main": {"models": list(models), **(route or {})}},
        "keys": keys or {},
    }
    return Router(Fleet.build(cfg.parse(raw, env={}), load_catalog()))


def ask(text: str = "hello", **extra: Any) -> ChatRequest:
    return ChatRequest.from_json({"model": "main", "messages": [{"role": "user", "content": text}], **extra})


def decide(router: Router, req: ChatRequest | None = None, principal: Principal | None = None,
           narrow: str | None = None) -> Plan:
    return router.decide(router.fleet.routes["main"], req or ask(), principal or Principal(), narrow)


def names(plan: Plan) -> list[str]:
    return [e.name for e in plan.candidates]


def reasons(plan: Plan) -> dict[str, str]:
    return {e.name: why for e, why in plan.excluded}


def test_local_only_tenant_gets_only_local_backends() -> None:
    router = build({"onprem": {"locality": "local"}}, keys={"acme": {"secret": "env:K", "policy": "onprem"}})
    plan = decide(router, principal=Principal(key="acme", policy="onprem"))
    assert names(plan) == ["qwen-local", "smol"]
    why = reasons(plan)
    assert set(why) == set(MODELS) - {"qwen-local", "smol"}
    assert why["gpt"] == "backend 'openai' is remote; policy 'onprem' allows local backends only"
    assert plan.policy == "onprem"


def test_origin_deny_cn_excludes_every_chinese_model() -> None:
    plan = decide(build({"no-cn": {"origins_deny": ["cn"]}}, route={"policy": "no-cn"}))
    assert names(plan) == ["gpt", "gpt-mini", "claude", "llama", "smol"]
    assert reasons(plan)["deepseek"] == "origin DeepSeek, CN matches origins_deny [cn] of policy 'no-cn'"
    assert set(reasons(plan)) == {"deepseek", "kimi", "glm", "ernie", "qwen-local"}


def test_origin_allow_by_country_or_by_organisation() -> None:
    router = build({"us": {"origins_allow": ["US"]}, "oai": {"origins_allow": ["OpenAI", "anthropic"]}})
    assert names(decide(router, narrow="us")) == ["gpt", "gpt-mini", "claude", "llama", "smol"]
    assert names(decide(router, narrow="oai")) == ["gpt", "gpt-mini", "claude"]
    assert reasons(decide(router, narrow="oai"))["llama"] == (
        "origin Meta, US is not in origins_allow [OpenAI, anthropic] of policy 'oai'"
    )


def test_permissive_licence_tenant() -> None:
    plan = decide(build({"permissive": {"licences": ["MIT", "apache-2.0"]}}), narrow="permissive")
    assert names(plan) == ["deepseek", "glm", "ernie", "qwen-local", "smol"]
    why = reasons(plan)
    assert why["kimi"] == "licence modified-MIT is not in licences [MIT, apache-2.0] of policy 'permissive'"
    assert why["llama"].startswith("licence llama3.3 is not in licences")
    assert why["gpt"].startswith("licence proprietary is not in licences")


def test_open_weights_only() -> None:
    plan = decide(build({"open": {"open_weights": True}}), narrow="open")
    assert {"gpt", "gpt-mini", "claude"} == set(reasons(plan))
    assert reasons(plan)["claude"] == "weights are not open; policy 'open' requires open weights"


def test_price_capped_route_compares_the_mean_of_input_and_output_price() -> None:
    router = build({"cheap": {"max_price_per_mtok": 1.0}}, route={"policy": "cheap", "strategy": "cheapest"})
    plan = decide(router)
    fleet = router.fleet
    for entry in plan.candidates:
        assert (entry.input_per_mtok + entry.output_per_mtok) / 2 <= 1.0
    # gpt-4.1 mini lists at 0.40 in / 1.60 out: a mean of exactly 1.0 stays in.
    assert "gpt-mini" in names(plan)
    gpt = fleet.models["gpt"]
    assert reasons(plan)["gpt"] == (
        f"price {(gpt.input_per_mtok + gpt.output_per_mtok) / 2:g} USD/Mtok (mean of input "
        f"{gpt.input_per_mtok:g} and output {gpt.output_per_mtok:g}) is over max_price_per_mtok 1 of policy 'cheap'"
    )
    assert "claude" in reasons(plan)


def test_min_context() -> None:
    plan = decide(build({"long": {"min_context": 200_000}}), narrow="long")
    assert set(names(plan)) == {"gpt", "gpt-mini", "claude", "deepseek", "kimi", "glm"}
    assert reasons(plan)["smol"] == "context window 8192 is under min_context 200000 of policy 'long'"


TOOL = [{"type": "function", "function": {"name": "lookup"}}]


def test_tools_request_demotes_models_without_tools_to_fallbacks() -> None:
    # The model may answer without calling a tool: one that cannot see them is still an answer.
    plan = decide(build(), ask(tools=TOOL))
    assert names(plan)[-2:] == ["ernie", "smol"] and reasons(plan) == {}
    assert plan.demoted == {
        "ernie": "lacks tools (the request sends tools)",
        "smol": "lacks tools (the request sends tools)",
    }
    assert plan.needs is not None and plan.needs.capabilities == {"tools"}


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "lookup"}}])
def test_a_request_that_demands_a_tool_call_excludes_models_without_tools(choice: object) -> None:
    plan = decide(build(), ask(tools=TOOL, tool_choice=choice))
    assert "ernie" not in names(plan) and "smol" not in names(plan)
    assert reasons(plan) == {
        "ernie": "lacks tools (the request requires a tool call)",
        "smol": "lacks tools (the request requires a tool call)",
    }


def test_image_request_excludes_models_without_vision() -> None:
    parts = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    plan = decide(build(), ask(parts))  # type: ignore[arg-type]
    assert names(plan) == ["gpt", "gpt-mini", "claude", "deepseek", "kimi"]
    assert reasons(plan)["llama"] == "lacks vision (the request contains images)"


def test_json_mode_demotes_a_model_without_it_but_keeps_it_as_fallback() -> None:
    plan = decide(build(models={k: MODELS[k] for k in ("claude", "deepseek")}),
                  ask(response_format={"type": "json_object"}))
    assert names(plan) == ["deepseek", "claude"]
    assert plan.demoted == {"claude": "lacks json_mode (the request asks for JSON mode)"}
    assert plan.excluded == []


def test_a_prompt_longer_than_the_context_window_excludes() -> None:
    plan = decide(build(), ask("word " * 7000, max_tokens=2000))  # 35000 chars / 4 + 4 of framing = 8754, + 2000
    assert reasons(plan) == {"smol": "context window 8192 is too small for ~8754 prompt tokens + max_tokens 2000"}


def test_unknown_family_fails_closed_for_every_fact_a_policy_needs() -> None:
    policies = {
        "us": {"origins_allow": ["US"]}, "no-cn": {"origins_deny": ["CN"]}, "mit": {"licences": ["MIT"]},
        "open": {"open_weights": True}, "cheap": {"max_price_per_mtok": 5}, "long": {"min_context": 1000},
    }
    router = build(policies, models={"mystery": {"backend": "hosted"}, "gpt": MODELS["gpt"]})
    expected = {
        "us": "origin unknown (no catalog family); origin rules of policy 'us' cannot be checked",
        "no-cn": "origin unknown (no catalog family); origin rules of policy 'no-cn' cannot be checked",
        "mit": "licence unknown (no catalog family); policy 'mit' allows only [MIT]",
        "open": "weights unknown (no catalog family); policy 'open' requires open weights",
        "cheap": "price unknown (no catalog family, no price in the config); policy 'cheap' caps "
                 "max_price_per_mtok at 5",
        "long": "context window unknown (no catalog family); policy 'long' needs min_context 1000",
    }
    for name, reason in expected.items():
        assert reasons(decide(router, narrow=name)).get("mystery") == reason, name
    # Without a policy the unknown model is a candidate like any other.
    assert names(decide(router)) == ["mystery", "gpt"]


def test_config_facts_make_an_unknown_model_priceable() -> None:
    models = {"priced": {"backend": "hosted", "input_per_mtok": 0.1, "output_per_mtok": 0.2}}
    plan = decide(build({"cheap": {"max_price_per_mtok": 1}}, models=models), narrow="cheap")
    assert names(plan) == ["priced"]


def test_effective_policy_takes_the_stricter_side_of_each_constraint() -> None:
    policies = {
        "tenant": {"max_price_per_mtok": 10, "min_context": 100_000, "origins_allow": ["US", "CN"]},
        "route": {"max_price_per_mtok": 1.0, "min_context": 8000, "origins_allow": ["US"]},
    }
    router = build(policies, route={"policy": "route"}, keys={"t": {"secret": "env:T", "policy": "tenant"}})
    plan = decide(router, principal=Principal(key="t", policy="tenant"))
    assert plan.policy == "tenant + route"
    # US only (route), a mean price of at most 1 (route), a context of at least 100000 (tenant).
    assert names(plan) == ["gpt-mini", "llama"]
    assert "of policy 'route'" in reasons(plan)["deepseek"]
    assert reasons(plan)["smol"] == "context window 8192 is under min_context 100000 of policy 'tenant'"


def test_a_header_can_narrow_but_never_widen() -> None:
    policies = {"onprem": {"locality": "local"}, "anything": {}, "us": {"origins_allow": ["US"]}}
    router = build(policies, keys={"acme": {"secret": "env:K", "policy": "onprem"}})
    acme = Principal(key="acme", policy="onprem")
    base = names(decide(router, principal=acme))
    assert names(decide(router, principal=acme, narrow="anything")) == base == ["qwen-local", "smol"]
    assert names(decide(router, principal=acme, narrow="us")) == ["smol"]


def test_no_qualifying_candidate_is_a_422_naming_the_policy_and_every_reason() -> None:
    router = build({"onprem": {"locality": "local"}, "mit": {"licences": ["MIT"]}},
                   models={k: MODELS[k] for k in ("gpt", "deepseek", "smol")}, route={"policy": "onprem"})
    with pytest.raises(PolicyViolation) as info:
        router.plan(router.fleet.routes["main"], ask(), Principal(), "mit")
    err = info.value
    assert err.status == 422 and err.code == "no_candidate_satisfies_policy"
    assert err.message == (
        "No candidate of 'main' satisfies policy 'onprem + mit' for this request. "
        "gpt: backend 'openai' is remote; policy 'onprem' allows local backends only; "
        "licence proprietary is not in licences [MIT] of policy 'mit'; "
        "deepseek: backend 'hosted' is remote; policy 'onprem' allows local backends only; "
        "smol: licence Apache-2.0 is not in licences [MIT] of policy 'mit'."
    )


def test_a_request_no_model_can_serve_without_any_policy_says_so() -> None:
    router = build(models={"smol": MODELS["smol"]})
    with pytest.raises(PolicyViolation) as info:
        router.plan(router.fleet.routes["main"], ask(tools=TOOL, tool_choice="required"), Principal())
    assert info.value.message == (
        "No candidate of 'main' can serve this request. smol: lacks tools (the request requires a tool call)."
    )


def test_a_key_limited_to_other_routes_is_forbidden_naming_only_the_route() -> None:
    router = build(keys={"k": {"secret": "env:K", "routes": ["gpt"]}})
    with pytest.raises(Forbidden) as info:
        decide(router, principal=Principal(key="k", routes=frozenset({"gpt"})))
    assert info.value.status == 403
    assert info.value.message == "This key may not use 'main'."


def test_an_unknown_narrowing_policy_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as info:
        decide(build(), narrow="nope")
    assert info.value.status == 400
    assert "x-polyroute-policy" in info.value.message


def test_policy_work_is_done_once_per_route_and_policy_pair() -> None:
    router = build({"onprem": {"locality": "local"}}, keys={"acme": {"secret": "env:K", "policy": "onprem"}})
    # At start: every route with no policy and with each key's policy.
    assert {("main", ()), ("main", ("onprem",))} <= set(router._admissions)
    before = dict(router._admissions)
    decide(router, principal=Principal(key="acme", policy="onprem"))
    assert router._admissions == before
    assert router._admissions[("main", ("onprem",))] is before[("main", ("onprem",))]


def test_a_policys_context_floor_is_a_policy_refusal_not_a_prompt_too_long() -> None:
    """A client trims its prompt on ``context_length_exceeded``: a floor no candidate reaches is not that."""
    plan = decide(build({"huge": {"min_context": 10_000_000}}), narrow="huge")
    assert plan.candidates == [] and plan.left_out() == []
    refusal = plan.refusal()
    assert isinstance(refusal, PolicyViolation) and refusal.code != "context_length_exceeded"
    assert "is under min_context 10000000 of policy 'huge'" in refusal.message


def test_policy_terms_that_match_nothing_in_the_catalog_are_named() -> None:
    """A typo in an allow list admits nothing; in a deny list it denies nothing, which is worse: both are said,
    with the term meant. A deny term far from every organisation may be on purpose, and is left alone."""
    from polyroute.routing.policy import policy_cautions

    policies = {"eu": cfg.PolicyConfig(origins_allow=["Mistal", "FR", "ZZ", "openai"],
                                       origins_deny=["deepsek", "xAI", "CN"], licences=["apache2", "MIT"])}
    said = policy_cautions(policies, load_catalog().families.values())
    assert len(said) == 4
    assert said[0].startswith("policies.eu.origins_allow: 'Mistal' matches no organisation of the catalog (did "
                              "you mean 'Mistral AI'?)") and said[0].endswith("it admits no model")
    assert said[1].startswith("policies.eu.origins_allow: 'ZZ' is the country of no family") and "CN" in said[1]
    assert said[2] == ("policies.eu.origins_deny: 'deepsek' matches no organisation of the catalog (did you mean "
                       "'DeepSeek'?): it denies nothing")
    assert said[3].startswith("policies.eu.licences: 'apache2' is no licence of the catalog (did you mean "
                              "'Apache-2.0'?)")
    assert policy_cautions({"ok": cfg.PolicyConfig(origins_allow=["US", "anthropic"], licences=["mit"])},
                           load_catalog().families.values()) == []
