"""``polyroute models``: the catalog as a table or as JSON, with filters."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polyroute.catalog import Family, load_catalog

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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.catalog)
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
    sys.stdout.write(render_table(_COLUMNS, rows))
    return 0


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
    """Short context size: 131072 -> "128K", 200000 -> "200K", 1048576 -> "1M".

    Powers of two are shown in binary units because that is how model cards
    quote them; other sizes in decimal.
    """
    base = 1024 if n % 1024 == 0 else 1000
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


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0 or value != value:  # NaN compares unequal to itself
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text!r}")
    return value
