"""``polyroute router train`` and ``polyroute router eval``: a quality router from labelled prompts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_DATA_HELP = (
    "CSV files or folders of them in RouteLLM's layout: a 'prompt' column and one True/False column per "
    "model (a folder's contaminated_prompts.jsonl is honoured: those prompts are dropped)"
)

_EVAL_EPILOG = """\
Metrics are RouteLLM's (arXiv 2406.18665): APGR is the area under the performance
gap recovered against the share of strong-model calls; CPT(x%) is the share of strong
calls needed to recover x% of the gap. Random routing scores APGR 0.5.

examples:
  polyroute router eval --router router.json --data held-out/ --weak mixtral --strong gpt-4
  polyroute router eval --folds 5 --data routellm-mmlu/ --weak mixtral --strong gpt-4 --json
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("router", help="train and evaluate a quality router",
                       description="Train and evaluate the router that strategy = \"quality\" uses.")
    inner = p.add_subparsers(dest="router_command", metavar="ACTION", required=True)

    tr = inner.add_parser("train", help="train a router model file from labelled prompts",
                          description="Train a router: one P(answers well) head per model column.")
    _common(tr)
    tr.add_argument("--model", action="append", default=[], metavar="COL",
                    help="another model column to score (repeatable): one head per model")
    tr.add_argument("--out", required=True, metavar="FILE", help="where to write the router (JSON)")
    tr.set_defaults(func=run_train)

    ev = inner.add_parser("eval", help="APGR, CPT and the quality curve of a router, beside the baselines",
                          description="Evaluate a router on labelled prompts.", epilog=_EVAL_EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(ev)
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument("--router", metavar="FILE", help="a router written by 'polyroute router train'")
    which.add_argument("--folds", type=int, metavar="K",
                       help="no router: cross-validate, training on the other groups (CSV files) for each of K parts")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--plot", metavar="FILE.png", help="draw the curve (needs matplotlib)")
    ev.set_defaults(func=run_eval)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, metavar="CSV_OR_DIR", help=_DATA_HELP)
    p.add_argument("--weak", required=True, metavar="COL", help="the weak (cheap) model's column")
    p.add_argument("--strong", required=True, metavar="COL", help="the strong model's column")


def run_train(args: argparse.Namespace) -> int:
    from polyroute.quality.data import load
    from polyroute.quality.evaluate import train
    from polyroute.quality.features import Embedder

    columns = list(dict.fromkeys([args.weak, args.strong, *args.model]))
    data = load(args.data, columns)
    model = train(data.examples, columns, Embedder())
    Path(args.out).write_bytes(model.to_json())
    print(f"trained on {len(data.examples)} prompts ({data.dropped} contaminated dropped); "
          f"heads: {', '.join(columns)}; wrote {args.out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from polyroute.errors import ConfigError
    from polyroute.quality.data import load
    from polyroute.quality.evaluate import cross_validate, decision_times, report, route_scores, train
    from polyroute.quality.features import Embedder
    from polyroute.quality.model import featurize
    from polyroute.quality.scorer import Scorer

    if args.plot:
        raise ConfigError("--plot is not available yet: use --json and plot the 'curve' field.")
    data = load(args.data, [args.weak, args.strong])
    embedder = Embedder()
    prompts = [e.prompt for e in data.examples]
    if args.router:
        scorer = Scorer.load(args.router, embedder)
        for col in (args.weak, args.strong):
            if col not in scorer.columns:
                raise ConfigError(f"{args.router} has no head for {col!r} (it has {', '.join(scorer.columns)}).")
        x = featurize(prompts, embedder, scorer.model.embedding)
        scores = route_scores(scorer.model, x, args.weak, args.strong)
        fold_of = None
    else:
        try:
            scores, fold_of = cross_validate(data, args.weak, args.strong, args.folds, embedder)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        scorer = Scorer(train(data.examples, [args.weak, args.strong], embedder), embedder)
    step = max(1, len(prompts) // 2000)
    us = decision_times(scorer, prompts[::step])
    rep = report(data, scores, args.weak, args.strong, us, fold_of)
    summary = rep.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        sys.stdout.write(render(summary))
    return 0


def render(s: dict[str, object]) -> str:
    pct = "{:.1%}".format
    folds = s["folds"]
    how = f"{folds}-fold cross-validation by group (no group both trained on and scored)" if folds else "as given"
    lines = [
        f"prompts: {s['prompts']} ({s['contaminated_dropped']} contaminated dropped); scored {how}",
        f"weak accuracy {pct(s['weak_accuracy'])}   strong accuracy {pct(s['strong_accuracy'])}",
        "",
        f"{'router':10} {'APGR':>6} {'CPT(50%)':>9} {'CPT(80%)':>9}",
        f"{'this':10} {s['apgr']:6.3f} {pct(s['cpt50']):>9} {pct(s['cpt80']):>9}",
    ]
    for name in ("length", "random", "oracle"):
        b = s[name]
        assert isinstance(b, dict)
        lines.append(f"{name:10} {b['apgr']:6.3f} {pct(b['cpt50']):>9} {pct(b['cpt80']):>9}")
    lines += ["", f"{'strong calls':>12} {'accuracy':>9} {'PGR':>6}"]
    curve = s["curve"]
    assert isinstance(curve, list)
    for row in curve:
        lines.append(f"{pct(row['strong_share']):>12} {pct(row['accuracy']):>9} {row['pgr']:6.2f}")
    per_fold = s["per_fold"]
    assert isinstance(per_fold, list)
    if per_fold:
        lines += ["", "each fold alone (groups never trained on):"]
        for f in per_fold:
            lines.append(f"  fold {f['fold']}: {f['groups']} groups, {f['prompts']} prompts: APGR {f['apgr']:.3f}, "
                         f"CPT(50%) {pct(f['cpt50'])}; length APGR {f['length_apgr']:.3f}, "
                         f"CPT(50%) {pct(f['length_cpt50'])}")
    lines += ["", f"decision time per prompt: p50 {s['decision_us_p50']:.0f} us, p99 {s['decision_us_p99']:.0f} us", ""]
    return "\n".join(lines)
