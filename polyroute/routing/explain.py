"""A decision told back: what ``polyroute route explain`` prints and ``x-polyroute-route-explain`` carries."""

from __future__ import annotations

import json
import math
from typing import Any

from polyroute.routing import Plan


def _usd(value: float | None) -> float | None:
    """Rounded to 1e-8 USD; None (JSON null) for unknown or infinite values."""
    return None if value is None or not math.isfinite(value) else round(value, 8)


def explain(plan: Plan) -> dict[str, Any]:
    """The decision as plain data: order with scores and costs, exclusions with reasons."""
    needs = plan.needs
    return {
        "route": plan.route.name,
        "strategy": plan.strategy,
        "policy": plan.policy,
        "request": None if needs is None else {
            "prompt_tokens_est": needs.prompt_tokens,
            "output_tokens_est": needs.output_tokens,
            "needs": sorted(needs.capabilities),
        },
        "score": plan.score,
        "order": [
            {"model": e.name, "backend": e.backend, "score": _usd(plan.scores[e.name]),
             "cost_usd_est": _usd(plan.cost(e)), "context_window": e.context_window, **_demoted(plan, e.name)}
            for e in plan.candidates
        ],
        "excluded": [
            {"model": e.name, "backend": e.backend, "reason": reason, "cost_usd_est": _usd(plan.cost(e))}
            for e, reason in plan.excluded
        ],
    }


def _demoted(plan: Plan, name: str) -> dict[str, str]:
    why = plan.demoted.get(name)
    return {} if why is None else {"fallback_only": why}


def header_value(plan: Plan) -> str:
    """Compact JSON, ASCII only, so it is a valid HTTP header value."""
    return json.dumps(explain(plan), separators=(",", ":"), ensure_ascii=True)


def render(plan: Plan) -> str:
    """The decision for a terminal."""
    doc = explain(plan)
    lines = [f"route {doc['route']}: strategy {doc['strategy']}, policy {doc['policy'] or '(none)'}"]
    req = doc["request"]
    if req is not None:
        needs = ", ".join(req["needs"]) or "nothing special"
        lines.append(f"request: ~{req['prompt_tokens_est']} prompt tokens, {req['output_tokens_est']} output "
                     f"tokens expected; needs {needs}")
    if doc["order"]:
        lines.append(f"order (score = {doc['score']}):")
        for i, row in enumerate(doc["order"], 1):
            lines.append(f"  {i}. {row['model']} [{row['backend']}]  score {_score(row['score'])}  "
                         f"est. cost {_money(row['cost_usd_est'])}"
                         + (f"  context {row['context_window']}" if row["context_window"] else "")
                         + (f"  (fallback only: {row['fallback_only']})" if "fallback_only" in row else ""))
    else:
        lines.append("order: no candidate qualifies; the request would be refused (422)")
    if doc["excluded"]:
        lines.append("excluded:")
        for row in doc["excluded"]:
            lines.append(f"  - {row['model']} [{row['backend']}] (est. cost {_money(row['cost_usd_est'])}): "
                         f"{row['reason']}")
    return "\n".join(lines) + "\n"


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def _score(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g}"
