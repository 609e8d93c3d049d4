"""Parameters a model refuses, learned from its answers: sent without them from then on.

A request that is valid OpenAI can still carry a parameter one model refuses: a sampling
knob a reasoning model does not take (OpenAI's ``unsupported_value``), one a newer Claude
has removed ("`temperature` is deprecated for this model"), a value out of one provider's
range. Such a 400 is the model's limit, not the client's mistake. When the parameter is
one a model may answer without (``DROPPABLE``), the walk tries the same model again
without it, and the client is told so in ``x-polyroute-dropped-params``, as for a
parameter a backend is known not to carry; the refusal is remembered for ``REMEMBER``
seconds, so later requests drop it at once instead of paying for the refusal again.
Other refusals (a forced tool call a thinking model will not make, a schema it cannot
follow) move the request to the next candidate. With ``[gateway] unsupported_params =
"refuse"`` nothing is dropped: a model that refuses a parameter is skipped.
"""

from __future__ import annotations

import time

# Parameters the gateway adds to a request itself: a server that refuses one is sent the request without it,
# whether or not the client sent it. ``stream_options`` asks a stream for its usage, to bill it;
# ``thought_signature`` stands for the Gemini signatures passed on, which Google may refuse as another endpoint's
# (the same model is then sent Google's stand-ins, polyroute.adapters.gemini_signatures); ``system_placement``
# stands for a system message the gateway left where it sits in a conversation for a Claude that takes it there,
# which a cloud or relay serving that Claude may refuse (it is then sent at the top, polyroute.adapters.claude_turns).
# ``block_binding`` stands for the binding of returned thinking the gateway asks of a Claude that checks it, with its
# beta header, which an endpoint without that beta refuses (Claude on Vertex AI). ``anthropic_beta`` stands for the
# betas a Messages client named in its header, which the gateway carries beside the request's fields: an endpoint
# that lacks some is asked again without the ones it named (which are kept per model in ``BetaRefusals``).
USAGE_OPTION = "stream_options"
SYSTEM_PLACEMENT = "system_placement"
BLOCK_BINDING = "block_binding"
CLIENT_BETAS = "anthropic_beta"
OWN = frozenset({USAGE_OPTION, "thought_signature", SYSTEM_PLACEMENT, BLOCK_BINDING, CLIENT_BETAS})
# Parameters without which a model still answers the same request, only less tuned to it. Not among them:
# ``stop``, ``logit_bias`` (an answer without them says what the client ruled out) and ``logprobs`` /
# ``top_logprobs`` (the client reads them): a model refusing one of these is left for the next candidate.
# ``cache_control`` stands for the prompt-cache breakpoints a request carries anywhere (polyroute.cache_marks).
DROPPABLE = frozenset({
    "temperature", "top_p", "top_k", "presence_penalty", "frequency_penalty", "repetition_penalty",
    "seed", "parallel_tool_calls", "reasoning_effort", "cache_control",
    *OWN,
})
# Parameters the answer is read by: never dropped, whether a model refuses one or its backend cannot carry one. A
# candidate without them is passed over, as with ``unsupported_params = "refuse"``.
ANSWER_SHAPING = frozenset({"stop", "logit_bias", "logprobs", "top_logprobs", "response_format"})
REMEMBER = 3600.0  # seconds a learned refusal is kept: a provider may take the parameter again


class Refusals:
    """What each (backend, upstream model) has refused lately, for every request of this process."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, str, str], float] = {}

    def note(self, backend: str, model: str, param: str) -> None:
        self._until[(backend, model, param)] = time.monotonic() + REMEMBER

    def of(self, backend: str, model: str) -> frozenset[str]:
        """The parameters this model refused within the last ``REMEMBER`` seconds."""
        if not self._until:
            return frozenset()
        now = time.monotonic()
        return frozenset(p for (b, m, p), until in self._until.items() if b == backend and m == model and until > now)


class BetaRefusals:
    """The ``anthropic-beta`` values each upstream model of one backend refused lately: left out of its requests for
    ``REMEMBER`` seconds. Held by that backend's adapter, which alone reads the names an endpoint refuses. Beta names
    come from clients, so at most ``MOST_PER_MODEL`` are kept for a model, the oldest going first."""

    MOST_PER_MODEL = 64

    def __init__(self) -> None:
        self._until: dict[str, dict[str, float]] = {}  # model -> beta -> until (monotonic)

    def note(self, model: str, betas: frozenset[str]) -> None:
        kept = self._until.setdefault(model, {})
        now = time.monotonic()
        for beta in sorted(betas):
            kept.pop(beta, None)  # noted again: now the newest
            if len(kept) >= self.MOST_PER_MODEL:
                del kept[next(iter(kept))]
            kept[beta] = now + REMEMBER

    def of(self, model: str) -> frozenset[str]:
        """The betas ``model`` refused within the last ``REMEMBER`` seconds."""
        kept = self._until.get(model)
        if not kept:
            return frozenset()
        now = time.monotonic()
        return frozenset(b for b, until in kept.items() if until > now)
