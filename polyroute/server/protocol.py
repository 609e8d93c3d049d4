"""uvicorn's httptools protocol, sending a response's head with its first body bytes.

uvicorn writes the status line and headers when the app sends
``http.response.start`` and the body when it sends ``http.response.body``: two
writes, two TCP segments, and the client wakes twice, for every answer. The
gateway always has the first body bytes ready when it starts an answer (a whole
JSON body, or a stream's first token), so here each request's first write is held
and goes out with the next one, in one write. If no body follows in the same step
of the event loop (an app that starts a response and then waits), the head is
sent on the loop's next turn by itself, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _HeadWithBody:
    """One request's view of the connection's transport: its first write waits for its second."""

    __slots__ = ("_cycle", "_held", "_loop", "_started", "_transport")

    def __init__(
        self, transport: asyncio.Transport, cycle: RequestResponseCycle, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._loop = loop  # asyncio.get_running_loop() costs a getpid() system call
        self._transport = transport
        self._cycle = cycle
        self._held: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
            self._cycle.transport = self._transport  # the rest of a stream writes directly
        elif not self._started:
            self._started = True
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            self._cycle.transport = self._transport
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Protocol(HttpToolsProtocol):
    """``uvicorn.Config(http=Protocol)``: each request cycle writes through its own ``_HeadWithBody``."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.transport = _HeadWithBody(self.transport, cycle, self.loop)  # type: ignore[assignment]
        super()._start_asgi_task(cycle, app)
