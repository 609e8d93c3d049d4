"""Serving an ``App`` on listening sockets: start-up, idle connections, a graceful stop.

``Server.serve`` runs the app's start-up, accepts on every socket it is given,
closes keep-alive connections left idle for ``keep_alive`` seconds, and on
``stop()`` (SIGINT or SIGTERM under ``run``) stops accepting, closes idle
connections, lets answers in flight finish for up to ``grace`` seconds (each
connection closes after its answer), aborts what is left, then runs the app's
shut-down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable

from polyroute import sched
from polyroute.errors import PolyrouteError
from polyroute.server.dispatch import App
from polyroute.server.http11 import Connection, Shared

log = logging.getLogger("polyroute.server")

KEEP_ALIVE = 5.0
GRACE = 10.0
_SWEEP_EVERY = 1.0


class StartupFailed(Exception):
    """The app's start-up raised: nothing was served."""


class Server:
    def __init__(self, app: App, *, keep_alive: float = KEEP_ALIVE, grace: float = GRACE) -> None:
        self.app = app
        self.keep_alive = keep_alive
        self.grace = grace
        self.started = threading.Event()  # set once every socket accepts
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def stop(self) -> None:
        """Begin a graceful stop; safe from any thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    async def serve(self, sockets: list[socket.socket], on_ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._stop = loop, asyncio.Event()
        try:
            await self.app.startup()
        except PolyrouteError as exc:
            # A config that cannot be served (a model file that will not load): said, not traced.
            log.error("start-up failed: %s", exc.message)
            raise StartupFailed(exc.message) from exc
        except Exception as exc:
            log.exception("start-up failed")
            raise StartupFailed(str(exc)) from exc
        shared = Shared(self.app, self.app.max_body, loop)
        servers = [await loop.create_server(lambda: Connection(shared), sock=sock, backlog=2048) for sock in sockets]
        sweeper = loop.call_later(_SWEEP_EVERY, self._sweep, shared)
        self.started.set()
        if on_ready is not None:
            on_ready()
        try:
            await self._stop.wait()
            log.info("stopping: no new connections; answers in flight have %.0fs to finish", self.grace)
        finally:
            sweeper.cancel()
            for srv in servers:
                srv.close()
            await self._drain(shared)
            await self.app.shutdown()
            log.info("stopped")

    def _sweep(self, shared: Shared) -> None:
        loop = shared.loop
        now = loop.time()
        for conn in list(shared.connections):
            if not conn.busy() and conn.idle_for(now) > self.keep_alive:
                conn.close()
        if self._stop is not None and not self._stop.is_set():
            loop.call_later(_SWEEP_EVERY, self._sweep, shared)

    async def _drain(self, shared: Shared) -> None:
        shared.stopping = True  # a connection answering now closes after its answer
        for conn in list(shared.connections):
            if not conn.busy():
                conn.close()
        loop = shared.loop
        deadline = loop.time() + self.grace
        in_flight = [conn.task for conn in shared.connections if conn.task is not None]
        if in_flight:
            _, late = await asyncio.wait(in_flight, timeout=self.grace)
            if late:
                log.warning("%d answer(s) still in flight after %.0fs; closing them", len(late), self.grace)
        # Closing sends what is buffered first; a client that reads too slowly is cut at the deadline.
        for conn in list(shared.connections):
            conn.close()
        if shared.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(shared.all_closed.wait(), max(0.0, deadline - loop.time()))
        for conn in list(shared.connections):
            conn.abort()
        await asyncio.sleep(0)  # let the aborted answers run their cleanup


def run(app: App, sockets: list[socket.socket], on_ready: Callable[[], None] | None = None) -> int:
    """Serve on uvloop until SIGINT or SIGTERM; 1 when the app could not start.

    The process first asks for the app's scheduling slice (``polyroute.sched``).
    """
    import uvloop

    if app.sched_slice_us:
        if sched.request_slice(app.sched_slice_us):
            log.info("scheduling slice: %d us", app.sched_slice_us)
        else:
            log.info("scheduling slice: the kernel's own (asked for %d us)", app.sched_slice_us)
    server = Server(app)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.serve(sockets, on_ready)

    try:
        uvloop.run(main())
    except StartupFailed:
        return 1
    return 0
