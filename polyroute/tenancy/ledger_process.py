"""The ledger's writer in a process of its own: the gateway's event loop only encodes a row.

A writer thread in the gateway's process takes the GIL from the event loop every time
it builds rows or hands a statement to the database, and under load the loop pays for
each hand-off. Here the gateway keeps only what no other process can do for it:

    finished ──encode (on the loop)──▶ outbox ──sender thread, one write per tick──▶ pipe
                                          │                                             │
                       kept in ``unacked`` until the child has taken them               ▼
                                          ▲                                child: Ledger (queue, spool, store)
                                          └──────── "taken idle" lines on its stdout ◀──┘

The child (``python -m polyroute.tenancy.ledger_process``) runs the same ``Ledger`` as
the in-process writer, with the same store, batches, spool and retention. It reports how
many rows have left its queue (committed, or with a remote store spooled to disk); only
then does the gateway drop them. So:

- a child that dies (killed, out of memory) is started again after ``RESTART_AFTER``
  seconds and sent every row it had not taken; the store keeps each row once (rows are
  keyed by request id), and a spool it left is adopted by the next;
- a gateway killed with ``-9`` closes the pipe: the child writes (or spools) everything
  it was sent, at most ``SEND_INTERVAL`` old, and then exits;
- ``close`` (SIGTERM) sends the rest, closes the pipe and waits for the child to finish.

The child ignores SIGINT and SIGTERM (a Ctrl-C or a stop reaches the whole process group):
it ends when the pipe does, so that no row sent is left behind. Its first line on stdin
is its settings, the store's password with them (never in its arguments, which ``ps``
shows); its log lines go to the gateway's stderr, secrets blanked as the gateway's are.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from polyroute.attempts import Report
from polyroute.finish import Finished
from polyroute.tenancy.ledger import Ledger, row_of
from polyroute.tenancy.stores import LedgerStore, Rejected, UsageRow

if TYPE_CHECKING:
    from polyroute.gateway import RequestContext

log = logging.getLogger("polyroute.ledger")

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux
PIPE_SIZE = 1 << 20  # the pipe's buffer, as Linux allows an unprivileged process by default
SEND_INTERVAL = 0.05  # seconds between two writes to the child, at most
RESTART_AFTER = 1.0  # seconds before a child that died is started again
NUDGE = b"F\n"  # "write what you hold now" (a row is a JSON object, never this)
_ROW = orjson.OPT_APPEND_NEWLINE


@dataclass(frozen=True, slots=True)
class WriterSpec:
    """What the child needs to open the store and run its ``Ledger``: ``[store]``, resolved."""

    url: str | None
    password: str | None = None
    batch_size: int = 500
    flush_interval: float = 0.5
    spool: str | None = None  # with a remote store: the spool file's path
    retention_days: int | None = None
    rejected: str | None = None
    log_level: str | None = None


class LedgerProcess:
    """The ``RequestObserver`` that hands ledger rows to a writer process."""

    def __init__(self, spec: WriterSpec, close_timeout: float = 10.0) -> None:
        self.spec = spec
        self.close_timeout = close_timeout
        # Encoded on the loop, not sent yet. A deque: appended to by the loop and taken from by the
        # sender one row at a time, each step atomic (a list swapped for a new one could lose a row
        # appended to the old one after the swap).
        self._outbox: deque[bytes] = deque()
        self._unacked: deque[bytes] = deque()  # sent, in order, not taken by the child yet
        self._cond = threading.Condition()  # guards what follows, and wakes ``flush``
        self._generation = 0  # of the current child: a dead child's last words are ignored
        self._sent = 0  # rows the current child was sent
        self._taken = 0  # of those, how many it has taken
        self._idle = False  # the current child's last word: its store has every row it took
        self._wake = threading.Event()
        self._nudge = False  # ask the child to write what it holds now (``flush``)
        self._stopping = False
        self._sender: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self.pid: int | None = None  # the writer process's, while one runs
        self._told_down = False  # a dead child is logged once until one works again

    # -- the loop's side ---------------------------------------------------------------------

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        self._outbox.append(orjson.dumps(row_of(ctx, report, outcome, time.time()), option=_ROW))

    def depth(self) -> int:
        """Rows the writer has not taken yet."""
        return len(self._outbox) + len(self._unacked)

    # -- lifetime ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._sender is not None:
            return
        self._stopping = False
        self._sender = threading.Thread(target=self._send_forever, name="polyroute-ledger-pipe", daemon=True)
        self._sender.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the store has every row told so far; whether it has, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._nudge = True
            self._wake.set()
            while not self._flushed() and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(min(left, 0.1))
                self._nudge = True
                self._wake.set()
            return self._flushed()

    def close(self, timeout: float | None = None) -> None:
        """Send what is left, close the pipe, and wait for the child to write it all and exit."""
        sender = self._sender
        if sender is None:
            return
        self._stopping = True
        self._wake.set()
        sender.join((timeout or self.close_timeout) + 5)
        self._sender = None
        if lost := self.depth():
            log.error("ledger: %d row(s) could not be written before shutdown", lost)

    def _flushed(self) -> bool:
        return not self._outbox and not self._unacked and self._idle and self._taken == self._sent

    # -- the sender thread ---------------------------------------------------------------------

    def _send_forever(self) -> None:
        child: subprocess.Popen[bytes] | None = None
        while True:
            self._wake.wait(SEND_INTERVAL)
            self._wake.clear()
            stopping = self._stopping
            if child is None or child.poll() is not None:
                child = self._restart(child)
                if child is None:
                    if stopping:
                        return
                    continue
            outbox = self._outbox
            out = [outbox.popleft() for _ in range(len(outbox))]
            nudge, self._nudge = self._nudge, False
            if out:
                with self._cond:
                    self._unacked.extend(out)
                    self._sent += len(out)
                    self._idle = False
            if (out or nudge) and not _send(child, b"".join(out) + (NUDGE if nudge else b"")):
                continue  # the child died: found by poll() next turn, and sent everything again
            if stopping and not self._outbox:
                self._finish(child)
                return

    def _restart(self, dead: subprocess.Popen[bytes] | None) -> subprocess.Popen[bytes] | None:
        if dead is not None:
            if not self._told_down:
                self._told_down = True
                log.error("ledger: the writer process ended (exit status %s); starting another every %gs, "
                          "with the %d row(s) not yet taken", dead.returncode, RESTART_AFTER, len(self._unacked))
            time.sleep(RESTART_AFTER)
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "polyroute.tenancy.ledger_process"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
            )
        except OSError as exc:
            log.error("ledger: the writer process cannot be started: %s", exc)
            time.sleep(RESTART_AFTER)
            return None
        assert child.stdin is not None and child.stdout is not None
        self.pid = child.pid
        with contextlib.suppress(OSError):  # a tick's rows in one write, not one per 64 KiB the child reads
            fcntl.fcntl(child.stdin.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        with self._cond:
            self._generation += 1
            self._taken, self._idle = 0, False
            again = list(self._unacked)
            self._sent = len(again)
        self._reader = threading.Thread(target=self._read_forever, args=(child.stdout, self._generation),
                                        name="polyroute-ledger-acks", daemon=True)
        self._reader.start()
        _send(child, orjson.dumps(asdict(self.spec), option=_ROW) + b"".join(again))  # if it died: found by poll()
        return child

    def _finish(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdin is not None
        with contextlib.suppress(OSError):
            child.stdin.close()  # end of the rows: the child writes what it holds and exits
        try:
            child.wait(self.close_timeout + 5)
        except subprocess.TimeoutExpired:
            log.error("ledger: the writer process did not finish within %gs; stopping it", self.close_timeout + 5)
            child.kill()
            child.wait()
        if self._reader is not None:
            self._reader.join(5)  # its last report, read before ``close`` counts what is left

    def _read_forever(self, out: IO[bytes], generation: int) -> None:
        """The child's reports: ``TAKEN IDLE`` lines, cumulative since it started."""
        for line in out:
            try:
                taken_s, idle_s = line.split()
                taken, idle = int(taken_s), idle_s == b"1"
            except ValueError:
                continue
            with self._cond:
                if generation != self._generation:
                    return
                for _ in range(min(taken - self._taken, len(self._unacked))):
                    self._unacked.popleft()
                self._taken, self._idle = taken, idle
                if self._told_down:  # said before ``flush`` can return on this report
                    self._told_down = False
                    log.warning("ledger: the writer process works again")
                self._cond.notify_all()
        self._wake.set()  # the pipe ended: if the child died, the sender finds out now


