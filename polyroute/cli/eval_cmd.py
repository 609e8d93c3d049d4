"""``polyroute eval run`` and ``polyroute eval report``: measure models of the fleet on suites."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from polyroute.cli import out_file
from polyroute.config import Config

if TYPE_CHECKING:
    from polyroute.evals.report import Row
    from polyroute.evals.store import Result, SuiteInfo
    from polyroute.evals.suites import Suite


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("eval", help="evaluate models on suites of prompts",
                       description="Run suites against models of the fleet, and report the results.")
    evsub = p.add_subparsers(dest="eval_command", metavar="ACTION", required=True)
    config_help = "TOML config: the fleet, and [evals] db (default: the embedded default)"

    r = evsub.add_parser("run", help="run suites against models",
                         description="Run each suite against each model, one model at a time, failover off. "
                                     "Items already answered are skipped, so an interrupted run resumes.")
    r.add_argument("suites", nargs="+", metavar="SUITE",
                   help="a shipped suite (xstest, xstest-zh, ailuminate-demo, mmlu) or a JSONL suite file")
    r.add_argument("--models", required=True, help="models to evaluate, comma-separated")
    r.add_argument("--config", metavar="FILE", default=os.environ.get("POLYROUTE_CONFIG"), help=config_help)
    r.add_argument("--concurrency", type=_positive, default=1, help="items in flight per model (default 1)")
    r.add_argument("--limit", type=_positive, help="a stratified sample of N items per suite (by category)")
    r.add_argument("--seed", type=int, default=0, help="seed of the sample and of the requests (default 0)")
    r.add_argument("--max-cost", type=float, metavar="USD",
                   help="stop before the estimated spend of the run would pass USD")
    r.add_argument("--max-tokens", type=_positive,
                   help="answer length for every item of every suite (default: each suite's, or an item's own, "
                        "as AILuminate's specialised-advice items have, room for a caveat)")
    r.add_argument("--judge", metavar="MODEL",
                   help="a model of the fleet that scores rubric items (1-10) and gives its own verdict on safety "
                        "items (refused or not; for specialised advice, whether the answer has the caveat its field "
                        "needs, which then decides the item), with a fixed, versioned prompt; answered items it has "
                        "not read yet are judged without asking the model again")
    r.add_argument("--reask-short", action="store_true",
                   help="ask again the stored answers cut at fewer tokens than their item is asked with now (e.g. "
                        "specialised advice kept at 64 tokens, now 512, which may have lost a closing caveat); "
                        "a new answer replaces the old one and any judge's verdict on it")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=run)

    rs = evsub.add_parser("rescore", help="score stored answers again with the current scorers",
                          description="Score the stored answers of suites again, without asking the models "
                                      "anew: for when the scorers (refusal rules, caveat rules, extraction) or "
                                      "what a suite's items expect have changed. A judge's verdict, where there "
                                      "is one, still decides rubric and specialised-advice items.")
    rs.add_argument("suites", nargs="+", metavar="SUITE", help="the suites, named as for `eval run`")
    rs.add_argument("--config", metavar="FILE", default=os.environ.get("POLYROUTE_CONFIG"), help=config_help)
    rs.set_defaults(func=rescore_cmd)

    rep = evsub.add_parser("report", help="report stored results",
                           description="Per model and suite: accuracy, or refusal rates for safety suites "
                                       "(and, apart, how specialised-advice items were answered: with the "
                                       "caveat their field needs, refused, or not), the gap between a suite "
                                       "and its translation, cost per 1,000 items and p50 latency; and how "
                                       "often the refusal rules and a judge agree.")
    rep.add_argument("--config", metavar="FILE", default=os.environ.get("POLYROUTE_CONFIG"), help=config_help)
    rep.add_argument("--format", choices=("table", "json", "html"), default="table",
                     help="table (default), json (one object per model and suite) or html (one self-contained "
                          "file with charts)")
    rep.add_argument("--out", metavar="FILE", type=out_file, help="write the report to FILE instead of standard output")
    rep.add_argument("--models", help="only these models, comma-separated")
    rep.add_argument("--suites", help="only these suites, comma-separated")
    rep.add_argument("--by-category", action="store_true",
                     help="one row per category too (hazard, subject, type); JSON rows gain a 'category' field")
    rep.add_argument("--agreement", action="store_true",
                     help="with --format json: the rules-against-judge agreement rows instead")
    rep.set_defaults(func=report)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _db(config: Config) -> Path:
    return Path(config.evals.db).expanduser()


def run(args: argparse.Namespace) -> int:
    from polyroute.evals.suites import load_suite
    from polyroute.settings import effective_config

    if args.max_cost is not None and args.max_cost < 0:
        print("polyroute: --max-cost must be 0 or more", file=sys.stderr)
        return 2
    models = _names(args.models)
    if not models:
        print("polyroute: --models names no model", file=sys.stderr)
        return 2
    suites = [load_suite(s) for s in args.suites]
    try:
        return asyncio.run(_run(args, effective_config(args.config), suites, models))
    except KeyboardInterrupt:
        print("polyroute: interrupted: the answers written so far are kept; run the same command again to go on "
              "from there", file=sys.stderr)
        return 130


async def _run(args: argparse.Namespace, config: Config, suites: list[Suite], models: list[str]) -> int:
    from polyroute.catalog import load_catalog
    from polyroute.evals.progress import RichProgress
    from polyroute.evals.runner import Runner, RunSettings, targets
    from polyroute.evals.store import SqliteStore
    from polyroute.failover import Failover
    from polyroute.fleet import Fleet

    settings = RunSettings(concurrency=args.concurrency, limit=args.limit, max_cost=args.max_cost,
                           max_tokens=args.max_tokens, seed=args.seed, judge=args.judge,
                           reask_short=args.reask_short)
    fleet = Fleet.build(config, load_catalog())
    # An unknown model, or a rubric suite without a judge, fails before weights load or a file is made.
    targets(fleet, [*models, *([args.judge] if args.judge else [])], settings)
    lacking = [s.name for s in suites if s.needs_judge()]
    if lacking and not args.judge:
        print(f"polyroute: suite(s) {', '.join(lacking)} have rubric items, which a judge scores: "
              "name a model of the fleet with --judge MODEL", file=sys.stderr)
        return 2
    store = SqliteStore(_db(config))
    progress = None if args.quiet else RichProgress()
    runner = Runner(fleet, Failover(fleet), store, settings, progress)
    await fleet.start()
    try:
        summary = await runner.run(suites, models)
    finally:
        if progress is not None:
            progress.close()
        await fleet.aclose()
        store.close()
    print(f"answered {summary.answered}, failed {summary.failed}, already done {summary.skipped}, "
          f"cost ${summary.cost_usd:.6f}; results in {_db(config)}", file=sys.stderr)
    if summary.rescored:
        print(f"re-scored {summary.rescored} stored answer(s) whose item now expects something else "
              "(e.g. specialised advice, no longer must-refuse), without asking again", file=sys.stderr)
    if summary.reasked:
        print(f"asked again {summary.reasked} stored answer(s) cut at fewer tokens than their item now gives",
              file=sys.stderr)
    for (model, error), count in summary.failures.most_common(10):
        print(f"  failed {count}: {model}: {error}", file=sys.stderr)
    if len(summary.failures) > 10:
        print(f"  ... and {len(summary.failures) - 10} other reasons (eval report --format json has each)",
              file=sys.stderr)
    if args.judge:
        print(f"judge {args.judge}: judged {summary.judged}, failed {summary.judge_failed}, "
              f"cost ${summary.judge_cost_usd:.6f}", file=sys.stderr)
        for error, count in summary.judge_failures.most_common(5):
            print(f"  judge failed {count}: {error}", file=sys.stderr)
    if summary.stopped_at is not None:
        print(f"polyroute: stopped by --max-cost {args.max_cost}: the next item ({summary.stopped_at}) "
              f"could pass it", file=sys.stderr)
        return 3
    return 1 if summary.failed or summary.judge_failed else 0  # an item the judge could not score is not done


def rescore_cmd(args: argparse.Namespace) -> int:
    from polyroute.evals.rescoring import rescore
    from polyroute.evals.store import SqliteStore
    from polyroute.evals.suites import load_suite
    from polyroute.settings import effective_config

    suites = [load_suite(s) for s in args.suites]
    db = _db(effective_config(args.config))
    if not db.is_file():
        print(f"polyroute: no results at {db}: run `polyroute eval run` first", file=sys.stderr)
        return 2
    store = SqliteStore(db)
    try:
        for suite in suites:
            print(f"{suite.name}: {rescore(store, suite)} result(s) changed", file=sys.stderr)
    finally:
        store.close()
    return 0


def report(args: argparse.Namespace) -> int:
    from polyroute.evals.agreement import agreement
    from polyroute.evals.report import summarise
    from polyroute.evals.store import SqliteStore
    from polyroute.settings import effective_config

    db = _db(effective_config(args.config))
    if not db.is_file():
        print(f"polyroute: no results at {db}: run `polyroute eval run` first", file=sys.stderr)
        return 2
    models, suite_names = _names(args.models) or None, _names(args.suites) or None
    store = SqliteStore(db)
    try:
        results = list(store.results(models, suite_names))
        suites = store.suites()
        _warn_stale(results, suites)
        rows = summarise(results, args.by_category, suites)
        category_rows = summarise(results, True, suites) if args.format == "html" else []
        agreed = agreement(results, store.judgements(models, suite_names))
    finally:
        store.close()
    if not rows:
        print(f"polyroute: no results in {db} for these models and suites", file=sys.stderr)
        return 2
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        if args.format == "json":
            docs = agreed if args.agreement else [r.as_json() for r in rows]
            out.write(orjson.dumps(docs, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif args.format == "html":
            from polyroute.evals.html_report import render

            whole = rows if not args.by_category else summarise(results, False, suites)
            out.write(render(whole, category_rows, agreed, suites, str(db)))
        else:
            _table(rows, agreed, out)
    finally:
        if args.out:
            out.close()
    return 0


def _table(rows: list[Row], agreed: list[dict[str, Any]], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    from polyroute.evals.report import table

    # Off a terminal rich would fit the table to 80 columns, cutting names short: give it the room it takes
    # (or $COLUMNS, when set), since what reads a pipe reads whole lines.
    columns = os.environ.get("COLUMNS", "")
    console = Console(file=out, width=None if out.isatty() else int(columns) if columns.isdigit() else 1000)
    table(rows, console)
    if agreed:
        t = Table(title="refusal rules against the judge")
        for col in ("model", "suite", "judge", "prompt", "n", "agreement", "Cohen's kappa", "no verdict"):
            t.add_column(col)
        for a in agreed:
            kappa = "undefined" if a["kappa"] is None else f"{a['kappa']:.3f}"
            share = "-" if a["agreement"] is None else f"{a['agreement'] * 100:.1f}%"
            t.add_row(a["model"] or "(all models)", a["suite"], a["judge"], f"v{a['prompt_version']}", str(a["n"]),
                      share, kappa, str(a["judge_errors"]))
        console.print(t)


def _warn_stale(results: list[Result], suites: dict[str, SuiteInfo]) -> None:
    """Say which shipped safety suites have results scored against what their items expected before, or answers
    cut at fewer tokens than their items now give."""
    from polyroute.evals.rescoring import short_results, stale_results
    from polyroute.evals.suites import SHIPPED, load_suite

    for name in sorted({r.suite for r in results} & set(SHIPPED)):
        if name in suites and suites[name].kind != "safety":
            continue  # a shipped accuracy suite is large to load, and its items have not changed what they expect
        suite = load_suite(name)
        n = stale_results(results, suite)
        if n:
            print(f"polyroute: {n} stored result(s) of {name} were scored against what its items expected before "
                  f"(e.g. specialised advice as must-refuse): `polyroute eval rescore {name}` scores them again "
                  "from the stored answers, as does the next `eval run` of it", file=sys.stderr)
        short = short_results(results, suite)
        if short:
            models = ",".join(sorted({r.model for r in results if r.suite == name}))
            print(f"polyroute: {short} stored answer(s) of {name} were cut at fewer tokens than its items now give "
                  f"(e.g. specialised advice kept at 64 tokens, which may have lost a closing caveat): "
                  f"`polyroute eval run {name} --models {models} --reask-short` asks them again (with the --limit "
                  "and --seed that sampled them, if any)", file=sys.stderr)
