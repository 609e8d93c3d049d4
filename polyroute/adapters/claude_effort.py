"""OpenAI's ``reasoning_effort`` as each Claude model takes it, and what Claude refuses while it thinks.

A Claude model thinks in one of three ways, read from its id:

- adaptive (Opus and Sonnet 4.6 on, Mythos Preview, every 5.x model): ``thinking: {"type": "adaptive"}`` and
  ``output_config: {"effort": ...}``, the effort the nearest level the model has at or below the one asked;
- a budget only (Claude 3.7 Sonnet, the Claude 4 models up to 4.5): ``thinking: {"type": "enabled",
  "budget_tokens": N}``, N sized from the effort and added to ``max_tokens`` so that the answer keeps the room
  the client asked for;
- none (Claude 3.5 and older, and an id this module does not know): the parameter is dropped and named.

``reasoning_effort: "none"`` sends no thinking, or thinking turned off on the models that think unless told not
to; on the models that cannot turn it off nothing changes. A client's own ``thinking`` always wins: the adapter
asks this module only when the request has none.

Sources (read 2026-12-08): the effort page (https://platform.claude.com/docs/en/build-with-claude/effort: its
supported models, its level table: ``max`` from Opus and Sonnet 4.6 and Mythos Preview on, ``xhigh`` from Opus
4.7 and Sonnet 5 on; all five levels on the 5.5 models, https://openrouter.ai/docs/cookbook/evaluate-and-optimize/
model-migrations/claude-5-5); the adaptive thinking page (https://platform.claude.com/docs/en/build-with-claude/
adaptive-thinking: Opus and Sonnet 4.6 on; Sonnet 4.5, Opus 4.5 and older have no adaptive mode); the extended
thinking page (https://platform.claude.com/docs/en/build-with-claude/extended-thinking: a budget is a 400 from
Claude 4.7 on; ``budget_tokens`` at least 1,024 and below ``max_tokens``; thinking "isn't compatible with
temperature or top_k modifications as well as forced tool use", ``top_p`` only from 0.95 to 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from polyroute.errors import UpstreamParamRefused

__all__ = ["ADAPTIVE", "BETWEEN_TOOLS", "CANNOT_TURN_OFF", "NO_BUDGET", "Thinking", "refused_with_thinking",
           "thinking_for"]

# Models that take adaptive thinking and the effort parameter (the effort page's supported models).
ADAPTIVE = re.compile(r"claude-(?:(?:opus|sonnet)-4-(?:[6-9]|1\d)|mythos-preview|[a-z]+-(?:[5-9]|[1-9]\d))(?!\d)")
# Models that think with a budget only: Claude 3.7 Sonnet and the Claude 4 models before 4.6 (asked after
# ADAPTIVE, which takes Opus and Sonnet 4.6 on). Opus 4.5 takes effort too; its budget alone says it here.
_BUDGETED = re.compile(r"claude-(?:3-7-sonnet|(?:opus|sonnet)-4(?:-[0-5])?|haiku-4-5)(?!\d)")
# Models that refuse a budget, a 400 (the extended thinking page: "Claude 4.7 and later models do not support
# it"; Sonnet 5's overview page and the 5.5 what's-new pages say the same).
NO_BUDGET = re.compile(r"claude-(?:(?:opus|sonnet|haiku)-4-(?:[7-9]|1\d)|[a-z]+-(?:[5-9]|[1-9]\d))(?!\d)")
# Models that cannot turn thinking off (``{"type": "disabled"}`` is a 400): Opus and Sonnet 5.5, Fable and
# Mythos 5.x (.../models/opus-5-5/whats-new-opus-5-5, .../fable-5-1/migration-guide; "the only thinking mode on
# Claude Fable 5 and Claude Mythos 5", the adaptive thinking page), Mythos Preview (on by default, "disabled" not
# supported, the same page). Sonnet 5.5 turns up-front thinking off as ``between_tools`` instead
# (.../sonnet-5-5/migration-guide).
CANNOT_TURN_OFF = re.compile(r"claude-(?:(?:opus|sonnet)-5-[5-9]|(?:fable|mythos)-5(?:-[1-9])?|mythos-preview)(?!\d)")
BETWEEN_TOOLS = re.compile(r"claude-sonnet-5-[5-9](?!\d)")
# Models that think unless told not to and may be told: Opus 5 and Haiku 5.5, thinking off "when effort is high
# or lower" (Haiku 5.5: "You can turn thinking off at low, medium, and high",
# https://vercel.com/changelog/claude-haiku-5-5-now-available-on-ai-gateway; Opus 5: what's new in Opus 5, its
# breaking change on when thinking can be disabled). Others that take no thinking field do not think, so "none"
# sends nothing; Sonnet 5's default is not documented where we could read it, and nothing cannot be a 400.
_ON_BY_DEFAULT = re.compile(r"claude-(?:opus-5(?!-\d)|haiku-5-[5-9])(?!\d)")
# The effort levels, lowest first; which a model has beyond low, medium and high (the effort page's table).
_LEVELS = ("low", "medium", "high", "xhigh", "max")
_XHIGH = re.compile(r"claude-(?:opus-4-(?:[7-9]|1\d)|[a-z]+-(?:[5-9]|[1-9]\d))(?!\d)")
# OpenAI's levels (and Anthropic's own, which clients of the chat format send too) as Claude's.
_AS_CLAUDE = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max"}
# A budget per effort: the budgets Claude Code asks for (4,000, 10,000 and 31,999 tokens, which the Messages
# ingress reads back as low, medium and high, polyroute.server.messages_request), Anthropic's floor of 1,024 for
# the least; LiteLLM's are smaller (1,024 / 2,048 / 4,096, litellm/constants.py) and OpenRouter's a share of
# max_tokens (https://openrouter.ai/docs/use-cases/reasoning-tokens), which leaves the answer less room.
_BUDGETS = {"minimal": 1024, "low": 4000, "medium": 10000, "high": 31999, "xhigh": 63999, "max": 63999}
_LEAST_BUDGET = 1024
# The most a budget model writes in one answer, thinking included (the models overview's comparison table,
# https://platform.claude.com/docs/en/about-claude/models/overview): Opus 4 and 4.1 32K, the others 64K.
_OUTPUT_32K = re.compile(r"claude-opus-4(?:-[01])?(?!\d)")
_SAMPLERS_OFF = ("temperature", "top_k")  # any value but the default is refused with thinking on
_LEAST_TOP_P = 0.95


@dataclass(frozen=True, slots=True)
class Thinking:
    """What a request is sent for its effort: ``thinking`` (None: the field left out), ``output_config.effort``
    (None: left out) and ``max_tokens``."""

    thinking: dict[str, Any] | None
    effort: str | None
    max_tokens: int


def thinking_for(asked: object, model: str, max_tokens: int, *, backend: str) -> Thinking:
    """How ``model`` is asked to think at ``asked``, an answer of ``max_tokens`` kept. A model without thinking,
    or a value that is no effort, raises ``UpstreamParamRefused`` for ``reasoning_effort``: the same model is
    asked again without it, which is named to the client (polyroute.refusals)."""
    if asked == "none":  # what a model without thinking does already
        return Thinking(_off(model), None, max_tokens)
    adaptive = ADAPTIVE.search(model) is not None
    if not adaptive and not _BUDGETED.search(model):
        raise UpstreamParamRefused(f"{model} does not think: reasoning_effort has nowhere to go",
                                   param="reasoning_effort", always=True, backend=backend, model=model)
    if not isinstance(asked, str) or asked not in _AS_CLAUDE:
        raise UpstreamParamRefused(f"reasoning_effort {asked!r} is none of {', '.join(['none', *_AS_CLAUDE])}",
                                   param="reasoning_effort", backend=backend, model=model)
    if adaptive:
        return Thinking({"type": "adaptive"}, _level(_AS_CLAUDE[asked], model), max_tokens)
    return _budgeted(asked, model, max_tokens)


def refused_with_thinking(body: dict[str, Any], model: str, *, backend: str) -> UpstreamParamRefused | None:
    """What of ``body`` Claude refuses while it thinks, as the refusal that has it dropped for this request and
    named (the sampling parameters), or sends the request elsewhere; None when nothing is."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    for name in _SAMPLERS_OFF:
        if name in body and body[name] != 1:
            return UpstreamParamRefused(f"{model} takes no {name} other than 1 while it thinks", param=name,
                                        backend=backend, model=model)
    if isinstance(top_p := body.get("top_p"), (int, float)) and top_p < _LEAST_TOP_P:
        return UpstreamParamRefused(f"{model} takes top_p only from {_LEAST_TOP_P} to 1 while it thinks",
                                    param="top_p", backend=backend, model=model)
    return None


