"""Build the suites shipped in ``polyroute/evals/data`` from the project's data folder.

    python scripts/build_eval_suites.py /work/shared/data

``xstest-zh`` is built from the upstream XSTest file and the project's translation,
``scripts/data/xstest_zh.tsv`` (one prompt a line, with how much of the safe/unsafe
contrast survived and why).

Each suite is one gzipped JSONL file: a header line (name, language, kind, source,
licence, generation settings) and then one item a line. The upstream licence files
are copied beside the suites. The output is deterministic (no timestamps), so a
rebuild from the same data gives the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import shutil
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "polyroute" / "evals" / "data"
XSTEST_ZH = Path(__file__).resolve().parent / "data" / "xstest_zh.tsv"
_CHOICE_LINE = re.compile(r"^([A-J])\. ?(.*)$")


def write_suite(name: str, header: dict[str, object], items: list[dict[str, object]]) -> None:
    path = OUT / f"{name}.jsonl.gz"
    lines = [json.dumps({"suite": name, **header}, ensure_ascii=False)]
    lines += [json.dumps(item, ensure_ascii=False) for item in items]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    # mtime=0: the same data gives the same bytes.
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)
    print(f"{path.name}: {len(items)} items")


def xstest(src: Path) -> None:
    rows = list(csv.DictReader((src / "xstest_prompts.csv").open(encoding="utf-8")))
    items = [{"id": r["id"], "prompt": r["prompt"], "category": r["type"], "refuse": r["label"] == "unsafe",
              "meta": {"focus": r["focus"], "note": r["note"]}} for r in rows]
    write_suite("xstest", {
        "lang": "en", "kind": "safety", "max_tokens": 64,
        "source": "XSTest v2, paul-rottger/exaggerated-safety, xstest_prompts.csv (Röttger et al., 2024)",
        "licence": "CC-BY-4.0", "licence_file": "xstest.LICENSE",
        "notes": "250 safe prompts a model must answer, 200 unsafe contrast prompts it must refuse. Unchanged.",
    }, items)
    shutil.copyfile(src / "LICENSE", OUT / "xstest.LICENSE")


def xstest_zh(src: Path) -> None:
    """The same 450 prompts in Chinese, from the project's own translation (``scripts/data/xstest_zh.tsv``)."""
    rows = {r["id"]: r for r in csv.DictReader((src / "xstest_prompts.csv").open(encoding="utf-8"))}
    lines = [line for line in XSTEST_ZH.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    zh = {r["id"]: r for r in csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)}
    if zh.keys() != rows.keys():
        raise SystemExit(f"{XSTEST_ZH.name}: ids differ from xstest: {sorted(zh.keys() ^ rows.keys())[:10]}")
    items = [{"id": r["id"], "prompt": zh[r["id"]]["prompt"], "category": r["type"], "refuse": r["label"] == "unsafe",
              "meta": {"focus": r["focus"], "note": r["note"], "en": r["prompt"], "reviewed": True,
                       "contrast": zh[r["id"]]["contrast"], "translation_note": zh[r["id"]]["note"]}}
             for r in rows.values()]
    write_suite("xstest-zh", {
        "lang": "zh", "kind": "safety", "max_tokens": 64,
        "source": "XSTest v2 (Röttger et al., 2024), paul-rottger/exaggerated-safety, xstest_prompts.csv; "
                  "translation into Simplified Chinese by the polyroute project",
        "licence": "CC-BY-4.0", "licence_file": "xstest.LICENSE",
        "notes": "Adapted material under CC-BY-4.0: the 450 XSTest v2 prompts translated by the polyroute project, "
                 "same ids, types and labels (250 safe, 200 unsafe). Each safe/unsafe pair was reviewed so that the "
                 "safe prompt still resembles a harmful one on the surface. meta.en is the English original; "
                 "meta.contrast says whether that resemblance was kept, weakened (the English pun has no Chinese "
                 "equivalent) or substituted (a Chinese wording that makes the same test), with meta.translation_note.",
    }, items)


def ailuminate(src: Path) -> None:
    csv_path = src / "airr_official_1.0_demo_en_us_prompt_set_release.csv"
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    items = [{"id": r["release_prompt_id"], "prompt": r["prompt_text"], "category": r["hazard"], "refuse": True,
              "meta": {"persona": r["persona"], "locale": r["locale"]}} for r in rows]
    write_suite("ailuminate-demo", {
        "lang": "en", "kind": "safety", "max_tokens": 64,
        "source": "AILuminate v1.0 public demo prompt set, mlcommons/ailuminate, "
                  "airr_official_1.0_demo_en_us_prompt_set_release.csv",
        "licence": "CC-BY-4.0", "licence_file": "ailuminate-demo.LICENSE.md",
        "notes": "1,200 prompts written to elicit hazardous answers, 12 hazards (category). Scored as refused or "
                 "not; an answer that complies safely counts as not refused. Keep out of logs shown to users.",
    }, items)
    shutil.copyfile(src / "LICENSE.md", OUT / "ailuminate-demo.LICENSE.md")


def _choices(prompt: str) -> list[str]:
    found: list[str] = []
    for line in prompt.splitlines():
        m = _CHOICE_LINE.match(line)
        if m and m.group(1) == "ABCDEFGHIJ"[len(found)]:
            found.append(m.group(2))
    return found


def mmlu(src: Path) -> None:
    contaminated = {json.loads(line)["eval_prompt"] for line in (src / "contaminated_prompts.jsonl").open()}
    items: list[dict[str, object]] = []
    for path in sorted(src.glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        for i, r in enumerate(csv.DictReader(path.open(encoding="utf-8"))):
            item: dict[str, object] = {"id": f"{subject}-{i}", "prompt": r["prompt"], "category": subject,
                                       "choices": _choices(r["prompt"]), "choices_shown": True, "answer": None}
            if r["prompt"] in contaminated:
                item["meta"] = {"router_training_overlap": True}
            items.append(item)
    write_suite("mmlu", {
        "lang": "en", "kind": "accuracy", "max_tokens": 8,
        "system": "Answer with the letter of the correct option only.",
        "source": "MMLU (Hendrycks et al., 2021) as shipped by lm-sys/RouteLLM, routellm/evals/mmlu/",
        "licence": "Apache-2.0", "licence_file": "mmlu.LICENSE",
        "notes": "14,042 questions, 57 subjects (category). The source holds no answer key (only whether two "
                 "reference models were right), so answers are recorded with the letter they pick and stay "
                 "unscored until a key is added. meta.router_training_overlap marks the prompts the source lists "
                 "as overlapping router training data: they matter for router evaluation, not here.",
    }, items)
    shutil.copyfile(src / "LICENSE", OUT / "mmlu.LICENSE")


def main() -> None:
    data = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data")
    OUT.mkdir(parents=True, exist_ok=True)
    xstest(data / "xstest")
    xstest_zh(data / "xstest")
    ailuminate(data / "ailuminate")
    mmlu(data / "routellm-mmlu")


if __name__ == "__main__":
    main()
