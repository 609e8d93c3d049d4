"""``polyroute router train`` and ``polyroute router eval``: a quality router from labelled prompts."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from polyroute.cli import out_file

if TYPE_CHECKING:
    from polyroute.quality.trainset import TrainingSet

_DATA_HELP = (
    "CSV files or folders of them in RouteLLM's layout: a 'prompt' column and one True/False column per "
    "model (a folder's contaminated_prompts.jsonl is honoured: those prompts are dropped)"
)

_EVAL_EPILOG = """\
Metrics are RouteLLM's (arXiv 2406.18665): APGR is the area under the performance
gap recovered against the share of strong-model calls; CPT(x%) is the share of strong
calls needed to recover x% of the gap. Random routing scores APGR 0.5.

examples:
  polyroute router eval --router router.json --data held-out/ \\
      --weak mistralai/Mixtral-8x7B-Instruct-v0.1 --strong gpt-4-1106-preview
  polyroute router eval --folds 5 --data routellm-mmlu/ \\
      --weak mistralai/Mixtral-8x7B-Instruct-v0.1 --strong gpt-4-1106-preview --json
"""


_TRAIN_EPILOG = """\
sources (one or more; rows of all of them are learned together):
  --data CSV_OR_DIR...  labelled prompts; the columns are --weak, --strong, --model, --models
  --from-evals          the results `polyroute eval run` stored ([evals] db of --config, or --evals-db);
                        one head per model of --models
  --from-feedback       the scores sent to POST /v1/feedback, joined to the decisions the gateway
                        recorded ([store] url of --config, or --store); with --router BASE the heads
                        start from BASE's and move as far as the feedback pulls them

examples:
  polyroute router train --data routellm-mmlu/ \\
      --weak mistralai/Mixtral-8x7B-Instruct-v0.1 --strong gpt-4-1106-preview --out router.json
  polyroute router train --from-evals --models small,large --suites mmlu --out router.json
  polyroute router train --from-feedback --config polyroute.toml --router router.json --out router.json
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("router", help="train and evaluate a quality router",
                       description="Train and evaluate the router that strategy = \"quality\" uses.")
    inner = p.add_subparsers(dest="router_command", metavar="ACTION", required=True)

    tr = inner.add_parser("train", help="train a router model file from labelled prompts, evals or feedback",
                          description="Train a router: one P(answers well) head per model.", epilog=_TRAIN_EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--data", nargs="+", metavar="CSV_OR_DIR", help=_DATA_HELP)
    tr.add_argument("--weak", metavar="COL", help="the weak (cheap) model's column")
    tr.add_argument("--strong", metavar="COL", help="the strong model's column")
    tr.add_argument("--model", action="append", default=[], metavar="COL",
                    help="another model column to score (repeatable): one head per model")
    tr.add_argument("--models", metavar="A,B,...", help="model columns (or eval models), comma-separated")
    tr.add_argument("--from-evals", action="store_true", help="learn from stored `polyroute eval` results")
    tr.add_argument("--suites", metavar="S,...",
                    help="with --from-evals: the suites, by name or JSONL file (default: every shipped suite)")
    tr.add_argument("--evals-db", metavar="FILE", help="with --from-evals: the results file (default: [evals] db)")
    tr.add_argument("--from-feedback", action="store_true", help="learn from POST /v1/feedback scores")
    tr.add_argument("--store", metavar="FILE", help="with --from-feedback: the store's file (default: [store] url)")
    tr.add_argument("--route", action="append", default=[], metavar="NAME",
                    help="with --from-feedback: only this route's decisions (repeatable)")
    tr.add_argument("--router", metavar="BASE", help="start from this router's heads (a warm start)")
    tr.add_argument("--config", metavar="FILE", default=os.environ.get("POLYROUTE_CONFIG"),
                    help="the gateway's TOML config, for [evals] db and [store] url")
    tr.add_argument("--out", required=True, metavar="FILE", type=out_file, help="where to write the router (JSON)")
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
    ev.add_argument("--plot", metavar="FILE.png", type=out_file,
                    help="draw accuracy against the share of strong calls, beside the baselines "
                         "(needs polyroute[plot])")
    ev.set_defaults(func=run_eval)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, metavar="CSV_OR_DIR", help=_DATA_HELP)
    p.add_argument("--weak", required=True, metavar="COL", help="the weak (cheap) model's column")
    p.add_argument("--strong", required=True, metavar="COL", help="the strong model's column")


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def run_train(args: argparse.Namespace) -> int:
    from polyroute.errors import ConfigError
    from polyroute.quality.features import Embedder
    from polyroute.quality.model import QualityModel
    from polyroute.quality.trainset import TrainingSet

    columns = list(dict.fromkeys(c for c in [args.weak, args.strong, *args.model, *_names(args.models)] if c))
    if not (args.data or args.from_evals or args.from_feedback):
        raise ConfigError("Nothing to learn from: give --data, --from-evals or --from-feedback.")
    if (args.data or args.from_evals) and not columns:
        raise ConfigError("Name the models to learn: --models A,B (or --weak and --strong).")
    base = QualityModel.load(args.router) if args.router else None
    ts = TrainingSet()
    said: list[str] = []
    if args.data or args.from_evals:
        embedder = Embedder()
        if args.data:
            from polyroute.quality.data import load

            data = load(args.data, columns)
            ts.add_examples(data.examples, columns, embedder)
            said.append(f"{len(data.examples)} labelled prompts ({data.dropped} contaminated dropped)")
        if args.from_evals:
            from polyroute.quality.from_evals import from_evals

            evals, skipped = from_evals(_evals_db(args), columns, _names(args.suites))
            ts.add_examples(evals.examples, columns, embedder)
            said.append(f"{len(evals.examples)} eval items" + (f" (left out: {skipped.describe()})"
                                                                if skipped.describe() else ""))
    if args.from_feedback:
        said.append(_add_feedback(args, ts))
    if ts.rows == 0:
        raise ConfigError(f"Nothing to learn from: {'; '.join(said)}.")
    try:
        model = ts.fit(base)
    except ValueError as exc:
        raise ConfigError(f"Cannot train: {exc}.") from None
    if unlabelled := [c for c in columns if c not in model.columns]:
        # A model asked for and given no head would get no prediction: a misspelt name, or no results for it.
        raise ConfigError(f"Nothing was learnt for {', '.join(unlabelled)}: no labels for "
                          f"{'it' if len(unlabelled) == 1 else 'them'} in {'; '.join(said)} (heads learnt: "
                          f"{', '.join(model.columns) or 'none'}). Check the names, or run the evals first.")
    if base is None and ts.rows < FEW_ROWS:
        print(f"polyroute: warning: trained from scratch on {ts.rows} rows; a router needs hundreds to rank "
              "prompts better than by price (start from one with --router BASE, or add --data / --from-evals)",
              file=sys.stderr)
    _write_atomically(Path(args.out), model.to_json())
    start = f"; started from {args.router}" if base else ""
    print(f"trained on {'; '.join(said)}{start}; heads: {', '.join(model.columns)}; wrote {args.out}")
    return 0