def _send(child: subprocess.Popen[bytes], data: bytes) -> bool:
    """Write all of ``data`` to the child's stdin; false when the child is gone."""
    assert child.stdin is not None
    fd, view = child.stdin.fileno(), memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except (OSError, ValueError):
        return False
    return True


def _lines(fd: int) -> Iterator[bytes]:
    """The lines read from ``fd``, a large read at a time, until it ends."""
    rest = b""
    while chunk := os.read(fd, PIPE_SIZE):
        *whole, rest = (rest + chunk).split(b"\n")
        for line in whole:
            yield line + b"\n"


# -- the child -------------------------------------------------------------------------------------


class _Opening:
    """The ``LedgerStore`` at ``url``, opened when first used, and tried again after a failure to open.

    A writer started while its database is down (a restart, at the start of an outage) takes
    rows and spools them all the same; the ``Ledger`` logs the failure once and tries again.
    """

    def __init__(self, url: str | None, password: str | None) -> None:
        self.url = url
        self.password = password
        self._store: LedgerStore | None = None

    def _open(self) -> LedgerStore:
        if self._store is None:
            from polyroute.tenancy.setup import store_at

            self._store = store_at(self.url, self.password)
        return self._store

    def write(self, rows: Sequence[UsageRow]) -> Sequence[Rejected] | None:
        return self._open().write(rows)

    def rows(self, since: datetime, key: str | None = None) -> list[UsageRow]:
        return self._open().rows(since, key)

    def summary(self, since: datetime, by: str, key: str | None = None) -> list[dict[str, Any]]:
        return self._open().summary(since, by, key)

    def spent(self, kind: str, name: str, since: datetime) -> float:
        return self._open().spent(kind, name, since)

    def expire(self, before: datetime) -> None:
        self._open().expire(before)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


