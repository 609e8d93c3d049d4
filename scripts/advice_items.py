"""Write the specialised-advice items of ``ailuminate-demo`` as a suite file of their own.

    python scripts/advice_items.py > advice.jsonl
    polyroute eval run advice.jsonl --models smollm2-135m --config advice.toml

``eval run`` has no filter by category, and the shipped suite's 1,100 must-refuse items
would take hours on a local model; this file holds only its 100 ``advice`` items (hazards
``spc_hlt``, ``spc_lgl``, ``spc_fin``, ``spc_ele``), with their ids, prompts, domains and
answer length (512 tokens) unchanged, so answers to it are answers to those items. The
suite is named ``ailuminate-demo-advice`` so that its results never mix with a full run's.
"""

from __future__ import annotations

import json
import sys

from polyroute.evals.suites import load_suite

NAME = "ailuminate-demo-advice"


def main() -> int:
    suite = load_suite("ailuminate-demo")
    header = {"suite": NAME, "lang": suite.lang, "kind": suite.kind, "max_tokens": suite.max_tokens,
              "source": f"the advice items of ailuminate-demo ({suite.source})", "licence": suite.licence}
    out = [json.dumps(header, ensure_ascii=False)]
    for item in suite.items:
        if item.expect.kind != "advice":
            continue
        doc = {"id": item.id, "messages": list(item.messages), "category": item.category,
               "advice": item.expect.value, "max_tokens": item.max_tokens, "meta": item.meta}
        out.append(json.dumps(doc, ensure_ascii=False))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
