"""Figures per scenario, the goals they are held to, and the markdown report."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.failover.load import Load
from bench.failover.scenarios import (
    FIRST_TOKEN_TIMEOUT,
    HEADERS_TIMEOUT,
    HEDGE_AFTER,
    STALL_TIMEOUT,
    Scenario,
    sibling_of,
)
from bench.stats import summarize_ms

SLACK = 0.050  # the goal: the next token within the fault's budget plus 50 ms


def summarize(load: Load) -> dict[str, Any]:
    reads = load.reads
    ok = [r for r in reads if r.ok]
    failures = Counter(r.error or f"HTTP {r.status}" for r in reads if not r.ok)
    return {
        "requests": len(reads),
        "seconds": round(load.seconds, 2),
        "success_pct": 100.0 * len(ok) / len(reads) if reads else 0.0,
        "ttft_ms": summarize_ms([r.ttft for r in reads if r.ttft is not None]),
        "total_ms": summarize_ms([r.total for r in reads]),
        "max_gap_ms": summarize_ms([r.max_gap for r in reads]),
        "attempts_mean": sum(r.attempts for r in reads) / len(reads) if reads else 0.0,
        "rescued": sum(r.estimated for r in reads),
        "failures": dict(failures),
        "answered_by": dict(Counter(r.model for r in ok)),
    }


def goal(s: Scenario, fig: dict[str, Any]) -> tuple[bool, str]:
    """100% success (every route has a healthy fallback), and the next token within budget + 50 ms."""
    if fig["success_pct"] < 100.0:
        return False, f"{fig['success_pct']:.1f}% ok"
    if s.sibling and set(fig.get("answered_by") or {}) != {sibling_of(s)}:
        return False, f"answered by {fig.get('answered_by')}, not only the sibling on the same backend"
    limit_ms = (s.budget + SLACK) * 1000
    if s.where == "before":
        worst = fig["ttft_ms"].get("max", 0.0)
        return worst <= limit_ms, f"first token ≤ {limit_ms:.0f} ms (max {worst:.0f})"
    if s.where == "mid":
        worst = fig["max_gap_ms"].get("max", 0.0)
        return worst <= limit_ms, f"token gap ≤ {limit_ms:.0f} ms (max {worst:.0f})"
    return True, "baseline"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(run: dict[str, Any], chosen: list[Scenario]) -> tuple[list[str], bool]:
    base = run["healthy"]
    lines = [
        "| scenario | fault | ok % | TTFT p50 | TTFT p99 | TTFT max | +TTFT p50 | total p50 | +total p50 "
        "| worst gap (max) | attempts | rescued | goal |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    passed = True
    for s in chosen:
        fig = run[s.name]
        ok, why = goal(s, fig)
        passed &= ok
        ttft, total = fig["ttft_ms"], fig["total_ms"]
        lines.append(
            f"| {s.name} | {s.what} | {fig['success_pct']:.1f} | {_ms(ttft.get('p50'))} | {_ms(ttft.get('p99'))} "
            f"| {_ms(ttft.get('max'))} | {_ms(ttft.get('p50', 0) - base['ttft_ms'].get('p50', 0))} "
            f"| {_ms(total.get('p50'))} | {_ms(total.get('p50', 0) - base['total_ms'].get('p50', 0))} "
            f"| {_ms(fig['max_gap_ms'].get('max'))} | {fig['attempts_mean']:.2f} | {fig['rescued']} "
            f"| {'PASS' if ok else 'FAIL'}: {why} |"
        )
    return lines, passed


def markdown(doc: dict[str, Any], chosen: list[Scenario]) -> tuple[str, bool]:
    m, v, load = doc["machine"], doc["versions"], doc["load"]
    out = [
        "# Failover under faults",
        "",
        f"Measured {doc['date']} on {m['cpu_model']} ({m['cpus_usable']} usable of {m['cpu_count']} CPUs, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}), Python {v['python']}, polyroute {v['polyroute_git_sha']}"
        f"{' (tree dirty)' if v.get('polyroute_tree_dirty') else ''}; load average at start "
        f"{', '.join(str(x) for x in m['loadavg_at_start'])} (the machine may be shared: a goal missed by a few "
        "ms on one request is worth a rerun before a conclusion).",
        "",
        f"Load per scenario and mode: {load['requests']} streamed requests, {load['concurrency']} in flight, "
        f"at most {load['time_limit_s']:.0f} s; everything on loopback. Route limits: first_token_timeout = "
        f"{FIRST_TOKEN_TIMEOUT} s, stall_timeout = {STALL_TIMEOUT} s, backend timeout = {HEADERS_TIMEOUT} s, "
        f"hedge_after = {HEDGE_AFTER} s where hedged. Each route: the faulty candidate, then a healthy one "
        "(8 tokens, 10 ms apart). Times in milliseconds; + columns are against the healthy baseline.",
        "",
        "Goal: 100% success (every route has a healthy fallback); the first token (faults before it) or the next "
        "token (faults mid-stream) within the fault's budget (first_token_timeout, stall_timeout or hedge_after; "
        "0 for faults that announce themselves) + 50 ms, on the worst request; a rescued stream reads as one "
        "answer (counted as success only when the text is whole, one id, ending in [DONE]).",
        "",
    ]
    passed = True
    titles = {
        "meets": "## Every request meets the fault (breakers never open: the cost of failover itself)",
        "breakers": "## Default breakers (the fault is learnt; the dead candidate gets one probe per 5 s)",
    }
    for mode, run in doc["runs"].items():
        lines, ok = table(run, chosen)
        passed &= ok
        out += [titles.get(mode, f"## {mode}"), "", *lines, ""]
        failing = {s.name: run[s.name]["failures"] for s in chosen if run[s.name]["failures"]}
        if failing:
            out += [f"Failures: `{failing}`", ""]
    out += [f"Overall: {'PASS' if passed else 'FAIL'}.", ""]
    return "\n".join(out), passed
