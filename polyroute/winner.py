"""The attempt that answered a walk, or the one error that carries every failure.

The walks beside chat's (embeddings, text completions) end as chat's whole answer
does: ``race`` the candidates (``hedge_after``), give up with ``AllAttemptsFailed``
when none answered, else settle the winner's breaker ticket and name it in the
report. What an answer is billed stays with each walk: only it knows how its
upstream counts tokens.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from polyroute.attempts import Slot
from polyroute.errors import AllAttemptsFailed
from polyroute.hedge import Attempts, race

T = TypeVar("T")


class Raced(Attempts[Slot, T], Protocol):
    """A walk ``race`` can drive, which can also give up and settle its winner (``polyroute.attempts.Walk``)."""

    def give_up(self) -> AllAttemptsFailed: ...

    async def succeeded(self, slot: Slot) -> None: ...


async def won_by(walk: Raced[T], hedge_after: float | None) -> tuple[Slot, T]:
    """The attempt that won the race, and what it gave; ``AllAttemptsFailed`` when none did."""
    won = await race(walk, hedge_after)
    if won is None:
        raise walk.give_up()
    return won


async def answered_by(walk: Raced[T], hedge_after: float | None) -> tuple[Slot, T]:
    """As ``won_by``, for an answer that is whole when it comes: its attempt is settled as the one that answered."""
    slot, got = await won_by(walk, hedge_after)
    await walk.succeeded(slot)
    return slot, got
