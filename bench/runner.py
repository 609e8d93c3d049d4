"""One benchmark run: start the fake upstreams, then each target in turn, drive every
scenario through a separate load-generator process, and collect the raw figures.

The saturation scenarios (and the instant upstream they use) run on the native
tools of bench.native when a C compiler is there, the others on the Python ones
(bench.loadgen, bench.upstream); ``results["tools"]`` says which measured what.

Targets run one after another (never at the same time) against the same
upstream processes. Every process is started inside an ExitStack and stopped on
return, on error and on Ctrl-C; SIGTERM is turned into the same unwinding.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench import llamacpp, loadgen, machine, native, procs, report, wire
from bench.plan import CHAT, OWN_CORE, SATURATE, STREAM, Plan, Scenario
from bench.targets import API_KEY, INSTANT, SLOW, Direct, LiteLLM, Polyroute, Running, Target, Upstreams

TARGETS = ("direct", "polyroute", "polyroute-w2", "litellm")
# Measured only when named: polyroute with aiohttp's upstream client instead of its own.
OPTIONAL_TARGETS = ("polyroute-aiohttp",)


def make_target(name: str) -> Target:
    if name == "direct":
        return Direct()
    if name == "litellm":
        return LiteLLM()
    if name == "polyroute":
        return Polyroute(1)
    if name == "polyroute-aiohttp":
        return Polyroute(1, client="aiohttp")
    if name.startswith("polyroute-w") and name[len("polyroute-w") :].isdigit():
        return Polyroute(int(name[len("polyroute-w") :]))
    raise ValueError(f"unknown target {name!r} (known: {', '.join(TARGETS + OPTIONAL_TARGETS)})")


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so the ExitStacks stop every child."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _python() -> str:
    return sys.executable


def _child_env() -> dict[str, str]:
    repo = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{path}" if path else repo}


def native_tools() -> tuple[native.Tools | None, str | None]:
    """The native tools, or None and why the Python ones measure saturation instead."""
    try:
        tools = native.build()
    except native.BuildError as exc:
        return None, f"the native tools did not build, so the Python ones measured saturation: {exc}"
    if tools is None:
        return None, "no C compiler here, so the Python load generator and upstream measured saturation"
    return tools, None


def tools_used(tools: native.Tools | None, note: str | None) -> dict[str, Any]:
    """Which load generator and upstream measured each kind of scenario: what results["tools"] holds."""
    python = {"loadgen": "bench/loadgen.py", "upstream": "bench/upstream.py"}
    fast = {"loadgen": "bench/native/loadgen.c", "upstream": "bench/native/upstream.c"} if tools else python
    return {CHAT: python, STREAM: python, SATURATE: fast, "note": note}


def _upstream_argv(plan: Plan, profile: str, port: int, tools: native.Tools | None) -> list[str]:
    if profile == INSTANT and tools is not None:
        argv = [str(tools.upstream), "--port", str(port), "--tokens", str(plan.tokens)]
        return [*argv, "--processes", str(plan.upstream_processes), "--coalesce-us", str(plan.coalesce_us)]
    latency, interval = (plan.latency_ms, plan.token_interval_ms) if profile == SLOW else (0.0, 0.0)
    return [
        _python(),
        "-m",
        "bench.upstream",
        "--port",
        str(port),
        "--latency-ms",
        str(latency),
        "--tokens",
        str(plan.tokens),
        "--token-interval-ms",
        str(interval),
        "--processes",
        str(plan.upstream_processes),
    ]


def start_upstreams(
    plan: Plan, stack: ExitStack, workdir: Path, tools: native.Tools | None = None
) -> tuple[Upstreams, dict[str, procs.Service]]:
    ports: dict[str, int] = {}
    services: dict[str, procs.Service] = {}
    for profile in (SLOW, INSTANT):
        port = procs.free_port()
        argv = _upstream_argv(plan, profile, port, tools)
        service = procs.Service(f"upstream-{profile}", argv, workdir / f"upstream-{profile}.log", env=_child_env())
        stack.callback(service.stop)
        procs.wait_for_port(port, service, timeout=15.0)
        ports[profile], services[profile] = port, service
    return Upstreams(ports), services


def _loadgen_argv(scenario: Scenario, plan: Plan, port: int, model: str, tools: native.Tools | None) -> list[str]:
    common = [
        "--port",
        str(port),
        "--concurrency",
        str(scenario.concurrency),
        "--requests",
        str(plan.max_requests),
        "--duration",
        str(plan.duration),
        "--warmup",
        str(plan.warmup),
        "--timeout",
        str(plan.timeout),
        "--api-key",
        API_KEY,
    ]
    if scenario.kind == SATURATE and tools is not None:
        body = wire.request_body(model, stream=False, max_tokens=plan.tokens)  # what bench.loadgen sends
        return [str(tools.loadgen), *common, "--body", body.decode(), "--coalesce-us", str(plan.coalesce_us)]
    argv = [_python(), "-m", "bench.loadgen", *common, "--model", model, "--max-tokens", str(plan.tokens)]
    return [*argv, "--stream"] if scenario.stream else argv


def run_loadgen(
    scenario: Scenario,
    plan: Plan,
    port: int,
    model: str,
    workdir: Path,
    tools: native.Tools | None = None,
    cpus: set[int] | None = None,
) -> dict[str, Any]:
    argv = _loadgen_argv(scenario, plan, port, model, tools)
    hard_limit = loadgen.hard_limit(plan.warmup, plan.duration, plan.timeout) + 15.0

    def setup() -> None:
        procs.die_with_parent()
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    with (workdir / "loadgen.log").open("ab") as err:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=err,
            env=_child_env(),
            start_new_session=True,
            preexec_fn=setup,
        )
        try:
            out, _ = proc.communicate(timeout=hard_limit)
        except subprocess.TimeoutExpired:
            return {"failed": f"load generator still running after {hard_limit:.0f}s"}
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5.0)
    if proc.returncode != 0:
        return {"failed": f"load generator exited with {proc.returncode} (see {workdir / 'loadgen.log'})"}
    result: dict[str, Any] = orjson.loads(out)
    result["tools"] = "native" if scenario.kind == SATURATE and tools is not None else "python"
    return result


def _scenario(
    scenario: Scenario,
    plan: Plan,
    running: Running,
    upstream: procs.Service,
    sampler: procs.Sampler | None,
    workdir: Path,
    tools: native.Tools | None,
) -> dict[str, Any]:
    route = running.routes[scenario.profile]
    tools_cpus: set[int] | None = None
    if scenario.placement == OWN_CORE:
        cpus = procs.placement_cpus()
        if cpus is None:
            return {"failed": "needs 2 CPUs: one for the gateway, the rest for the load generator and upstream"}
        tools_cpus, gateway_cpus = cpus
        procs.pin(upstream.pid, tools_cpus)
        if running.service is not None:
            procs.pin(running.service.pid, gateway_cpus)
    up_pids = procs.tree(upstream.pid)
    up_cpu0 = procs.cpu_seconds(up_pids)
    gw_cpu0 = sampler.cpu() if sampler else 0.0
    t0 = time.monotonic()
    try:
        result = run_loadgen(scenario, plan, route.port, route.model, workdir, tools, tools_cpus)
    finally:
        if tools_cpus is not None:  # back to every CPU for the scenarios that share them
            every = set(os.sched_getaffinity(0))
            procs.pin(upstream.pid, every)
            if running.service is not None:
                procs.pin(running.service.pid, every)
    wall = time.monotonic() - t0
    answered = int(result.get("answered_total", 0))  # CPU is sampled around the whole run, warm-up included
    up_cpu = procs.cpu_seconds(up_pids) - up_cpu0
    result["upstream_cpu_util"] = round(up_cpu / wall, 3)
    if answered:  # what the instrument costs: on a small machine it competes with the gateway
        result["upstream_cpu_ms_per_req"] = round(up_cpu * 1000 / answered, 4)
        result["loadgen_cpu_ms_per_req"] = round(float(result.get("loadgen_cpu_s", 0.0)) * 1000 / answered, 4)
    if sampler is not None:
        gw_cpu = sampler.cpu() - gw_cpu0
        result["gateway_cpu_util"] = round(gw_cpu / wall, 3)
        result["gateway_cpu_ms_per_req"] = round(gw_cpu * 1000 / answered, 4) if answered else None
    return result


def run_target(
    target: Target,
    plan: Plan,
    upstreams: Upstreams,
    upstream_services: dict[str, procs.Service],
    workdir: Path,
    tools: native.Tools | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"workers": target.workers}
    with ExitStack() as stack:
        started = time.monotonic()
        try:
            running = target.start(stack, upstreams, workdir)
        except (RuntimeError, OSError) as exc:
            return {**out, "failed": f"did not start: {exc}"}
        out["startup_s"] = round(time.monotonic() - started, 2)
        sampler = None
        if running.service is not None:
            sampler = procs.Sampler(running.service.pid)
            stack.callback(sampler.close)
            out["idle_rss_mb"] = round(sampler.peak / 2**20, 1)
        scenarios: dict[str, Any] = {}
        can_pin = procs.placement_cpus() is not None
        for sc in plan.scenarios(saturation_only=target.workers > 1):
            if sc.placement == OWN_CORE and not can_pin:
                continue  # one CPU: nothing to give the gateway for itself
            if running.service is not None and not running.service.alive():
                rc = running.service.proc.returncode
                out["failed"] = f"exited with {rc} during the run:\n{running.service.log_tail()}"
                break
            print(f"bench: {target.name:<14} {sc.name:<14}", end=" ", file=sys.stderr, flush=True)
            scenarios[sc.name] = _scenario(sc, plan, running, upstream_services[sc.profile], sampler, workdir, tools)
            print(_line(scenarios[sc.name]), file=sys.stderr, flush=True)
            time.sleep(0.2)
        out["scenarios"] = scenarios
        if sampler is not None:
            out["peak_rss_mb"] = round(sampler.close() / 2**20, 1)
    return out


def run_paired(
    plan: Plan,
    upstreams: Upstreams,
    upstream_services: dict[str, procs.Service],
    workdir: Path,
    tools: native.Tools | None = None,
    with_aiohttp: bool = False,
) -> dict[str, Any]:
    """The checked scenarios again, direct and one polyroute worker taking turns, round after round.

    The sequential runs measure direct minutes before polyroute, and the host's speed
    drifts over minutes; here each round measures both within seconds of each other.
    """
    scenarios = [sc for sc in plan.paired() if sc.placement != OWN_CORE or procs.placement_cpus() is not None]
    pair: dict[str, Target] = {"direct": Direct(), "polyroute": Polyroute(1)}
    if with_aiohttp:  # the other upstream client takes its turn in the same rounds
        pair["polyroute-aiohttp"] = Polyroute(1, client="aiohttp")
    return _alternate(pair, scenarios, plan, upstreams, upstream_services, workdir, tools)


def run_paired_workers(
    plan: Plan,
    upstreams: Upstreams,
    upstream_services: dict[str, procs.Service],
    workdir: Path,
    tools: native.Tools | None = None,
) -> dict[str, Any]:
    """Saturation again, one worker and two taking turns: the 2-worker ratio, free of the host's drift."""
    return _alternate({"polyroute": Polyroute(1), "polyroute-w2": Polyroute(2)}, plan.paired_workers(), plan,
                      upstreams, upstream_services, workdir, tools)


