"""From raw results to figures, PASS/FAIL checks and the two result files.

Overheads are differences of percentiles between a target and the direct
baseline measured in the same run (target p50 - direct p50, and so on). Ratios
compare figures from the same run only.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.markdown import render
from bench.plan import CHAT, OWN_CORE, SATURATE, STREAM
from bench.stats import difference, ratio

CHECK_CONCURRENCY = 64


def _scenario(results: dict[str, Any], target: str, name: str) -> dict[str, Any] | None:
    r = results["targets"].get(target, {}).get("scenarios", {}).get(name)
    return r if isinstance(r, dict) and "failed" not in r else None


def _pct(r: dict[str, Any] | None, key: str, q: str) -> float | None:
    value = (r or {}).get(key, {}).get(q)
    return float(value) if isinstance(value, (int, float)) else None


def _per_concurrency(
    results: dict[str, Any], kind: str, key: str, placement: str = ""
) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    plan = results["plan"]
    levels = plan.get("own_core_concurrency", ()) if placement else plan[f"{kind}_concurrency"]
    suffix = f"-{placement}" if placement else ""
    for target in results["targets"]:
        rows: dict[str, dict[str, Any]] = {}
        for c in levels:
            r = _scenario(results, target, f"{kind}-c{c}{suffix}")
            if r is None:
                continue
            base = _scenario(results, "direct", f"{kind}-c{c}{suffix}")
            rows[str(c)] = {
                "rps": r["rps"],
                "p50": _pct(r, key, "p50"),
                "p99": _pct(r, key, "p99"),
                "overhead_p50": difference(_pct(r, key, "p50"), _pct(base, key, "p50")),
                "overhead_p99": difference(_pct(r, key, "p99"), _pct(base, key, "p99")),
                "errors": r["errors"],
                "error_rate": r["error_rate"],
                "gateway_cpu_ms_per_req": r.get("gateway_cpu_ms_per_req"),
            }
        if rows:
            out[target] = rows
    return out


def _saturation(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for target, t in results["targets"].items():
        runs = [(c, _scenario(results, target, f"{SATURATE}-c{c}")) for c in results["plan"]["saturate_concurrency"]]
        done = [(c, r) for c, r in runs if r is not None]
        if not done:
            continue
        c, best = max(done, key=lambda cr: float(cr[1]["rps"]))
        workers = int(t.get("workers") or 0)
        out[target] = {
            "rps": best["rps"],
            "rps_per_worker": best["rps"] / workers if workers else None,
            "concurrency": c,
            "workers": workers,
            "p50": _pct(best, "latency_ms", "p50"),
            "p99": _pct(best, "latency_ms", "p99"),
            "errors": best["errors"],
            "gateway_cpu_ms_per_req": best.get("gateway_cpu_ms_per_req"),
            "gateway_cpu_util": best.get("gateway_cpu_util"),
            "upstream_cpu_util": best.get("upstream_cpu_util"),
            "loadgen_cpu_util": _loadgen_util(best),
            "instrument_cpu_ms_per_req": _instrument_cost(best),
            "tools": best.get("tools", "python"),  # runs from before bench.native used the Python tools
        }
    return out


def _loadgen_util(run: dict[str, Any]) -> float | None:
    """Cores the load generator kept busy over its run (warm-up and window)."""
    cpu, wall = run.get("loadgen_cpu_s"), (run.get("warmup_s") or 0) + (run.get("window_s") or 0)
    return round(cpu / wall, 3) if cpu is not None and wall else None


def _instrument_cost(run: dict[str, Any]) -> float | None:
    """CPU ms the load generator and the upstream spent per request answered."""
    gen, up = run.get("loadgen_cpu_ms_per_req"), run.get("upstream_cpu_ms_per_req")
    return round(gen + up, 4) if gen is not None and up is not None else None


def workers_ceiling(results: dict[str, Any], sat: dict[str, dict[str, Any]]) -> float | None:
    """The best 2-worker / 1-worker ratio this machine allows: the cores left for two workers
    beside the load generator and the upstream, over the cores one worker used."""
    w1, w2 = sat.get("polyroute", {}), sat.get("polyroute-w2", {})
    cpus = results.get("machine", {}).get("cpus_usable") or 0
    one, up, gen = w1.get("gateway_cpu_util"), w2.get("upstream_cpu_util"), w2.get("loadgen_cpu_util")
    if not cpus or not one or up is None or gen is None:
        return None
    return round(min(2.0, (float(cpus) - float(up) - float(gen)) / float(one)), 2)


def _paired(results: dict[str, Any], gateway: str = "polyroute") -> dict[str, dict[str, Any]]:
    """Per scenario: the median over rounds of ``gateway`` minus direct, each round measured side by side."""
    out: dict[str, dict[str, Any]] = {}
    for name, runs in (results.get("paired") or {}).items():
        if not isinstance(runs, dict) or "direct" not in runs or gateway not in runs:
            continue
        key = "ttft_ms" if name.startswith(STREAM) else "latency_ms"
        pairs = [(d, p) for d, p in zip(runs["direct"], runs[gateway], strict=False)
                 if "failed" not in d and "failed" not in p]
        if not pairs:
            continue
        row: dict[str, Any] = {"rounds": len(pairs), "metric": key}
        for q in ("p50", "p99"):
            diffs = [difference(_pct(p, key, q), _pct(d, key, q)) for d, p in pairs]
            known = [x for x in diffs if x is not None]
            row[f"overhead_{q}"] = statistics.median(known) if known else None
            row[f"each_{q}"] = [round(x, 3) if x is not None else None for x in diffs]
        row["direct_p50"] = [_pct(d, key, "p50") for d, _ in pairs]
        row["polyroute_p50"] = [_pct(p, key, "p50") for _, p in pairs]
        row["errors"] = sum(int(p.get("errors", 0)) for _, p in pairs)
        cpu = [p["gateway_cpu_ms_per_req"] for _, p in pairs if p.get("gateway_cpu_ms_per_req") is not None]
        row["gateway_cpu_ms_per_req"] = statistics.median(cpu) if cpu else None
        out[name] = row
    return out


def _paired_workers(results: dict[str, Any]) -> dict[str, Any]:
    """Saturation with one worker and two in alternating rounds: each round's ratio, and their median."""
    for name, runs in (results.get("paired_workers") or {}).items():
        if not isinstance(runs, dict) or "polyroute-w2" not in runs:
            continue
        pairs = [(one, two) for one, two in zip(runs["polyroute"], runs["polyroute-w2"], strict=False)
                 if "failed" not in one and "failed" not in two]
        each = [ratio(two.get("rps"), one.get("rps")) for one, two in pairs]
        known = [x for x in each if x is not None]
        if not known:
            continue
        cpu = [ratio(two.get("gateway_cpu_ms_per_req"), one.get("gateway_cpu_ms_per_req")) for one, two in pairs]
        cpu_known = [x for x in cpu if x is not None]
        return {
            "scenario": name,
            "rounds": len(pairs),
            "one_rps": [one.get("rps") for one, _ in pairs],
            "two_rps": [two.get("rps") for _, two in pairs],
            "each": [round(x, 3) if x is not None else None for x in each],
            "ratio": statistics.median(known),
            "cpu_per_req": statistics.median(cpu_known) if cpu_known else None,
            "errors": sum(int(one.get("errors", 0)) + int(two.get("errors", 0)) for one, two in pairs),
        }
    return {}


