"""Moving averages of each model's speed, fed by the gateway after every request.

Two exponentially weighted moving averages per model: time to first token
(seconds) and generation speed (tokens per second). What each attempt teaches:

- a stream that succeeded: its time to first token, and its tokens over the time
  from the first token to the end;
- a whole (non-stream) answer: its total time less the expected generation time
  at the current speed estimate, as a time-to-first-token sample (a whole answer
  cannot tell the two apart);
- a failed attempt: its time plus a fixed penalty, as a time-to-first-token
  sample, so that ``fastest`` moves a failing model down until it recovers.
  Refusals of the request itself (``rejected``, ``context_exceeded``) teach
  nothing about the model's speed and are skipped.

State lives on the object the gateway owns; each worker process learns alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from polyroute.errors import Attempt
from polyroute.fleet import ModelEntry
from polyroute.types import Usage

# Outcomes that say nothing of the model's speed: the request was wrong, or the attempt was
# given up by us (a hedge's loser, a client that left) before it could show its pace.
_NOT_ABOUT_SPEED = frozenset({"rejected", "context_exceeded", "cancelled"})


class Outcome(Protocol):
    """What the stats read from a failover report."""

    @property
    def attempts(self) -> Sequence[Attempt]: ...

    @property
    def model(self) -> ModelEntry | None: ...

    @property
    def usage(self) -> Usage: ...


@dataclass(slots=True)
class Speed:
    ttft_s: float
    tokens_per_s: float | None = None
    samples: int = 0


class LatencyStats:
    def __init__(self, alpha: float = 0.2, failure_penalty_s: float = 10.0, prior_tokens_per_s: float = 50.0) -> None:
        self.alpha = alpha
        self.failure_penalty_s = failure_penalty_s
        # Used to split a whole answer's time until a stream has measured the model's speed.
        self.prior_tokens_per_s = prior_tokens_per_s
        self.models: dict[str, Speed] = {}

    def expected_seconds(self, model: str, output_tokens: int) -> float | None:
        """Expected time for an answer of ``output_tokens``; None while unmeasured."""
        speed = self.models.get(model)
        if speed is None:
            return None
        return speed.ttft_s + output_tokens / (speed.tokens_per_s or self.prior_tokens_per_s)

    def observe(self, outcome: Outcome, first_token_at: float | None = None, ended_at: float | None = None) -> None:
        """Learn from one request. Stream timings are monotonic clock readings taken by the gateway."""
        winner = outcome.model.name if outcome.model is not None else None
        for attempt in outcome.attempts:
            seconds = attempt.latency_ms / 1000
            if attempt.outcome != "ok":
                if attempt.outcome not in _NOT_ABOUT_SPEED:
                    self._add(attempt.model, seconds + self.failure_penalty_s, None)
            elif attempt.model == winner:
                self._answered(attempt.model, seconds, outcome.usage["completion_tokens"], first_token_at, ended_at)

    def _answered(
        self, model: str, seconds: float, tokens: int, first_token_at: float | None, ended_at: float | None
    ) -> None:
        if first_token_at is not None and ended_at is not None:
            ttft = max(seconds - (ended_at - first_token_at), 0.0)
            generating = ended_at - first_token_at
            self._add(model, ttft, tokens / generating if tokens > 0 and generating > 0 else None)
            return
        speed = self.models.get(model)
        rate = (speed.tokens_per_s if speed else None) or self.prior_tokens_per_s
        self._add(model, max(seconds - tokens / rate, 0.0), None)

    def _add(self, model: str, ttft_s: float, tokens_per_s: float | None) -> None:
        speed = self.models.get(model)
        if speed is None:
            self.models[model] = Speed(ttft_s, tokens_per_s, 1)
            return
        a = self.alpha
        speed.ttft_s += a * (ttft_s - speed.ttft_s)
        if tokens_per_s is not None:
            old = speed.tokens_per_s
            speed.tokens_per_s = tokens_per_s if old is None else old + a * (tokens_per_s - old)
        speed.samples += 1