def _alternate(
    pair: dict[str, Target],
    scenarios: list[Scenario],
    plan: Plan,
    upstreams: Upstreams,
    upstream_services: dict[str, procs.Service],
    workdir: Path,
    tools: native.Tools | None,
) -> dict[str, Any]:
    """Every scenario on each target of ``pair`` in turn, ``plan.paired_rounds`` rounds; both stay up throughout."""
    if not scenarios or any(t.prepare(workdir) is not None for t in pair.values()):
        return {}
    out: dict[str, Any] = {sc.name: {name: [] for name in pair} for sc in scenarios}
    with ExitStack() as stack:
        try:
            targets = {name: t.start(stack, upstreams, workdir) for name, t in pair.items()}
        except (RuntimeError, OSError) as exc:
            return {"failed": f"did not start: {exc}"}
        samplers: dict[str, procs.Sampler] = {}
        for name, running in targets.items():
            if running.service is not None:
                samplers[name] = procs.Sampler(running.service.pid)
                stack.callback(samplers[name].close)
        for rnd in range(plan.paired_rounds):
            for sc in scenarios:
                for name, running in targets.items():
                    print(f"bench: paired {rnd + 1}/{plan.paired_rounds} {name:<12} {sc.name:<18}", end=" ",
                          file=sys.stderr, flush=True)
                    r = _scenario(sc, plan, running, upstream_services[sc.profile], samplers.get(name), workdir,
                                  tools)
                    print(_line(r), file=sys.stderr, flush=True)
                    out[sc.name][name].append(r)
                    time.sleep(0.2)
    return out


