"""What one run measures: the upstream's behaviour and the list of scenarios."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.targets import INSTANT, SLOW

CHAT, STREAM, SATURATE = "chat", "stream", "saturate"
# Where the processes run: all of them on every CPU (the scheduler's choice), or the gateway
# on a CPU of its own and the load generator and upstream on the others (bench.procs.pin).
SHARED, OWN_CORE = "shared", "own-core"


@dataclass(frozen=True)
class Scenario:
    kind: str  # CHAT (non-stream, slow upstream), STREAM (slow upstream), SATURATE (instant upstream)
    concurrency: int
    placement: str = SHARED

    @property
    def name(self) -> str:
        suffix = "" if self.placement == SHARED else f"-{self.placement}"
        return f"{self.kind}-c{self.concurrency}{suffix}"

    @property
    def profile(self) -> str:
        return INSTANT if self.kind == SATURATE else SLOW

    @property
    def stream(self) -> bool:
        return self.kind == STREAM


@dataclass(frozen=True)
class Plan:
    latency_ms: float = 50.0  # the slow upstream's answer time, and its time to first token
    tokens: int = 20  # tokens per answer
    token_interval_ms: float = 5.0  # between streamed tokens
    chat_concurrency: tuple[int, ...] = (1, 16, 64, 256)
    stream_concurrency: tuple[int, ...] = (1, 16, 64, 256)
    saturate_concurrency: tuple[int, ...] = (64, 256)
    # Chat and stream scenarios run again with the gateway on a CPU of its own.
    own_core_concurrency: tuple[int, ...] = (64,)
    # The checked scenarios once more, direct and polyroute taking turns this many rounds each,
    # so that the host's speed, which drifts over minutes, weighs on both alike; and saturation
    # with one worker and two the same way.
    paired_rounds: int = 3
    check_concurrency: int = 64  # the level the targets are checked at
    duration: float = 5.0  # seconds of measurement per scenario (after the warm-up)
    warmup: float = 1.0
    max_requests: int = 200_000  # per scenario; whichever of count and time comes first ends it
    timeout: float = 30.0  # one request
    upstream_processes: int = 1  # SO_REUSEPORT processes per fake upstream
    coalesce_us: int = 500  # saturation, native tools: pause after a wakeup with few events (bench/native/common.h)

    @classmethod
    def quick(cls) -> Plan:
        return cls(duration=2.0, warmup=0.5)

    @classmethod
    def smoke(cls) -> Plan:
        """A few dozen requests per scenario at concurrency 4: proves the harness works."""
        return cls(
            latency_ms=20.0,
            tokens=5,
            token_interval_ms=2.0,
            chat_concurrency=(4,),
            stream_concurrency=(4,),
            saturate_concurrency=(4,),
            own_core_concurrency=(4,),
            paired_rounds=1,
            check_concurrency=4,
            duration=2.0,
            warmup=0.2,
            max_requests=40,
            timeout=10.0,
        )

    def with_(self, **changes: object) -> Plan:
        return replace(self, **changes)  # type: ignore[arg-type]

    def paired(self) -> list[Scenario]:
        """The scenarios measured again in alternating rounds: the checked ones."""
        if self.paired_rounds < 1:
            return []
        c = self.check_concurrency
        own = [Scenario(kind, c, OWN_CORE) for kind in (CHAT, STREAM)] if c in self.own_core_concurrency else []
        return [Scenario(CHAT, c), Scenario(STREAM, c), *own]

    def paired_workers(self) -> list[Scenario]:
        """Saturation measured again with one worker and two in alternating rounds (the first level)."""
        if self.paired_rounds < 1 or not self.saturate_concurrency:
            return []
        return [Scenario(SATURATE, self.saturate_concurrency[0])]

    def scenarios(self, saturation_only: bool = False) -> list[Scenario]:
        out = [Scenario(SATURATE, c) for c in self.saturate_concurrency]
        if saturation_only:
            return out
        return [
            *(Scenario(CHAT, c) for c in self.chat_concurrency),
            *(Scenario(STREAM, c) for c in self.stream_concurrency),
            *(Scenario(kind, c, OWN_CORE) for c in self.own_core_concurrency for kind in (CHAT, STREAM)),
            *out,
        ]
