"""Hook for the local llama.cpp path: tokens/s through polyroute vs llama-cpp-python directly.

Not measured yet. Whoever adds it fills in ``run``; the runner calls it once per
run, after the gateway targets, and stores what it returns under ``"llamacpp"``
in results/latest.json (bench.report prints it). Expected shape once measured::

    {
      "model": "<gguf file name>",
      "direct_tokens_per_s": float,      # llama-cpp-python in-process, same prompt and max_tokens
      "polyroute_tokens_per_s": float,   # streamed through `polyroute serve` (backend type "llamacpp")
      "ratio": float,                    # polyroute / direct
    }

A plan to follow: a tiny GGUF model that a package ships (no downloads at run
time), a `[backends.local] type = "llamacpp"` config written like
``targets.Polyroute.config``, and ``runner.run_loadgen`` with ``--stream`` at
concurrency 1 for the gateway side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.plan import Plan


def run(plan: Plan, workdir: Path) -> dict[str, Any]:
    return {"skipped": "the llama.cpp path is not measured yet (see bench/llamacpp.py)"}
