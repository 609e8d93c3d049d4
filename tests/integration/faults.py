"""Shared by the fault tests: one fault upstream, a gateway whose routes lead into it, an SSE reader."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tests.support.fault_upstream import ANSWER, FaultUpstream, closed_port
from tests.support.live import Live, live_gateway

# Limits small enough that a timeout case costs little, and far above what a healthy answer over
# loopback takes even on a busy machine (a few ms): a healthy candidate must never time out.
TIMEOUT = 2.0
ROUTE = {"first_token_timeout": TIMEOUT, "stall_timeout": TIMEOUT, "deadline": 5 * TIMEOUT}
BACKEND = {"timeout": TIMEOUT, "answer_timeout": TIMEOUT, "connect_timeout": TIMEOUT}
# A slow fault's delay, in ms: so much longer than every limit that an answer sooner than it shows the
# gateway gave up on the slow candidate, however loaded the machine.
SLOW_MS = 30_000


@dataclass
class Fleet:
    """Builds a config: each route gets its own backends (so its own breakers) on the fault upstream."""

    up: FaultUpstream
    backends: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    routes: dict[str, Any] = field(default_factory=dict)
    gateway: dict[str, Any] = field(default_factory=dict)

    def route(self, name: str, *faults: str, refused: tuple[int, ...] = (), continuation: str = "prefix",
              windows: tuple[int | None, ...] = (), local_last: bool = False, limits: dict[str, Any] | None = None,
              **route: Any) -> str:
        """A route ``name`` over one candidate per fault; its upstream model ids are ``FAULT+id-NAME-I``.

        ``limits`` overrides the small ``BACKEND`` limits for every candidate of the route.
        """
        names = []
        for i, fault in enumerate(faults):
            model, backend = f"{name}-{i}", f"{name}-b{i}"
            url = f"http://127.0.0.1:{closed_port()}/v1" if i in refused else self.up.url
            self.backends[backend] = {"type": "openai", "base_url": url, "continuation": continuation, **BACKEND,
                                     **(limits or {})}
            self.models[model] = {"backend": backend, "upstream": upstream(name, i, fault)}
            if i < len(windows) and windows[i] is not None:
                self.models[model]["context_window"] = windows[i]
            names.append(model)
        if local_last:
            self.backends[f"{name}-local"] = {"type": "fake"}
            self.models[f"{name}-local"] = {"backend": f"{name}-local", "upstream": "text-" + ANSWER.replace(" ", "-")}
            names.append(f"{name}-local")
        self.routes[name] = {"models": names, **ROUTE, **route}
        return name

    def raw(self) -> dict[str, Any]:
        return {"gateway": self.gateway, "backends": self.backends, "models": self.models, "routes": self.routes}

    @contextmanager
    def serve(self) -> Iterator[Live]:
        with live_gateway(self.raw()) as live:
            yield live


def upstream(route: str, i: int, fault: str) -> str:
    return f"{fault}+id-{route}-{i}"


@dataclass
class Sse:
    """A streamed answer as the client received it, byte for byte."""

    status: int
    headers: httpx.Headers
    events: list[Any]  # decoded data payloads; "[DONE]" as the string
    seconds: float

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1] == "[DONE]"

    @property
    def text(self) -> str:
        return "".join(
            (e["choices"][0]["delta"].get("content") or "")
            for e in self.events
            if isinstance(e, dict) and e.get("choices")
        )

    @property
    def error(self) -> dict[str, Any] | None:
        last = self.events[-1] if self.events else None
        return last["error"] if isinstance(last, dict) and "error" in last else None

    def _usage_event(self) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if isinstance(e, dict) and e.get("usage")), None)

    @property
    def trailer(self) -> dict[str, Any] | None:
        """The gateway's own record in the final usage chunk: attempts and rescue, known only at the end."""
        e = self._usage_event()
        return None if e is None else dict(e["polyroute"])

    @property
    def usage(self) -> dict[str, Any] | None:
        e = self._usage_event()
        return None if e is None else dict(e["usage"])


def stream(live: Live, model: str, client: httpx.Client | None = None, **extra: Any) -> Sse:
    body = {"model": model, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Spell the NATO alphabet"}], **extra}
    started = time.monotonic()
    c = client or httpx.Client(timeout=10)
    try:
        with c.stream("POST", f"{live.base_url}/chat/completions", json=body) as resp:
            raw = resp.read()
    finally:
        if client is None:
            c.close()
    seconds = time.monotonic() - started
    events: list[Any] = []
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        for frame in raw.split(b"\n\n"):
            if frame.startswith(b"data: "):
                data = frame[6:]
                events.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    else:
        events.append(orjson.loads(raw))
    return Sse(resp.status_code, resp.headers, events, seconds)