def _error_rates(results: dict[str, Any]) -> dict[str, float]:
    out = {}
    for target, t in results["targets"].items():
        scenarios = [r for r in t.get("scenarios", {}).values() if "failed" not in r]
        total = sum(r["ok"] + r["errors"] for r in scenarios)
        if total:
            out[target] = sum(r["errors"] for r in scenarios) / total
    return out


def figures(results: dict[str, Any]) -> dict[str, Any]:
    sat = _saturation(results)
    w1, w2 = sat.get("polyroute", {}).get("rps"), sat.get("polyroute-w2", {}).get("rps")
    return {
        "chat_latency": _per_concurrency(results, CHAT, "latency_ms"),
        "stream_ttft": _per_concurrency(results, STREAM, "ttft_ms"),
        "chat_latency_own_core": _per_concurrency(results, CHAT, "latency_ms", OWN_CORE),
        "stream_ttft_own_core": _per_concurrency(results, STREAM, "ttft_ms", OWN_CORE),
        "saturation": sat,
        "memory": {
            name: {k: t.get(k) for k in ("idle_rss_mb", "peak_rss_mb", "startup_s")}
            for name, t in results["targets"].items()
            if "peak_rss_mb" in t
        },
        "error_rate": _error_rates(results),
        "paired": _paired(results),
        "paired_aiohttp": _paired(results, "polyroute-aiohttp"),
        "paired_workers": _paired_workers(results),
        "workers2_ratio": ratio(w2, w1),
        "workers2_ceiling": workers_ceiling(results, sat),
        "workers2_cpu_per_req": ratio(
            sat.get("polyroute-w2", {}).get("gateway_cpu_ms_per_req"),
            sat.get("polyroute", {}).get("gateway_cpu_ms_per_req"),
        ),
    }


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    op: str  # ">=" or "<="
    threshold: float
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.value is None or math.isnan(self.value):
            return "SKIP"
        ok = self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold
        return "PASS" if ok else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "verdict": self.verdict}