# Fewer rows than this, with no router to start from, make a router that knows next to nothing.
FEW_ROWS = 100


def _add_feedback(args: argparse.Namespace, ts: TrainingSet) -> str:
    from polyroute.errors import ConfigError
    from polyroute.quality.decision_store import DecisionStore
    from polyroute.quality.features import FEATURE_SET

    path = Path(args.store) if args.store else _store_path(args)
    if not path.is_file():
        raise ConfigError(f"No store at {path}: feedback is kept where the gateway's [store] url points.")
    if args.route and args.config:
        from polyroute.settings import effective_config

        routes = effective_config(args.config).routes
        if unknown := [r for r in args.route if r not in routes]:
            quality = ", ".join(n for n, r in routes.items() if r.strategy == "quality") or "none"
            raise ConfigError(f"--route {', '.join(unknown)}: no such route in {args.config} (its quality routes: "
                              f"{quality})")
    store = DecisionStore(path)
    try:
        rows, other = store.labelled(FEATURE_SET, args.route)
    finally:
        store.close()
    ts.add_feedback(rows)
    left_out = f", {other} recorded with other features left out" if other else ""
    return f"{len(rows)} feedback scores (from {path}{left_out})"


def _evals_db(args: argparse.Namespace) -> Path:
    if args.evals_db:
        return Path(args.evals_db)
    from polyroute.settings import effective_config

    return Path(effective_config(args.config).evals.db).expanduser()


def _store_path(args: argparse.Namespace) -> Path:
    from polyroute.settings import effective_config
    from polyroute.tenancy.sqlite import path_of

    return path_of(effective_config(args.config).store.url)


def _write_atomically(path: Path, data: bytes) -> None:
    """A gateway polling the file never reads it half-written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def run_eval(args: argparse.Namespace) -> int:
    from polyroute.errors import ConfigError
    from polyroute.quality.data import load
    from polyroute.quality.evaluate import cross_validate, decision_times, report, route_scores, train
    from polyroute.quality.features import Embedder
    from polyroute.quality.model import featurize
    from polyroute.quality.scorer import Scorer

    data = load(args.data, [args.weak, args.strong])
    weak_acc, strong_acc = (sum(e.labels[c] for e in data.examples) / len(data.examples)
                            for c in (args.weak, args.strong))
    if strong_acc <= weak_acc:
        # PGR divides by the gap: with none, or a negative one, every figure below would mean nothing or its opposite.
        raise ConfigError(f"On this data --strong {args.strong!r} is right on {strong_acc:.1%} and --weak "
                          f"{args.weak!r} on {weak_acc:.1%}: the strong model is not the stronger here, so there is "
                          "no quality gap to recover and APGR and CPT are not defined. Swap --weak and --strong, or "
                          "evaluate on data where the strong model is better.")
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
    if args.plot:
        from polyroute.quality.plot import draw

        draw(rep, args.plot)
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
    references = (("length", "length", ""), ("random", "random", ""), ("oracle", "oracle", ""),
                  ("group_rate_oracle", "group rate", "   (an oracle that knows each group's true gain rate)"))
    for key, name, note in references:
        b = s[key]
        assert isinstance(b, dict)
        lines.append(f"{name:10} {b['apgr']:6.3f} {pct(b['cpt50']):>9} {pct(b['cpt80']):>9}{note}")
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
