"""``polyroute serve --workers N``: N processes, each with its own listening socket.

With one socket shared by every worker, whichever worker wakes first accepts: many
keep-alive clients connecting at once were seen to land almost all on one worker,
so a second worker added almost nothing.
Here each worker listens on its own socket bound with ``SO_REUSEPORT``, and the
kernel spreads new connections over them by a hash of each connection's
addresses. Where the kernel does not balance that way (not Linux), every worker
shares one socket, as before.

The sockets are bound here, in the supervisor, so a port in use fails at once
with a plain message, and a worker that dies is replaced on the very socket it
had: connections the kernel gave that socket meanwhile wait in its backlog.
A worker that dies before it serves (its app cannot start) stops them all.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("polyroute.workers")

BALANCED = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")
# A worker that dies again this soon after a restart waits this long before the next.
RESTART_BACKOFF = 1.0
# Beyond a worker's own grace (``gateway.shutdown_grace``): its shut-down, then a kill.
STOP_MARGIN = 5.0


def bind(host: str, port: int, count: int, backlog: int = 2048) -> list[socket.socket]:
    """``count`` listening sockets on host:port (one shared socket where the kernel does not balance)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if BALANCED:
        # Sockets that all set SO_REUSEPORT share a port: another gateway already listening on it
        # would take part of the traffic, unnoticed. A socket without it cannot bind such a port.
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]  # port 0: the one the kernel chose, for every worker
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if BALANCED else 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if BALANCED:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets if BALANCED else sockets * count


@dataclass
class _Slot:
    sock: socket.socket
    process: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None  # readable once the worker serves; None once read
    ready: bool = False
    started_at: float = 0.0


class Supervisor:
    """Starts the workers, replaces those that die, stops them all on SIGINT or SIGTERM, passes SIGHUP on.

    A worker is a plain process (``python -m polyroute.server.workers``) that inherits
    its socket and a pipe on which it says when it serves.
    """

    def __init__(
        self, sockets: list[socket.socket], on_ready: Callable[[], None] | None = None, grace: float = 10.0
    ) -> None:
        self.slots = [_Slot(sock) for sock in sockets]
        self.stop_grace = grace + STOP_MARGIN
        self.stopping = threading.Event()
        # Called once, when every worker serves for the first time.
        self._on_ready = on_ready

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self._tell_workers(signal.SIGHUP))
        for index in range(len(self.slots)):
            self._start(index)
        status = 0
        while not self.stopping.is_set():
            self._note_ready(0.25)
            for index, slot in enumerate(self.slots):
                proc = slot.process
                if self.stopping.is_set() or proc is None or proc.poll() is None:
                    continue
                self._note_ready(0)
                if not slot.ready:
                    log.error("worker %d (pid %s) exited with code %s before it served; stopping",
                              index, proc.pid, proc.returncode)
                    status = 1
                    self.stopping.set()
                    break
                log.error("worker %d (pid %s) exited with code %s; starting another", index, proc.pid, proc.returncode)
                if time.monotonic() - slot.started_at < RESTART_BACKOFF:
                    time.sleep(RESTART_BACKOFF)
                self._start(index)
        self._stop_all()
        return status

    def _tell_workers(self, sig: signal.Signals) -> None:
        for slot in self.slots:
            # Only a worker that serves has its handler: before that, SIGHUP would end it.
            if slot.ready and slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(sig)

    def _note_ready(self, timeout: float) -> None:
        waiting = {slot.ready_fd: slot for slot in self.slots if slot.ready_fd is not None}
        if not waiting:
            self.stopping.wait(timeout)
            return
        readable, _, _ = select.select(list(waiting), [], [], timeout)
        for fd in readable:
            slot = waiting[fd]
            slot.ready = os.read(fd, 1) == b"1"
            os.close(fd)
            slot.ready_fd = None
            if slot.ready and slot.process is not None:
                log.info("worker %d serving (pid %s)", self.slots.index(slot), slot.process.pid)
        on_ready = self._on_ready
        if on_ready is not None and all(slot.ready for slot in self.slots):
            self._on_ready = None
            on_ready()

    def _start(self, index: int) -> None:
        slot = self.slots[index]
        if slot.ready_fd is not None:
            os.close(slot.ready_fd)
        ready_r, ready_w = os.pipe()
        fd = slot.sock.fileno()
        slot.process = subprocess.Popen(
            [sys.executable, "-m", "polyroute.server.workers", str(fd), str(ready_w)],
            pass_fds=(fd, ready_w),
        )
        os.close(ready_w)
        slot.ready_fd, slot.ready, slot.started_at = ready_r, False, time.monotonic()
        log.info("worker %d started (pid %s)", index, slot.process.pid)

    def _stop_all(self) -> None:
        alive = [s.process for s in self.slots if s.process is not None and s.process.poll() is None]
        for proc in alive:
            proc.terminate()  # SIGTERM: each worker drains what it has in flight
        deadline = time.monotonic() + self.stop_grace
        for proc in alive:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %s did not stop within %.0fs; killing it", proc.pid, self.stop_grace)
                proc.kill()
                proc.wait()
        for slot in self.slots:
            if slot.ready_fd is not None:
                os.close(slot.ready_fd)
            slot.sock.close()


def _worker(fd: int, ready_fd: int) -> None:
    """A worker process: its own gateway, its own event loop, on the socket it was given."""
    from polyroute.server import serving
    from polyroute.server.app import app_from_env

    sock = socket.socket(fileno=fd)

    def ready() -> None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)

    # Ctrl-C reaches the supervisor only, which stops the workers itself (SIGTERM, then a
    # graceful drain); a worker whose supervisor is gone stops too rather than serve unwatched.
    os.setpgrp()
    threading.Thread(target=_stop_without, args=(os.getppid(),), name="polyroute-parent-watch", daemon=True).start()
    sys.exit(serving.run(app_from_env(), [sock], ready))


def _stop_without(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]))
