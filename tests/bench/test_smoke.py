"""Smoke benchmark: the harness runs tiny (concurrency 4, a few dozen requests per
scenario, a couple of seconds) and its numbers are sane. No LiteLLM here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import markdown, procs, runner
from bench.plan import OWN_CORE, Plan
from bench.targets import Polyroute, Upstreams

PLAN = Plan.smoke()


def _assert_sane(target: dict[str, Any], plan: Plan) -> None:
    assert "failed" not in target, target.get("failed")
    scenarios = target["scenarios"]
    pinned = procs.placement_cpus() is not None  # own-core scenarios need 2 CPUs
    assert set(scenarios) == {s.name for s in plan.scenarios() if pinned or s.placement != OWN_CORE}
    for name, r in scenarios.items():
        assert "failed" not in r, (name, r)
        assert r["errors"] == 0, (name, r["error_samples"])
        assert 0 < r["ok"] <= plan.max_requests, (name, r["ok"])
        assert r["rps"] > 0, name
    # The upstream never answers before its fixed latency, so nothing can be faster than it.
    chat = scenarios["chat-c4"]["latency_ms"]
    assert chat["min"] >= plan.latency_ms
    assert chat["p50"] <= chat["p99"] <= chat["max"]
    stream = scenarios["stream-c4"]
    assert stream["ttft_ms"]["min"] >= plan.latency_ms
    assert stream["latency_ms"]["min"] >= plan.latency_ms + (plan.tokens - 1) * plan.token_interval_ms
    assert stream["stream_usage_seen"] == 1.0


def test_direct_harness_measures_sane_numbers(tmp_path: Path) -> None:
    results = runner.run_all(PLAN, ["direct"], tmp_path, command="smoke", llamacpp_hook=False)
    _assert_sane(results["targets"]["direct"], PLAN)
    figures = results["figures"]
    assert figures["chat_latency"]["direct"]["4"]["overhead_p50"] == 0.0
    assert figures["saturation"]["direct"]["rps"] > 0
    assert results["machine"]["cpu_count"] >= 1 and results["versions"]["python"]
    for when in ("start", "end"):
        jitter = results["machine"][f"jitter_at_{when}"]
        assert jitter["naps"] > 10 and 0 <= jitter["p50_late_ms"] <= jitter["worst_late_ms"]
    assert {c["verdict"] for c in results["checks"]} == {"SKIP"}  # nothing to compare without the gateways
    text = markdown.render(results)
    assert "| 4 | direct |" in text and "## Targets" in text and "- Host jitter (" in text


def test_polyroute_through_the_harness(tmp_path: Path) -> None:
    assert Polyroute().prepare(tmp_path) is None  # this repository always has `polyroute serve`
    results = runner.run_all(PLAN, ["direct", "polyroute"], tmp_path, command="smoke", llamacpp_hook=False)
    _assert_sane(results["targets"]["polyroute"], PLAN)
    assert results["figures"]["memory"]["polyroute"]["peak_rss_mb"] > 0
    assert results["figures"]["chat_latency"]["polyroute"]["4"]["overhead_p50"] is not None
    paired = results["figures"]["paired"]["chat-c4"]
    assert paired["rounds"] == PLAN.paired_rounds and paired["errors"] == 0
    assert paired["overhead_p50"] == paired["polyroute_p50"][0] - paired["direct_p50"][0]
    assert results["figures"]["paired"]["stream-c4"]["metric"] == "ttft_ms"
    assert "## Side by side: direct and polyroute" in markdown.render(results)
    if procs.placement_cpus() is None:
        return
    own = results["figures"]["chat_latency_own_core"]["polyroute"]["4"]
    assert own["overhead_p50"] is not None and own["errors"] == 0
    assert results["figures"]["stream_ttft_own_core"]["polyroute"]["4"]["overhead_p50"] is not None
    assert "## Non-streaming, the gateway on its own core" in markdown.render(results)


def test_one_worker_and_two_in_alternating_rounds(tmp_path: Path) -> None:
    plan = PLAN.with_(chat_concurrency=(), stream_concurrency=(), own_core_concurrency=())
    results = runner.run_all(plan, ["direct", "polyroute", "polyroute-w2"], tmp_path, command="smoke",
                             llamacpp_hook=False)
    pw = results["figures"]["paired_workers"]
    assert pw["scenario"] == "saturate-c4" and pw["rounds"] == plan.paired_rounds and pw["errors"] == 0
    assert pw["each"][0] == round(pw["two_rps"][0] / pw["one_rps"][0], 3) and pw["ratio"] > 0
    check = next(c for c in results["checks"] if c["name"].startswith("polyroute saturated throughput"))
    assert check["value"] == pw["ratio"] and "taking turns" in check["note"]
    assert "### One worker and two in alternating rounds" in markdown.render(results)


def test_polyroute_on_aiohttp_beside_polyroute_in_alternating_rounds(tmp_path: Path) -> None:
    target = Polyroute(client="aiohttp")
    assert target.name == "polyroute-aiohttp" and 'upstream_client = "aiohttp"' in target.config(
        1, Upstreams({"slow": 2}))
    assert target.prepare(tmp_path) is None  # the aiohttp extra is installed with the test extras here
    plan = PLAN.with_(stream_concurrency=(), saturate_concurrency=(), own_core_concurrency=())
    results = runner.run_all(plan, ["direct", "polyroute", "polyroute-aiohttp"], tmp_path, command="smoke",
                             llamacpp_hook=False)
    for name in ("polyroute", "polyroute-aiohttp"):
        assert "failed" not in results["targets"][name], results["targets"][name].get("failed")
        assert results["targets"][name]["scenarios"]["chat-c4"]["errors"] == 0
    aio = results["figures"]["paired_aiohttp"]["chat-c4"]
    assert aio["rounds"] == plan.paired_rounds and aio["errors"] == 0
    assert aio["overhead_p50"] == aio["polyroute_p50"][0] - aio["direct_p50"][0]
    assert "## Side by side: direct and polyroute-aiohttp" in markdown.render(results)