def _line(r: dict[str, Any]) -> str:
    if "failed" in r:
        return f"FAILED: {r['failed']}"
    lat, nan = r.get("latency_ms", {}), float("nan")
    text = f"{r.get('rps', 0):9.1f} req/s  p50 {lat.get('p50', nan):8.2f} ms  p99 {lat.get('p99', nan):8.2f} ms"
    if "ttft_ms" in r:
        text += f"  ttft p50 {r['ttft_ms'].get('p50', nan):7.2f} ms"
    return text + f"  errors {r.get('errors', 0)}"


def run(plan: Plan, target_names: Sequence[str], workdir: Path, llamacpp_hook: bool = True) -> dict[str, Any]:
    """Run the plan against the named targets; return the raw results (see bench.report)."""
    workdir.mkdir(parents=True, exist_ok=True)
    targets = [make_target(n) for n in target_names]
    tools, note = native_tools()
    if note is not None:
        print(f"bench: {note.splitlines()[0]}", file=sys.stderr)
    results: dict[str, Any] = {"targets": {}, "tools": tools_used(tools, note)}
    with _sigterm_unwinds(), ExitStack() as stack:
        upstreams, services = start_upstreams(plan, stack, workdir, tools)
        for target in targets:
            reason = target.prepare(workdir)
            if reason is not None:
                print(f"bench: {target.name}: skipped: {reason}", file=sys.stderr)
                results["targets"][target.name] = {"workers": target.workers, "skipped": reason}
                continue
            result = run_target(target, plan, upstreams, services, workdir, tools)
            if "failed" in result:  # a shared machine: one retry before reporting the failure
                print(f"bench: {target.name}: {result['failed'].splitlines()[0]}; retrying once", file=sys.stderr)
                retry = run_target(target, plan, upstreams, services, workdir, tools)
                result = {**retry, "first_try": result["failed"]}
            results["targets"][target.name] = result
        if "direct" in target_names and "polyroute" in target_names:
            results["paired"] = run_paired(plan, upstreams, services, workdir, tools,
                                           with_aiohttp="polyroute-aiohttp" in target_names)
        if "polyroute" in target_names and "polyroute-w2" in target_names:
            results["paired_workers"] = run_paired_workers(plan, upstreams, services, workdir, tools)
        results["llamacpp"] = llamacpp.run(plan, workdir) if llamacpp_hook else {"skipped": "not requested"}
    return results


def _jitter_seconds(plan: Plan) -> float:
    """Two seconds of naps at each end of a full run; a short pass (a smoke test) takes a tenth of that."""
    return 2.0 if plan.duration >= Plan().duration else 0.2


def run_all(
    plan: Plan, target_names: Sequence[str], workdir: Path, command: str, llamacpp_hook: bool = True
) -> dict[str, Any]:
    """run() wrapped with the date, the machine, the versions and the figures: what latest.json holds."""
    started = datetime.datetime.now(datetime.UTC)
    results: dict[str, Any] = {
        "schema": 1,
        "date": started.isoformat(timespec="seconds"),
        "command": command,
        "machine": machine.machine(_jitter_seconds(plan)),
        "plan": asdict(plan),
    }
    results.update(run(plan, target_names, workdir, llamacpp_hook))
    results["machine"]["loadavg_at_end"] = machine.load()
    results["machine"]["jitter_at_end"] = machine.jitter(_jitter_seconds(plan))
    results["versions"] = machine.versions()
    results["duration_s"] = round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1)
    return report.finish(results)
