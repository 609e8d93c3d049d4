"""``python -m bench`` (or ``bench/run``): the whole benchmark in one run.

Writes bench/results/latest.json and bench/results/latest.md; service logs go to
bench/results/logs/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import orjson

from bench import report, runner
from bench.plan import CHAT, SATURATE, STREAM, Plan

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = (CHAT, STREAM, SATURATE)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(not 1 <= v <= 4096 for v in values):
        raise argparse.ArgumentTypeError("each concurrency must be between 1 and 4096")
    return values


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        raise argparse.ArgumentTypeError(f"expected kinds from {', '.join(KINDS)}, got {text!r}")
    return kinds


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/run", description="polyroute's overhead next to a direct call and LiteLLM.")
    p.add_argument(
        "--targets",
        default=",".join(runner.TARGETS),
        help=f"comma-separated, from {', '.join(runner.TARGETS + runner.OPTIONAL_TARGETS)} "
        f"(default: {', '.join(runner.TARGETS)}; direct is always measured)",
    )
    p.add_argument(
        "--scenarios",
        type=_kinds,
        default=KINDS,
        help=f"comma-separated kinds of scenario to run, from {', '.join(KINDS)} (default: all)",
    )
    p.add_argument("--quick", action="store_true", help="2 s per scenario instead of 5 (a rough look)")
    p.add_argument("--duration", type=float, help="seconds measured per scenario")
    p.add_argument("--warmup", type=float, help="seconds of warm-up per scenario")
    p.add_argument("--max-requests", type=int, help="requests per scenario at most")
    p.add_argument("--latency-ms", type=float, help="the slow upstream's latency (default 50)")
    p.add_argument("--concurrency", type=_ints, help="non-streaming and streaming levels, e.g. 1,16,64,256")
    p.add_argument("--saturate-concurrency", type=_ints, help="levels tried for saturation (default 64,256)")
    p.add_argument("--upstream-processes", type=int, help="SO_REUSEPORT processes per fake upstream (default 1)")
    p.add_argument(
        "--coalesce-us",
        type=int,
        help="saturation: the native tools' pause after a wakeup with few events, 0 for none (default 500)",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="where latest.json and latest.md go")
    p.add_argument("--strict", action="store_true", help="exit 1 when a check FAILs")
    p.add_argument("--render", type=Path, metavar="JSON", help="only recompute figures and tables from a results file")
    return p


def _plan(a: argparse.Namespace) -> Plan:
    plan = Plan.quick() if a.quick else Plan()
    keys = (
        "duration",
        "warmup",
        "max_requests",
        "latency_ms",
        "saturate_concurrency",
        "upstream_processes",
        "coalesce_us",
    )
    changes: dict[str, object] = {k: getattr(a, k) for k in keys if getattr(a, k) is not None}
    if a.concurrency is not None:
        changes["chat_concurrency"] = changes["stream_concurrency"] = a.concurrency
    for kind in KINDS:
        if kind not in a.scenarios:
            changes[f"{kind}_concurrency"] = ()  # no levels: no scenario of that kind
    return plan.with_(**changes)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    try:
        for name in names:
            runner.make_target(name)
    except ValueError as exc:
        parser.error(str(exc))
    if "direct" not in names:
        names.insert(0, "direct")  # every overhead is measured against it
    if args.render is not None:
        results = report.finish(orjson.loads(args.render.read_bytes()))
        print("bench: wrote {} and {}".format(*report.write(results, args.out)), file=sys.stderr)
        return 0
    command = shlex.join(["bench/run", *(sys.argv[1:] if argv is None else argv)])
    try:
        results = runner.run_all(_plan(args), names, args.out / "logs", command)
    except KeyboardInterrupt:
        print("bench: interrupted; every child process was stopped", file=sys.stderr)
        return 130
    json_path, md_path = report.write(results, args.out)
    for c in results["checks"]:
        print(f"bench: {c['verdict']:<4} {c['name']}: {c['value']}", file=sys.stderr)
    print(f"bench: wrote {json_path} and {md_path}", file=sys.stderr)
    return 1 if args.strict and any(c["verdict"] == "FAIL" for c in results["checks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