class _Reporter:
    """Tells the gateway, on stdout, how many rows have left the queue and whether all are stored."""

    def __init__(self, ledger: Ledger, out: IO[bytes]) -> None:
        self.ledger = ledger
        self.out = out
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            line = b"%d %d\n" % (self.ledger.taken, self.ledger.idle())
            try:
                self.out.write(line)
                self.out.flush()
            except (OSError, ValueError):
                pass  # the gateway is gone: the rows are still written


def main() -> int:
    from polyroute import logs
    from polyroute.redact import Redactor
    from polyroute.tenancy.spool import Spool, decode

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lines, out = _lines(sys.stdin.fileno()), sys.stdout.buffer
    header = next(lines, None)
    if header is None:
        return 0  # the gateway ended before it said anything
    spec = WriterSpec(**orjson.loads(header))
    logs.setup(spec.log_level)
    logs.guard(Redactor([spec.password] if spec.password else []))
    try:
        spool = Spool(Path(spec.spool)) if spec.spool else None
    except Exception as exc:
        log.error("ledger: the writer process cannot open its spool: %s", exc)
        return 1
    store = _Opening(spec.url, spec.password)
    ledger = Ledger(store, spec.batch_size, spec.flush_interval, spool, spec.retention_days,
                    Path(spec.rejected) if spec.rejected else None)
    report = _Reporter(ledger, out)
    ledger.on_progress = report
    ledger.start()
    for line in lines:
        if line == NUDGE:
            ledger.nudge()
            report()
            continue
        try:
            ledger.add(decode(line))
        except (ValueError, TypeError, KeyError) as exc:
            log.error("ledger: a row the gateway sent cannot be read and is skipped: %s", exc)
    ledger.close()  # the gateway closed the pipe, or died: write what was sent
    report()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