def checks(results: dict[str, Any], figs: dict[str, Any]) -> list[Check]:
    c = str(CHECK_CONCURRENCY)
    chat = {t: rows.get(c, {}) for t, rows in figs["chat_latency"].items()}
    ttft = figs["stream_ttft"].get("polyroute", {}).get(c, {})
    own = figs.get("chat_latency_own_core", {}).get("polyroute", {}).get(c, {})
    own_ttft = figs.get("stream_ttft_own_core", {}).get("polyroute", {}).get(c, {})
    own_note = "the gateway on a CPU of its own, the load generator and upstream on the other (direct: the same)"
    pr, direct, llm = chat.get("polyroute", {}), chat.get("direct", {}), chat.get("litellm", {})
    mem = figs["memory"]
    cpus = results.get("machine", {}).get("cpus_usable") or 0
    core_note = (
        f"{cpus} CPUs here, shared by the load generator, the upstream and every gateway worker"
        if cpus and cpus < 4
        else ""
    )
    if figs.get("workers2_ceiling") is not None:
        core_note += f"; the cores left beside them allow at most {figs['workers2_ceiling']:.2f}x"
    seq_cpu = figs.get("workers2_cpu_per_req")
    workers2, workers2_note = figs["workers2_ratio"], core_note
    if seq_cpu is not None:
        workers2_note += f"; CPU per request, 2 workers / 1: {seq_cpu:.2f}"
    pw = figs.get("paired_workers") or {}
    if pw.get("ratio") is not None:
        each = " / ".join(f"{x:.2f}" if x is not None else "—" for x in pw["each"])
        seq = f"{workers2:.2f}" if workers2 is not None else "—"
        if seq_cpu is not None:
            seq += f" (CPU per request, 2 workers / 1: {seq_cpu:.2f})"
        cpu = f"; CPU per request, 2 workers / 1: {pw['cpu_per_req']:.2f}" if pw.get("cpu_per_req") else ""
        workers2 = pw["ratio"]
        workers2_note = (f"median of {pw['rounds']} rounds of {pw['scenario']}, one worker and two taking turns "
                         f"({each}){cpu}; sequential run: {seq}; {core_note}")
    at = f"{CHECK_CONCURRENCY} concurrent, non-streaming, {results['plan']['latency_ms']:g} ms upstream"
    paired = figs.get("paired", {})

    def latency(name: str, row: dict[str, Any], q: str, where: str = "") -> tuple[float | None, str]:
        """The paired figure when there is one (the median of alternating rounds), else the sequential one."""
        p = paired.get(name)
        seq = row.get(f"overhead_{q}")
        if p is None or p.get(f"overhead_{q}") is None:
            return seq, where
        each = " / ".join(_f(x) for x in p[f"each_{q}"])
        note = f"median of {p['rounds']} rounds side by side with direct ({each}); sequential run: {_f(seq)}"
        return p[f"overhead_{q}"], f"{where}; {note}" if where else note

    chat_p50, chat_p50_note = latency(f"{CHAT}-c{c}", pr, "p50")
    chat_p99, chat_p99_note = latency(f"{CHAT}-c{c}", pr, "p99")
    ttft_p50, ttft_note = latency(f"{STREAM}-c{c}", ttft, "p50")
    own_p50, own_p50_note = latency(f"{CHAT}-c{c}-{OWN_CORE}", own, "p50", own_note)
    own_p99, own_p99_note = latency(f"{CHAT}-c{c}-{OWN_CORE}", own, "p99", own_note)
    own_ttft_p50, own_ttft_note = latency(f"{STREAM}-c{c}-{OWN_CORE}", own_ttft, "p50", own_note)
    return [
        Check(f"polyroute throughput / direct ({at})", ratio(pr.get("rps"), direct.get("rps")), ">=", 0.9),
        Check(f"polyroute throughput / LiteLLM ({at})", ratio(pr.get("rps"), llm.get("rps")), ">=", 10.0),
        Check(f"polyroute errors ({at})", pr.get("errors"), "<=", 0.0),
        Check(f"polyroute added latency p50, ms ({at})", chat_p50, "<=", 1.0, chat_p50_note),
        Check(f"polyroute added latency p99, ms ({at})", chat_p99, "<=", 5.0, chat_p99_note),
        Check(
            f"polyroute stream TTFT overhead p50, ms ({CHECK_CONCURRENCY} concurrent)", ttft_p50, "<=", 1.0, ttft_note
        ),
        Check(f"polyroute added latency p50, ms ({at}), own core", own_p50, "<=", 1.0, own_p50_note),
        Check(f"polyroute added latency p99, ms ({at}), own core", own_p99, "<=", 5.0, own_p99_note),
        Check(
            f"polyroute stream TTFT overhead p50, ms ({CHECK_CONCURRENCY} concurrent), own core",
            own_ttft_p50,
            "<=",
            1.0,
            own_ttft_note,
        ),
        Check(
            "polyroute peak RSS / LiteLLM peak RSS",
            ratio(mem.get("polyroute", {}).get("peak_rss_mb"), mem.get("litellm", {}).get("peak_rss_mb")),
            "<=",
            0.5,
        ),
        Check("polyroute saturated throughput, 2 workers / 1 worker", workers2, ">=", 1.7, workers2_note),
        Check(
            "local model tokens/s through polyroute / llama-cpp-python directly",
            results.get("llamacpp", {}).get("ratio"),
            ">=",
            0.95,
        ),
    ]


def _f(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def finish(results: dict[str, Any]) -> dict[str, Any]:
    figs = figures(results)
    results["figures"] = figs
    results["checks"] = [c.as_dict() for c in checks(results, figs)]
    return results


def write(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "latest.json", out_dir / "latest.md"
    tmp = out_dir / "latest.json.tmp"
    tmp.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(json_path)
    tmp = out_dir / "latest.md.tmp"
    tmp.write_text(render(results))
    tmp.replace(md_path)
    return json_path, md_path
