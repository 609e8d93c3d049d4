"""results/latest.md: the figures of one run as tables a person reads."""

from __future__ import annotations

import math
from typing import Any

_NONE = "—"


def _f(value: Any, fmt: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _NONE
    return format(value, fmt)


def _signed(value: Any) -> str:
    return _f(value, "+.2f")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _header(results: dict[str, Any]) -> list[str]:
    m, v, p = results["machine"], results["versions"], results["plan"]
    sha = (v.get("polyroute_git_sha") or "unknown")[:12] + (" (dirty tree)" if v.get("polyroute_tree_dirty") else "")
    gw = ", ".join(f"{k} {x}" for k, x in v.get("gateway_env", {}).items())
    ll = ", ".join(f"{k} {x}" for k, x in v.get("litellm_env", {}).items()) or "not installed"
    return [
        f"# polyroute benchmark, {results['date']}",
        "",
        f"- Machine: {m['cpu_model']}, {m['cpu_count']} CPUs ({m['cpus_usable']} usable), "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}; load average {m['loadavg_at_start']} at start, "
        f"{m.get('loadavg_at_end')} at end.",
        _jitter_line(m),
        f"- Versions: Python {v['python']}; polyroute {v.get('polyroute') or '?'} at {sha}; {gw}.",
        f"- LiteLLM venv: {ll}.",
        f"- Upstream: {p['latency_ms']:g} ms per answer; streams send {p['tokens']} tokens, the first after "
        f"{p['latency_ms']:g} ms, then one every {p['token_interval_ms']:g} ms. Saturation uses a second "
        "upstream that answers at once.",
        f"- Each scenario: {p['warmup']:g} s warm-up, then {p['duration']:g} s or {p['max_requests']} requests; "
        "one keep-alive connection per concurrent client; one load-generator process.",
        _tools_line(results),
        "- Overhead = target minus direct, same percentile, same run. Gateway CPU ms/req = CPU time of the "
        "gateway's process tree per completed request: it moves less with other load on the machine than req/s.",
        f"- Command: `{results['command']}`",
        "",
    ]


def _jitter_line(m: dict[str, Any]) -> str:
    """How late an idle process woke from 1 ms naps, at the start and at the end of the run."""
    parts = []
    for when in ("start", "end"):
        j = m.get(f"jitter_at_{when}")
        if j:
            parts.append(f"at {when} {j['late_over_3ms']} of {j['naps']} naps woke over 3 ms late, "
                         f"the worst {j['worst_late_ms']} ms late")
    if not parts:
        return "- Host jitter: not measured."
    return ("- Host jitter (an idle process napping 1 ms at a time; what the host's taking the CPUs away "
            "adds to every process, and to p99s): " + "; ".join(parts) + ".")


def _tools_line(results: dict[str, Any]) -> str:
    tools = results.get("tools")
    if tools is None:  # runs from before bench.native: Python everywhere
        return "- Tools: bench/loadgen.py against bench/upstream.py in every scenario."
    sat, chat = tools["saturate"], tools["chat"]
    pause = results["plan"].get("coalesce_us", 0)
    why = "." if sat["loadgen"] == chat["loadgen"] else " (C: little CPU per request, so the cores go to the gateway"
    if why != ".":
        why += f"; wakeups batched by pauses of up to {pause} µs)." if pause else ")."
    return (
        f"- Tools: chat and stream scenarios: {chat['loadgen']} against {chat['upstream']}; "
        f"saturation: {sat['loadgen']} against {sat['upstream']}{why}"
    )


def _checks(results: dict[str, Any]) -> list[str]:
    rows = [
        [c["name"], _f(c["value"], ".3g"), f"{c['op']} {c['threshold']:g}", f"**{c['verdict']}**", c.get("note", "")]
        for c in results["checks"]
    ]
    return ["## Targets", "", *_table(["check", "value", "target", "verdict", "note"], rows), ""]