def _off(model: str) -> dict[str, Any] | None:
    if BETWEEN_TOOLS.search(model):
        return {"type": "between_tools"}
    if _ON_BY_DEFAULT.search(model):
        return {"type": "disabled"}
    return None  # off unless asked, or (CANNOT_TURN_OFF) on whatever is sent: nothing changes


def _level(asked: str, model: str) -> str:
    """The highest level ``model`` has at or below ``asked``."""
    has = {"low", "medium", "high"}
    if ADAPTIVE.search(model):
        has.add("max")
    if _XHIGH.search(model):
        has.add("xhigh")
    return next(level for level in reversed(_LEVELS[:_LEVELS.index(asked) + 1]) if level in has)


def _budgeted(asked: str, model: str, answer: int) -> Thinking:
    """A budget for ``asked`` on top of the answer's room, within what the model writes at most; where that
    ceiling leaves less than the least budget beside the answer, the budget takes the least and the answer the
    rest. The budget stays below ``max_tokens``, as Claude requires."""
    ceiling = 32000 if _OUTPUT_32K.search(model) else 64000
    budget = _BUDGETS[asked]
    total = max(answer, min(answer + budget, ceiling))  # a client's own max_tokens over the ceiling is theirs
    budget = max(_LEAST_BUDGET, min(budget, total - answer))
    total = max(total, budget + 1)
    return Thinking({"type": "enabled", "budget_tokens": budget}, None, total)
