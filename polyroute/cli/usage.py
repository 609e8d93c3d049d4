"""``polyroute usage``: the ledger, grouped by key, team, model, route or day."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime

from polyroute.cli.keys import open_store
from polyroute.errors import InvalidRequest
from polyroute.tenancy.usage import COLUMNS, GROUPS, as_csv, parse_since


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("usage", help="requests, tokens, cost, failures, refusals and latency from the usage ledger")
    p.add_argument("--config", default=os.environ.get("POLYROUTE_CONFIG"),
                   help="a TOML config whose [store] url to read (default: $POLYROUTE_CONFIG)")
    p.add_argument("--store", help="sqlite:///PATH or postgresql://USER@HOST/DB (overrides the config's)")
    p.add_argument("--by", choices=GROUPS, default="key")
    p.add_argument("--since", default="7d", help="a span (7d, 12h, 30m, 2w) or an ISO date; default 7d")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--rebuild-rollup", action="store_true",
                   help="sum the console's rollup again from every row (after replicas of a version without it "
                        "wrote rows), then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since, datetime.now(UTC))
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    store = open_store(args, existing=True)
    try:
        if args.rebuild_rollup:
            print(f"rollup summed again from {store.rebuild_rollup()} rows of {store.where}")
            return 0
        rows = store.summary(since, args.by)
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        sys.stdout.write(as_csv(rows))
    else:
        head = [args.by, *COLUMNS[1:]]
        cells = [head, *[[str(r[c]) for c in COLUMNS] for r in rows]]
        widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
        for r in cells:
            print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))))
    return 0
