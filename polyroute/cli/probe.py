"""``polyroute probe``: ask every model of a config once, before traffic does.

A wrong key, an empty account, a mistyped or retired model id, a region the provider
does not serve: each shows up here as the gateway would classify it, with what to do,
instead of at the first failover. The plan and the asker are ``polyroute.cli.probe_ask``'s,
the asking of each model ``polyroute.probing``'s (which a running gateway's
``POST /admin/probe`` uses too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from polyroute.cli.probe_ask import PROBE_TOKENS, PROMPT_BOUND, ProbePlan, worst_cost
from polyroute.config import Config
from polyroute.config_problems import did_you_mean
from polyroute.errors import InvalidRequest
from polyroute.redact import Redactor

_COLUMNS = ("model", "backend", "upstream", "result", "latency", "tokens", "cost", "detail")

_DESCRIPTION = f"""\
Ask every model of the config (or those named with --models) the smallest real
request, once, the way the gateway would: a chat model one short message with an
answer of at most {PROBE_TOKENS} tokens, not streamed; an embedding model one short input.
Each failure is classified as the gateway classifies it (key refused, account cannot
pay, region blocked, model not found, rate limited, timeout, unreachable, ...) and
comes with what to do. A model whose key variable is not set, or whose backend needs
a package that is not installed, is skipped without any request.

This costs real money on paid providers: before asking, the number of paid models and
the worst case of the probe's cost at the catalog's list prices (a prompt of at most
{PROMPT_BOUND} tokens and an answer of at most {PROBE_TOKENS} each) are printed on standard error.
"""

_EPILOG = """\
examples:
  polyroute probe --config polyroute.toml
  polyroute probe --config polyroute.toml --models deepseek,smol --timeout 10
  polyroute probe --json            # the embedded default: every catalog model whose key is set

exit status: 0 when every model asked answered, 1 when any failed (or none could be
asked), 2 for a config that cannot be used or a bad argument. Skipped models are
shown, and do not change the status when another model was asked.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("probe", help="ask every model of a config one tiny request (costs a little on paid models)",
                       description=_DESCRIPTION, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", default=os.environ.get("POLYROUTE_CONFIG"),
                   help="TOML config file (default: $POLYROUTE_CONFIG, else the embedded default)")
    p.add_argument("--models", metavar="A,B", help="only these models (a route's name stands for its models)")
    p.add_argument("--timeout", metavar="S", type=_seconds,
                   help="seconds each model has to answer (default: its backend's timeout)")
    p.add_argument("--concurrency", metavar="N", type=_count, default=4, help="models asked at once (default 4)")
    p.add_argument("--json", action="store_true", help="print one JSON object per model instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from polyroute.catalog import load_catalog_for
    from polyroute.settings import effective_config

    config = effective_config(args.config)
    catalog = load_catalog_for(config)  # a bad [catalog] file stops here, as it stops serve
    plan = ProbePlan.build(config, catalog, _names(args.models, config))
    _announce(plan, file=sys.stderr)
    from polyroute.cli.probe_ask import Asker

    results = asyncio.run(Asker(plan, args.timeout, args.concurrency).run())
    redact = Redactor.from_config(config)  # the last guard before text leaves the process
    rows = [r.as_json(redact) for r in results]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(rows)
    failed = any(r.result not in ("ok", "skipped") for r in results)
    return 1 if failed or not any(r.result == "ok" for r in results) else 0


def _names(text: str | None, config: Config) -> list[str]:
    """The models to ask, in the config's order or the order named; a route stands for its models."""
    if text is None:
        if not config.models:
            raise InvalidRequest(f"{config.source}: no [models.*] to probe")
        return list(config.models)
    names: list[str] = []
    for name in (n.strip() for n in text.split(",")):
        if not name:
            continue
        if name in config.routes:
            names += config.routes[name].models
        elif name in config.models:
            names.append(name)
        else:
            known = ", ".join(config.client_names()) or "none"
            raise InvalidRequest(f"--models: no model or route {name!r} in {config.source}"
                                 f"{did_you_mean(name, set(config.client_names()))} (known: {known})")
    if not names:
        raise InvalidRequest("--models names no model")
    return list(dict.fromkeys(names))


def _announce(plan: ProbePlan, *, file: Any) -> None:
    """How many models will be asked, and the most the paid ones can cost: before anything is sent."""
    entries = [e for e in plan.to_ask() if plan.fleet.adapters[e.backend].ready()]
    paid = [e for e in entries if e.locality == "remote"]
    costs = [worst_cost(e) for e in paid]
    known = sum(c for c in costs if c is not None)
    unpriced = sum(1 for c in costs if c is None)
    line = f"polyroute: asking {len(entries)} model(s)"
    if paid:
        line += (f"; {len(paid)} paid: at most ${known:.6f} in all at the catalog's list prices"
                 f" ({PROMPT_BOUND} prompt and {PROBE_TOKENS} answer tokens each)")
        if unpriced:
            line += f", plus {unpriced} with no known price"
    else:
        line += "; none of them is paid"
    print(line, file=file, flush=True)


def _print_table(rows: list[dict[str, Any]]) -> None:
    from polyroute.cli.models import render_table

    cells = [[
        r["model"], r["backend"], r["upstream"], r["words"],
        "-" if r["latency_ms"] is None else f"{r['latency_ms']:.0f} ms",
        "-" if r["prompt_tokens"] is None else f"{r['prompt_tokens']}+{r['completion_tokens']}",
        _dollars(r["cost_usd"]),
        r["message"] or "",
    ] for r in rows]
    write_lines(render_table(_COLUMNS, cells))
    todo = [r for r in rows if r["result"] != "ok" and r["hint"]]
    if todo:
        write_lines("\nwhat to do:\n" + "".join(f"  {r['model']}: {r['hint']}\n" for r in todo))
    failed = sum(1 for r in rows if r["result"] not in ("ok", "skipped"))
    skipped = sum(1 for r in rows if r["result"] == "skipped")
    answered = sum(1 for r in rows if r["result"] == "ok")
    write_lines(f"\n{answered} answered, {failed} failed, {skipped} skipped\n")


def _dollars(cost: float | None) -> str:
    return "-" if cost is None else f"${cost:.6f}" if cost else "$0"


def write_lines(text: str) -> None:
    # Line by line, so that a reader that goes away (`| head`) is noticed at the next write.
    for line in text.splitlines(keepends=True):
        sys.stdout.write(line)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, got {value}")
    return value

