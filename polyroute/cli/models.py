"""``polyroute models``: the catalog as a table or as JSON, with filters."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polyroute.catalog import Catalog, Family, Offer, load_catalog, load_with_files

_COLUMNS = ("id", "name", "origin", "licence", "open", "context", "$/Mtok in/out", "capabilities", "served by", "key")

_DESCRIPTION = """\
List the model families polyroute knows: who makes each one and where (origin),
its licence, whether the weights are open, the context window, the list price of
the cheapest offer in USD per million tokens (input/output), its capabilities,
who serves it ("local" means in-process on this machine) and whether the API key
of at least one offer is set in the environment.
"""

_EPILOG = """\
examples:
  polyroute models
  polyroute models --open-weights --origin CN
  polyroute models --max-price 1 --json
  polyroute models --config polyroute.toml     # with the config's [catalog] files
  polyroute models --stale 90                  # exit 1 if a price is older than 90 days

--stale lists the hosted offers whose price was read more than N days ago, with
the date and the page it was read from, and exits 1 when there is any (0 when
every price is fresh), so that a CI job can ask for the catalog to be re-read.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "models",
        help="list the model catalog (origin, licence, price, context, capabilities)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--open-weights",
        action="store_true",
        default=None,
        help="only families whose weights are published",
    )
    parser.add_argument(
        "--origin",
        metavar="X",
        help="only families whose country code (e.g. CN, US, FR) or organisation name matches X, "
        "case-insensitive; two letters are read as a country code",
    )
    parser.add_argument(
        "--max-price",
        metavar="N",
        type=_non_negative,
        help="only families whose cheapest offer costs at most N USD per million tokens, "
        "taking the mean of input and output price (local families cost 0)",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        default=None,
        help="only families served in-process on this machine",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--catalog",
        metavar="PATH",
        type=Path,
        help="read this catalog file instead of the one shipped with polyroute",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="lay the [catalog] files of this config over the catalog, as serve does",
    )
    parser.add_argument(
        "--stale",
        metavar="DAYS",
        type=_days,
        help="list only the offers whose price was read more than DAYS days ago; "
        "exit 1 if there is any",
    )
    parser.set_defaults(func=run)


def _catalog(args: argparse.Namespace) -> Catalog:
    catalog = load_catalog(args.catalog)
    if args.config:
        from polyroute.catalog import catalog_files
        from polyroute.config import load

        catalog = load_with_files(catalog_files(load(args.config)), base=catalog)
    return catalog


def run(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    if args.stale is not None:
        return _run_stale(catalog, args.stale, dt.datetime.now(dt.UTC).date(), as_json=args.json)
    families = catalog.filter(
        open_weights=args.open_weights,
        origin=args.origin,
        max_price=args.max_price,
        local=args.local,
    )
    env = os.environ
    if args.json:
        json.dump([_as_json(f, env) for f in families], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not families:
        print("No model family matches these filters.")
        return 0
    rows = [_row(f, env) for f in families]
    _write_lines(render_table(_COLUMNS, rows))
    return 0


def _write_lines(text: str) -> None:
    # Line by line, as a reader like `head` expects: one that goes away mid-table is then
    # noticed at the next write (and ends quietly in polyroute.cli.main).
    for line in text.splitlines(keepends=True):
        sys.stdout.write(line)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() + "\n"

    return line(header) + "".join(line(r) for r in rows)


def _row(f: Family, env: Mapping[str, str]) -> list[str]:
    inp, out = f.price()
    return [
        f.id,
        f.name,
        f"{f.organisation}, {f.country}",
        f.licence,
        "yes" if f.open_weights else "no",
        format_tokens(f.context_window),
        f"{inp:g}/{out:g}",
        ",".join(f.capabilities) or "-",
        ", ".join(_served_by(f)),
        _key_state(f, env),
    ]


def _served_by(f: Family) -> list[str]:
    names = ["local"] if f.local else []
    for offer in f.offers:
        if offer.provider not in names:
            names.append(offer.provider)
    return names


def _key_state(f: Family, env: Mapping[str, str]) -> str:
    if not f.offers:
        return "n/a"  # nothing hosted, so no key is needed
    return "yes" if f.offers_with_keys(env) else "no"


def format_tokens(n: int) -> str:
    """Short context size: 131072 -> "128K", 200000 -> "200K", 256000 -> "256K", 1048576 -> "1M".

    Round decimal sizes are shown in decimal units; multiples of 1024 in binary ones,
    because that is how model cards quote them; anything else in decimal.
    """
    base = 1024 if n % 1024 == 0 and n % 1000 != 0 else 1000
    for unit, size in (("M", base * base), ("K", base)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _as_json(f: Family, env: Mapping[str, str]) -> dict[str, Any]:
    inp, out = f.price()
    cheapest = f.cheapest_offer()
    data = f.model_dump(mode="json")
    data["price"] = {"input_per_mtok": inp, "output_per_mtok": out}
    data["cheapest_offer"] = None if cheapest is None else {"provider": cheapest.provider, "model": cheapest.model}
    data["key_set"] = bool(f.offers_with_keys(env))
    return data


_STALE_COLUMNS = ("family", "provider", "model", "price read", "days", "source")


def _run_stale(catalog: Catalog, days: int, today: dt.date, *, as_json: bool) -> int:
    """Offers priced more than ``days`` ago; 1 when there is any, like a linter's finding."""
    stale = catalog.stale(days, today)
    if as_json:
        json.dump([_stale_json(f, o, today) for f, o in stale], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not stale:
        print(f"Every offer's price was read in the last {days} days.")
    else:
        rows = [[f.id, o.provider, o.model, o.price_date.isoformat(), str(o.age_days(today)), o.price_source]
                for f, o in stale]
        _write_lines(render_table(_STALE_COLUMNS, rows))
        print(f"{len(stale)} offer(s) priced more than {days} days ago: re-read the source and update "
              "the catalog, or override the offer in a [catalog] file.", file=sys.stderr)
    return 1 if stale else 0


def _stale_json(f: Family, o: Offer, today: dt.date) -> dict[str, Any]:
    return {"family": f.id, "provider": o.provider, "model": o.model, "price_date": o.price_date.isoformat(),
            "age_days": o.age_days(today), "price_source": o.price_source}


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0 or value != value:  # NaN compares unequal to itself
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text!r}")
    return value
