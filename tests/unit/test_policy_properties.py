"""Properties: no decision and no failover ever reaches a model its policy excludes.

Fleets are drawn from the shipped catalog (and models with no family at all),
policies and requests at random. The oracle below states each constraint
directly from the config, independently of ``polyroute.routing.policy``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.errors import AllAttemptsFailed, PolicyViolation
from polyroute.fleet import Fleet, ModelEntry
from polyroute.gateway import Gateway, RequestContext
from polyroute.routing import Plan, Principal, Router
from polyroute.types import ChatRequest

CATALOG = load_catalog()
FAMILIES = sorted(f.id for f in CATALOG.families.values() if not f.embeds)  # chat routes: no embedding models
ORIGIN_TERMS = ["CN", "US", "us", "FR", "openai", "Meta", "deepseek", "Alibaba", "anthropic", "zz"]
LICENCES = ["MIT", "apache-2.0", "proprietary", "llama3.3", "modified-MIT", "llama4"]

CONSTRAINTS: dict[str, st.SearchStrategy[Any]] = {
    "locality": st.sampled_from(["local", "any"]),
    "origins_allow": st.lists(st.sampled_from(ORIGIN_TERMS), max_size=3),
    "origins_deny": st.lists(st.sampled_from(ORIGIN_TERMS), max_size=2),
    "licences": st.lists(st.sampled_from(LICENCES), max_size=3),
    "open_weights": st.booleans(),
    "max_price_per_mtok": st.sampled_from([0, 0.3, 0.5, 1.0, 2.5, 10.0]),
    "min_context": st.sampled_from([1000, 8192, 131072, 200000, 1_000_000]),
}


@st.composite
def policies_st(draw: st.DrawFn) -> dict[str, Any]:
    """A policy of one to three constraints (more would rarely let anything through)."""
    keys = draw(st.lists(st.sampled_from(sorted(CONSTRAINTS)), min_size=1, max_size=3, unique=True))
    return {k: draw(CONSTRAINTS[k]) for k in keys}


model_st = st.fixed_dictionaries(
    {
        "backend": st.sampled_from(["box", "hosted"]),
        "family": st.one_of(st.none(), st.sampled_from(FAMILIES)),
        # Behaviours of the fake backend: most fail so that failover walks far.
        "upstream": st.sampled_from(["error-503", "error-503", "error-500", "error-429", "blocked", "echo"]),
    },
    optional={"input_per_mtok": st.sampled_from([0.1, 3.0]), "output_per_mtok": st.sampled_from([0.2, 12.0])},
)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    models = draw(st.lists(model_st, min_size=1, max_size=10))
    names = [f"m{i}" for i in range(len(models))]
    policies = draw(st.dictionaries(st.sampled_from(["p1", "p2", "p3"]), policies_st(), min_size=1, max_size=3))
    pnames = sorted(policies)
    maybe_policy = st.one_of(st.none(), st.sampled_from(pnames))
    route: dict[str, Any] = {
        "models": draw(st.permutations(names)),
        "strategy": draw(st.sampled_from(["ordered", "cheapest", "fastest", "weighted"])),
        "max_attempts": 32,
    }
    route_policy = draw(maybe_policy)
    if route_policy is not None:
        route["policy"] = route_policy
    raw = {
        "backends": {"box": {"type": "fake"}, "hosted": {"type": "fake", "locality": "remote"}},
        "models": {n: {k: v for k, v in m.items() if v is not None} for n, m in zip(names, models, strict=True)},
        "policies": policies,
        "routes": {"r": route},
    }
    return {
        "raw": raw,
        "key_policy": draw(st.sampled_from(pnames)),
        "narrow": draw(maybe_policy),
        "tools": draw(st.booleans()),
        "words": draw(st.sampled_from([1, 100, 3000, 40000])),
        "max_tokens": draw(st.one_of(st.none(), st.sampled_from([16, 4096, 100000]))),
    }


def request(s: dict[str, Any], stream: bool = False) -> ChatRequest:
    body: dict[str, Any] = {"model": "r", "messages": [{"role": "user", "content": "word " * s["words"]}],
                            "stream": stream}
    if s["tools"]:
        body["tools"] = [{"type": "function", "function": {"name": "f"}}]
    if s["max_tokens"]:
        body["max_tokens"] = s["max_tokens"]
    return ChatRequest.from_json(body)


# --- the oracle -----------------------------------------------------------------------------


def origin_hit(term: str, e: ModelEntry) -> bool:
    assert e.organisation is not None and e.country is not None
    t = term.lower()
    return t == e.country.lower() if len(t) == 2 else t in e.organisation.lower()


def allowed(e: ModelEntry, p: cfg.PolicyConfig) -> bool:
    """Whether one policy, read straight from the config, lets ``e`` serve."""
    if p.locality == "local" and e.locality != "local":
        return False
    if p.origins_allow is not None or p.origins_deny:
        if e.organisation is None:
            return False
        if p.origins_allow is not None and not any(origin_hit(t, e) for t in p.origins_allow):
            return False
        if any(origin_hit(t, e) for t in p.origins_deny):
            return False
    if p.licences is not None and (e.licence is None or e.licence.lower() not in [x.lower() for x in p.licences]):
        return False
    if p.open_weights and e.open_weights is not True:
        return False
    if p.max_price_per_mtok is not None and (
        not e.price_known or (e.input_per_mtok + e.output_per_mtok) / 2 > p.max_price_per_mtok
    ):
        return False
    return p.min_context is None or (e.context_window is not None and e.context_window >= p.min_context)


def applying(s: dict[str, Any], config: cfg.Config) -> list[cfg.PolicyConfig]:
    named = {s["key_policy"], config.routes["r"].policy, s["narrow"]} - {None}
    return [config.policies[n] for n in named]


def plan_of(s: dict[str, Any]) -> tuple[Router, Plan]:
    config = cfg.parse(s["raw"], env={})
    router = Router(Fleet.build(config, CATALOG))
    plan = router.decide(router.fleet.routes["r"], request(s), Principal(key="k", policy=s["key_policy"]), s["narrow"])
    return router, plan


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_every_candidate_satisfies_every_policy_and_every_exclusion_has_a_reason(s: dict[str, Any]) -> None:
    router, plan = plan_of(s)
    config = router.fleet.config
    policies = applying(s, config)
    for entry in plan.candidates:
        assert all(allowed(entry, p) for p in policies), entry.name
    # Candidates and exclusions split the route exactly; an excluded model is excluded for a reason.
    route_names = sorted(config.routes["r"].models)
    assert sorted([e.name for e in plan.candidates] + [e.name for e, _ in plan.excluded]) == route_names
    for entry, reason in plan.excluded:
        assert reason
        if not all(allowed(entry, p) for p in policies):
            assert "policy '" in reason
    # Nothing the policy allows is excluded except for the request's own needs.
    needs = plan.needs
    assert needs is not None
    for entry, reason in plan.excluded:
        if all(allowed(entry, p) for p in policies):
            assert reason.startswith(("lacks tools", "context window")), reason
            too_small = entry.context_window is not None and needs.context_tokens > entry.context_window
            assert too_small or ("tools" in needs.capabilities and "tools" not in entry.capabilities)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_a_header_never_widens(s: dict[str, Any]) -> None:
    _, narrowed = plan_of(s)
    _, wide = plan_of({**s, "narrow": None})
    assert {e.name for e in narrowed.candidates} <= {e.name for e in wide.candidates}


async def run_through_gateway(s: dict[str, Any], stream: bool) -> tuple[list[str], list[str]]:
    """Serve the request for real (fake backends, the real Failover); return who was tried and the plan."""
    config = cfg.parse(s["raw"], env={})
    gateway = Gateway(Fleet.build(config, CATALOG))
    ctx = RequestContext(principal=Principal(key="k", policy=s["key_policy"]), narrow_policy=s["narrow"])
    req = request(s, stream)
    planned = [e.name for e in gateway.plan(req, ctx).candidates]
    try:
        if stream:
            chunks, report = gateway.stream(req, ctx)
            async for _ in chunks:
                pass
        else:
            _, report = await gateway.complete(req, ctx)
        attempts = report.attempts
    except AllAttemptsFailed as exc:
        attempts = exc.attempts
    return [a.model for a in attempts], planned


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.booleans())
def test_no_failover_sequence_ever_leaves_the_policy(s: dict[str, Any], stream: bool) -> None:
    config = cfg.parse(s["raw"], env={})
    fleet_models = Fleet.build(config, CATALOG).models
    policies = applying(s, config)
    try:
        tried, planned = asyncio.run(run_through_gateway(s, stream))
    except PolicyViolation:
        # Refused before anything was sent: then nothing in the route may serve.
        _, plan = plan_of(s)
        assert plan.candidates == []
        event("refused: no candidate qualifies")
        return
    assert tried, "a plan with candidates makes at least one attempt"
    event(f"attempts: {min(len(tried), 3)}{'+' if len(tried) >= 3 else ''}")
    event(f"some excluded: {'yes' if len(planned) < len(config.routes['r'].models) else 'no'}")
    for name in tried:
        assert name in planned
        assert all(allowed(fleet_models[name], p) for p in policies), name
