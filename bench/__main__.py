"""``python -m bench`` (or ``bench/run``): the whole benchmark in one run.

Writes bench/results/latest.json and bench/results/latest.md; service logs go to
bench/results/logs/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from bench import machine, report, runner
from bench.plan import Plan

RESULTS = Path(__file__).resolve().parent / "results"


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(not 1 <= v <= 4096 for v in values):
        raise argparse.ArgumentTypeError("each concurrency must be between 1 and 4096")
    return values


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/run", description="polyroute's overhead next to a direct call and LiteLLM.")
    p.add_argument(
        "--targets",
        default=",".join(runner.TARGETS),
        help=f"comma-separated, from {', '.join(runner.TARGETS)} (default: all)",
    )
    p.add_argument("--quick", action="store_true", help="2 s per scenario instead of 5 (a rough look)")
    p.add_argument("--duration", type=float, help="seconds measured per scenario")
    p.add_argument("--warmup", type=float, help="seconds of warm-up per scenario")
    p.add_argument("--max-requests", type=int, help="requests per scenario at most")
    p.add_argument("--latency-ms", type=float, help="the slow upstream's latency (default 50)")
    p.add_argument("--concurrency", type=_ints, help="non-streaming and streaming levels, e.g. 1,16,64,256")
    p.add_argument("--saturate-concurrency", type=_ints, help="levels tried for saturation (default 64,256)")
    p.add_argument("--upstream-processes", type=int, help="SO_REUSEPORT processes per fake upstream (default 1)")
    p.add_argument("--out", type=Path, default=RESULTS, help="where latest.json and latest.md go")
    p.add_argument("--strict", action="store_true", help="exit 1 when a check FAILs")
    return p


def _plan(a: argparse.Namespace) -> Plan:
    plan = Plan.quick() if a.quick else Plan()
    changes: dict[str, object] = {}
    for arg, key in (
        ("duration", "duration"),
        ("warmup", "warmup"),
        ("max_requests", "max_requests"),
        ("latency_ms", "latency_ms"),
        ("saturate_concurrency", "saturate_concurrency"),
        ("upstream_processes", "upstream_processes"),
    ):
        if getattr(a, arg) is not None:
            changes[key] = getattr(a, arg)
    if a.concurrency is not None:
        changes["chat_concurrency"] = changes["stream_concurrency"] = a.concurrency
    return plan.with_(**changes)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    try:
        [runner.make_target(n) for n in names]
    except ValueError as exc:
        _parser().error(str(exc))
    if "direct" not in names:
        names.insert(0, "direct")  # every overhead is measured against it
    plan = _plan(args)
    started = datetime.datetime.now(datetime.UTC)
    results: dict[str, object] = {
        "schema": 1,
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join(["bench/run", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine.machine(),
        "versions": machine.versions(),
        "plan": asdict(plan),
    }
    try:
        results.update(runner.run(plan, names, args.out / "logs"))
    except KeyboardInterrupt:
        print("bench: interrupted; every child process was stopped", file=sys.stderr)
        return 130
    results["machine"]["loadavg_at_end"] = machine.load()  # type: ignore[index]
    results["versions"] = machine.versions()  # LiteLLM may have been installed during the run
    results["duration_s"] = round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1)
    report.finish(results)
    json_path, md_path = report.write(results, args.out)
    checks = results["checks"]
    assert isinstance(checks, list)
    for c in checks:
        print(f"bench: {c['verdict']:<4} {c['name']}: {c['value']}", file=sys.stderr)
    print(f"bench: wrote {json_path} and {md_path}", file=sys.stderr)
    return 1 if args.strict and any(c["verdict"] == "FAIL" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
