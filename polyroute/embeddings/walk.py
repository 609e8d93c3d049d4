"""The attempts of one embeddings request, over the candidates its plan left.

Each attempt asks one backend for every input's vector at once, so the client's vectors
always come from one attempt: one model, one space. The walk is the chat path's
(``polyroute.attempts.Walk``: breakers, ``max_attempts``, the deadline, account-wide
refusals, the classification of each failure, Retry-After) and so is ``race``
(``hedge_after``); an attempt is bounded by its backend's ``answer_timeout``.

An answer is checked before it is taken: one vector per input, each as long as the
request's ``dimensions`` or, without them, as the family's catalog length. A backend
that answers vectors of another length serves another model than its config says; its
answer is refused (a bad response, so the next offer of the family is tried) rather
than put into the client's index.
"""

from __future__ import annotations

from polyroute.adapters import Adapter
from polyroute.attempts import Report, Slot, Walk, as_upstream, estimate_tokens
from polyroute.errors import UpstreamBadResponse
from polyroute.fleet import Fleet
from polyroute.health import Health
from polyroute.routing import Plan
from polyroute.stall import Deadline
from polyroute.types import make_usage
from polyroute.winner import answered_by

from .dialects import dialect_of
from .types import EmbedCall, Embedded, EmbeddingRequest


class EmbeddingWalk(Walk):
    """Attempts at one request's vectors."""

    def __init__(self, fleet: Fleet, health: Health, plan: Plan, req: EmbeddingRequest, report: Report) -> None:
        super().__init__(fleet, health, plan.route, plan.candidates, req.stand_in(), report)
        self.request = req

    def own_limit(self, adapter: Adapter) -> float:
        return adapter.config.answer_timeout  # the answer is whole when it comes: no first token to wait for

    async def run(self, slot: Slot) -> Embedded:
        # The request in the words of the server this attempt goes to (Mistral's output_dimension, ...).
        call = EmbedCall(dialect_of(slot.adapter).request(self.request), slot.entry.upstream, timeout=slot.timeout)
        try:
            async with Deadline(slot.timeout):
                got = await slot.adapter.embed(call)
        except TimeoutError:
            raise as_upstream(TimeoutError(), slot) from None
        self.check(slot, got)
        return got

    def check(self, slot: Slot, got: Embedded) -> None:
        """Refuse an answer whose vectors are not the request's: one per input, of the length it must have."""
        entry, req = slot.entry, self.request
        if len(got.vectors) != len(req.inputs):
            raise UpstreamBadResponse(f"answered {len(got.vectors)} vectors for {len(req.inputs)} inputs",
                                      backend=entry.backend, model=entry.name)
        wanted = req.dimensions or entry.dimensions
        length = len(got.vectors[0])
        if wanted is not None and length != wanted:
            whose = "the request's dimensions" if req.dimensions else f"family {entry.family}'s"
            raise UpstreamBadResponse(f"answered vectors of {length} dimensions, not {wanted} ({whose}): another "
                                      "model's vectors would not match the index", backend=entry.backend,
                                      model=entry.name)

    async def abandoned(self, slot: Slot, result: Embedded | None) -> None:
        self.bill(slot, result)  # a hedge's loser: the upstream has read, and billed, the inputs
        await self.release(slot)

    def bill(self, slot: Slot, got: Embedded | None) -> None:
        """Add an attempt's input tokens to the report: the upstream's count, else an estimate."""
        counted = got.prompt_tokens if got is not None else None
        if counted is not None:
            self.report.bill(slot.entry, make_usage(counted, 0))
        else:
            self.report.bill(slot.entry, make_usage(self.estimate(), 0), estimated=True)

    def estimate(self) -> int:
        """The inputs' tokens at about four characters a token (token ids: counted)."""
        return sum(estimate_tokens(len(x)) if isinstance(x, str) else len(x) for x in self.request.inputs)


async def embed_over(fleet: Fleet, health: Health, plan: Plan, req: EmbeddingRequest, report: Report) -> Embedded:
    """The vectors of ``req`` from the first candidate of ``plan`` that answers; AllAttemptsFailed when none does."""
    walk = EmbeddingWalk(fleet, health, plan, req, report)
    slot, got = await answered_by(walk, plan.route.config.hedge_after)
    walk.bill(slot, got)
    return got