def _latency(results: dict[str, Any], key: str, title: str, what: str, intro: str = "") -> list[str]:
    data = results["figures"].get(key) or {}
    if not data:
        return []
    concs = sorted({int(c) for rows in data.values() for c in rows})
    rows = []
    for c in concs:
        for target, by_c in data.items():
            r = by_c.get(str(c))
            if r is not None:
                rows.append(
                    [
                        str(c),
                        target,
                        _f(r["rps"], ".1f"),
                        _f(r["p50"]),
                        _f(r["p99"]),
                        _signed(r["overhead_p50"]),
                        _signed(r["overhead_p99"]),
                        str(r["errors"]),
                        _f(r["gateway_cpu_ms_per_req"], ".3f"),
                    ]
                )
    header = [
        "concurrency",
        "target",
        "req/s",
        f"{what} p50 ms",
        f"{what} p99 ms",
        "overhead p50 ms",
        "overhead p99 ms",
        "errors",
        "gateway CPU ms/req",
    ]
    return [f"## {title}", "", *([intro, ""] if intro else []), *_table(header, rows), ""]


_OWN_CORE = (
    "The same scenarios with the gateway's process on a CPU of its own and the load generator and the "
    "upstream on the other (direct: those two on that same CPU), as three machines would have it. Sharing "
    "two CPUs among three processes, a process that writes to a socket wakes its reader, which the "
    "scheduler often runs at once on the writer's CPU: the gateway then waits in the middle of a request."
)


def _paired(results: dict[str, Any], key: str = "paired", gateway: str = "polyroute") -> list[str]:
    data = results["figures"].get(key) or {}
    if not data:
        return []
    rows = []
    for name, r in data.items():
        rows.append([
            name,
            str(r["rounds"]),
            " / ".join(_f(x) for x in r["direct_p50"]),
            " / ".join(_f(x) for x in r["polyroute_p50"]),
            " / ".join(_signed(x) for x in r["each_p50"]),
            _signed(r["overhead_p50"]),
            _signed(r["overhead_p99"]),
            str(r["errors"]),
            _f(r["gateway_cpu_ms_per_req"], ".3f"),
        ])
    header = ["scenario", "rounds", "direct p50 ms", f"{gateway} p50 ms", "overhead p50 per round ms",
              "overhead p50 ms (median)", "overhead p99 ms (median)", "errors", "gateway CPU ms/req"]
    if gateway != "polyroute":
        intro = (f"The same alternating rounds, with {gateway} (polyroute on aiohttp's upstream client) taking "
                 "its turn beside direct and polyroute; for comparison only, not checked against the targets.")
    else:
        intro = ("The checked scenarios once more, direct and one polyroute worker taking turns within seconds of "
                 "each other, round after round (latency for chat, time to first token for streams). The "
                 "sequential tables above measure direct minutes before polyroute, while the host's speed "
                 "drifts; the targets are checked on these medians.")
    title = f"## Side by side: direct and {gateway} in alternating rounds"
    return [title, "", intro, "", *_table(header, rows), ""]


def _saturation(results: dict[str, Any]) -> list[str]:
    rows = [
        [
            target,
            str(r["workers"] or _NONE),
            str(r["concurrency"]),
            _f(r["rps"], ".0f"),
            _f(r["rps_per_worker"], ".0f"),
            _f(r["p50"]),
            _f(r["p99"]),
            str(r["errors"]),
            _f(r["gateway_cpu_ms_per_req"], ".3f"),
            _f(r["upstream_cpu_util"]),
            _f(r.get("loadgen_cpu_util")),
            _f(r.get("instrument_cpu_ms_per_req"), ".4f"),
            r.get("tools", "python"),
        ]
        for target, r in results["figures"]["saturation"].items()
    ]
    header = [
        "target",
        "workers",
        "best concurrency",
        "req/s",
        "req/s per worker",
        "p50 ms",
        "p99 ms",
        "errors",
        "gateway CPU ms/req",
        "upstream CPU (cores)",
        "loadgen CPU (cores)",
        "loadgen + upstream CPU ms/req",
        "tools",
    ]
    ratio = results["figures"]["workers2_ratio"]
    return [
        "## Saturation (upstream answers at once)",
        "",
        *_table(header, rows),
        "",
        f"polyroute 2 workers / 1 worker: {_f(ratio, '.2f')}x",
        "",
        *_paired_workers(results),
    ]


