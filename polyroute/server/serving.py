"""Serving an ``App`` on listening sockets: start-up, idle connections, a graceful stop.

``Server.serve`` runs the app's start-up, accepts on every socket it is given,
closes keep-alive connections left idle for ``keep_alive`` seconds, answers 408
to requests whose head or body is late (the app's ``header_timeout`` and
``body_timeout``), resets connections whose clients have stopped reading their
answers (``send_timeout``), and on ``stop()`` (SIGINT or SIGTERM under ``run``) stops
accepting, closes idle connections, lets answers in flight finish for up to
``grace`` seconds (each connection closes after its answer), ends those still
running with an error saying the gateway is shutting down, gives them
``FLUSH_S`` to reach their clients, aborts what is left, then runs the app's
shut-down.

File descriptors: the soft limit is raised to the hard one, and the server takes
at most half of what is left beyond ``FD_RESERVE`` for client connections, since
each may need an upstream connection too. Past that, new connections are closed
at once and a warning is logged (once, and once again when it ends), and
connections already open are still served. Without a cap, accepts would fail
with EMFILE, which the event loop answers by closing the new connections without
a word.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
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
FLUSH_S = 1.0  # after the grace: for the shutting-down errors to leave
FD_RESERVE = 32  # descriptors kept for the listening sockets, logs, files and the loop itself
_SWEEP_EVERY = 1.0


class StartupFailed(Exception):
    """The app's start-up raised: nothing was served."""


class Server:
    def __init__(self, app: App, *, keep_alive: float = KEEP_ALIVE, grace: float | None = None) -> None:
        self.app = app
        self.keep_alive = keep_alive
        self.grace = app.shutdown_grace if grace is None else grace
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
        app = self.app
        shared = Shared(app, app.max_body, loop, app.header_timeout, app.body_timeout, connection_limit(),
                        app.before_body, app.send_timeout, app.error_shape, app.closes)
        if app.on_server is not None:
            app.on_server(shared)
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
            if conn.check_send(now):
                continue  # its client stopped reading: reset
            # Between requests an idle connection is closed; one part-way through a request's head or body is
            # held to header_timeout or body_timeout instead, and told so (408), not cut without a word.
            # (A deadline that reading paused by us keeps from passing does not hold a connection open either.)
            if (not conn.busy() and (conn.deadline is None or conn.read_paused)
                    and conn.idle_for(now) > self.keep_alive):
                conn.close()
            else:
                conn.check_deadline(now)
        if self._stop is not None and not self._stop.is_set():
            loop.call_later(_SWEEP_EVERY, self._sweep, shared)

    async def _drain(self, shared: Shared) -> None:
        shared.stopping = True  # a connection answering now closes after its answer
        for conn in list(shared.connections):
            if not conn.busy():
                conn.close()
        loop = shared.loop
        deadline = loop.time() + self.grace + FLUSH_S
        in_flight = [conn.task for conn in shared.connections if conn.task is not None]
        if in_flight:
            _, late = await asyncio.wait(in_flight, timeout=self.grace)
            if late:
                log.warning("%d answer(s) still in flight after %gs; ending them with a shutting-down error",
                            len(late), self.grace)
                for conn in list(shared.connections):
                    conn.stop_now()
                await asyncio.wait(late, timeout=FLUSH_S)
        # Closing sends what is buffered first; a client that reads too slowly is cut at the deadline.
        for conn in list(shared.connections):
            conn.close()
        if shared.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(shared.all_closed.wait(), max(0.0, deadline - loop.time()))
        for conn in list(shared.connections):
            conn.abort()
        await asyncio.sleep(0)  # let the aborted answers run their cleanup


def connection_limit() -> int:
    """How many client connections to serve at once, from the file limit (raised to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(8, (soft - FD_RESERVE) // 2)


def run(app: App, sockets: list[socket.socket], on_ready: Callable[[], None] | None = None) -> int:
    """Serve on uvloop until SIGINT or SIGTERM (SIGHUP: the app's ``reload``); 1 when the app could not start.

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
        if app.reload is not None:
            loop.add_signal_handler(signal.SIGHUP, app.reload)
        await server.serve(sockets, on_ready)

    try:
        uvloop.run(main())
    except StartupFailed:
        return 1
    return 0