def _paired_workers(results: dict[str, Any]) -> list[str]:
    pw = results["figures"].get("paired_workers") or {}
    if not pw:
        return []
    header = ["scenario", "rounds", "1 worker req/s", "2 workers req/s", "2 / 1 per round", "2 / 1 (median)",
              "CPU per request 2 / 1 (median)", "errors"]
    row = [
        pw["scenario"],
        str(pw["rounds"]),
        " / ".join(_f(x, ".0f") for x in pw["one_rps"]),
        " / ".join(_f(x, ".0f") for x in pw["two_rps"]),
        " / ".join(_f(x) for x in pw["each"]),
        _f(pw["ratio"]),
        _f(pw["cpu_per_req"]),
        str(pw["errors"]),
    ]
    intro = ("Saturation once more with one worker and two taking turns, round after round, as for the latency "
             "checks: the runs above measure them a minute apart, and the host's speed drifts meanwhile. The "
             "2-worker check is made on this median.")
    return ["### One worker and two in alternating rounds", "", intro, "", *_table(header, [row]), ""]


def _memory(results: dict[str, Any]) -> list[str]:
    rows = [
        [t, _f(m["idle_rss_mb"], ".1f"), _f(m["peak_rss_mb"], ".1f"), _f(m["startup_s"], ".1f")]
        for t, m in results["figures"]["memory"].items()
    ]
    rates = results["figures"]["error_rate"]
    err = ", ".join(f"{t} {r:.4%}" for t, r in rates.items())
    return [
        "## Memory (process tree RSS, sampled from /proc every 100 ms)",
        "",
        *_table(["target", "idle RSS MiB", "peak RSS MiB", "startup s"], rows),
        "",
        f"Error rate over all scenarios: {err or _NONE}.",
        "",
    ]


def _notes(results: dict[str, Any]) -> list[str]:
    note = results.get("tools", {}).get("note")
    out = [f"- Saturation tools: {note.splitlines()[0]}"] if note else []
    for name, t in results["targets"].items():
        for key in ("skipped", "failed"):
            if key in t:
                out.append(f"- {name}: {key}: {t[key].splitlines()[0]}")
        for sc, r in t.get("scenarios", {}).items():
            if "failed" in r:
                out.append(f"- {name} {sc}: failed: {r['failed']}")
            elif r.get("error_samples"):
                out.append(f"- {name} {sc}: {r['errors']} errors, e.g. {r['error_samples'][0][:200]}")
    llama = results.get("llamacpp", {})
    if "ratio" in llama:
        out.append(
            f"- llama.cpp path ({llama['model']}, {llama['threads']} thread, {llama['max_tokens']} tokens, "
            f"median of {llama['runs']} alternating runs): direct {llama['direct_tokens_per_s']} tokens/s, "
            f"through polyroute {llama['polyroute_tokens_per_s']} tokens/s, ratio {llama['ratio']}; "
            f"same text on both sides: {llama['same_text']}"
        )
    else:
        out.append(f"- llama.cpp path: {llama.get('skipped') or llama.get('failed') or 'not run'}")
    return ["## Notes", "", *out, ""]


def render(results: dict[str, Any]) -> str:
    lines = [
        *_header(results),
        *_checks(results),
        *_latency(results, "chat_latency", "Non-streaming, slow upstream: latency and added latency", "latency"),
        *_latency(results, "stream_ttft", "Streaming: time to first token and its overhead", "TTFT"),
        *_latency(results, "chat_latency_own_core", "Non-streaming, the gateway on its own core", "latency",
                  _OWN_CORE),
        *_latency(results, "stream_ttft_own_core", "Streaming, the gateway on its own core", "TTFT"),
        *_paired(results),
        *_paired(results, "paired_aiohttp", "polyroute-aiohttp"),
        *_saturation(results),
        *_memory(results),
        *_notes(results),
    ]
    return "\n".join(lines)
