"""The ledger's writer in a process of its own: the gateway's event loop only encodes a row's raw fields.

A writer thread in the gateway's process costs the event loop far more than its own work.
Whenever it wants the GIL, it is woken at every release the loop makes (each poll for
I/O), and loses the race again. Measured: a thread that only sleeps 50 ms at a time
added 20-25 µs of the loop's CPU to each request, through thousands of futex wake-ups a
second. So the gateway runs no thread for the ledger. Everything below happens in the
event loop's callbacks:

    finished ──fields──▶ outbox ──one write per tick (call_later)──▶ pipe ──▶ child: Ledger (queue, spool, store)
                            │                                                    │
         kept in ``unacked`` until the child has taken them                      │
                            ▲                                                    │
                            └──── "TAKEN IDLE" lines on its stdout (add_reader) ◀┘

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

import asyncio
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from polyroute.attempts import Report
from polyroute.finish import Finished
from polyroute.tenancy.ledger import Ledger, fields_of, row_from
from polyroute.tenancy.stores import LedgerStore, Rejected, Traffic, UsageRow

if TYPE_CHECKING:
    from polyroute.gateway import RequestContext

log = logging.getLogger("polyroute.ledger")

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux
PIPE_SIZE = 1 << 20  # the pipe's buffer, as Linux allows an unprivileged process by default
SEND_INTERVAL = 0.05  # seconds between two writes to the child, at most
RESTART_AFTER = 1.0  # seconds before a child that died is started again
NUDGE = b"F\n"  # "write what you hold now" (a row is a JSON array, never this)
END = b"E\n"  # "that was all: I am stopping and wait for you" (a pipe closed without it: the gateway died)
CLOSE_TIMEOUT = 10.0  # seconds the child takes to write what it holds at a stop (the gateway waits for it)
ORPHAN_CLOSE = 900.0  # the same when the gateway died: nobody waits, so a database out for minutes is waited out
_ROW = orjson.OPT_APPEND_NEWLINE


@dataclass(frozen=True, slots=True)
class WriterSpec:
    """What the child needs to open the store and run its ``Ledger``: ``[store]``, resolved."""

    url: str | None
    password: str | None = None
    batch_size: int = 500
    flush_interval: float = 0.5
    spool: str | None = None  # with a remote store: the spool file's path
    spool_owner: str | None = None  # the store its rows are for (``polyroute.tenancy.spool.check_owner``)
    retention_days: int | None = None
    rejected: str | None = None
    log_level: str | None = None


class LedgerProcess:
    """The ``RequestObserver`` that hands ledger rows to a writer process, from the event loop.

    ``start`` is called on the loop; ``finished`` and ``depth`` run there. ``flush`` and
    ``close`` block, so they are called from another thread (``asyncio.to_thread``, a test).
    """

    def __init__(self, spec: WriterSpec, close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.spec = spec
        self.close_timeout = close_timeout
        self._outbox: list[bytes] = []  # encoded, not sent yet
        self._unacked: deque[bytes] = deque()  # sent, in order, not taken by the child yet
        self._sent = 0  # rows the current child was sent
        self._taken = 0  # of those, how many it has taken
        self._idle = False  # the current child's last word: its store has every row it took
        self._cond = threading.Condition()  # wakes ``flush`` and ``close`` on the child's reports
        self._loop: asyncio.AbstractEventLoop | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._restart: asyncio.TimerHandle | None = None  # a dead child's successor, due
        self._done = threading.Event()  # after ``close``: the last child has ended
        self._unsent = bytearray()  # what the pipe has not taken yet
        self._acks = b""  # a report read in part
        self._stopping = False
        self._told_down = False  # a dead child is logged once until one works again
        self._ended_child: subprocess.Popen[bytes] | None = None  # the last one, reaped by ``close``
        self.pid: int | None = None  # the writer process's, while one runs

    # -- on the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._spawn()

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        # The raw fields, one JSON array: the row itself is made by the writer process (``row_from``).
        self._outbox.append(orjson.dumps(fields_of(ctx, report, outcome, time.time()), option=_ROW))
        if self._tick is None and self._loop is not None:
            self._tick = self._loop.call_later(SEND_INTERVAL, self._send)

    def depth(self) -> int:
        """Rows the writer has not taken yet."""
        return len(self._outbox) + len(self._unacked)

    def _send(self, nudge: bool = False) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        out, self._outbox = self._outbox, []
        if out:
            with self._cond:
                self._unacked.extend(out)
                self._sent += len(out)
                self._idle = False
        if out or nudge:
            self._write(b"".join(out) + (NUDGE if nudge else b""))

    def _write(self, data: bytes) -> None:
        """Into the pipe without blocking; what it cannot take now waits for it to drain."""
        child, loop = self._child, self._loop
        if child is None or child.stdin is None or child.stdin.closed or loop is None:
            return  # no writer right now: the rows are in ``unacked``, sent to the next one
        self._unsent += data
        fd = child.stdin.fileno()
        try:
            done = os.write(fd, self._unsent)
        except BlockingIOError:
            done = 0
        except OSError:
            self._unsent.clear()  # the child is gone: found at its stdout's end, and sent everything again
            return
        del self._unsent[:done]
        if self._unsent:
            loop.add_writer(fd, self._drain, fd)
        elif self._stopping:
            self._end_pipe()

    def _drain(self, fd: int) -> None:
        try:
            done = os.write(fd, self._unsent)
        except BlockingIOError:
            return
        except OSError:
            done = len(self._unsent)
        del self._unsent[:done]
        if not self._unsent:
            assert self._loop is not None
            self._loop.remove_writer(fd)
            if self._stopping:
                self._end_pipe()

    def _spawn(self) -> None:
        loop, self._restart = self._loop, None
        if loop is None:
            return  # closed meanwhile
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "polyroute.tenancy.ledger_process"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
            )
        except OSError as exc:
            log.error("ledger: the writer process cannot be started, trying again in %gs: %s", RESTART_AFTER, exc)
            self._restart = loop.call_later(RESTART_AFTER, self._spawn)
            return
        assert child.stdin is not None and child.stdout is not None
        with contextlib.suppress(OSError):  # a tick's rows in one write, not one per 64 KiB the child reads
            fcntl.fcntl(child.stdin.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        os.set_blocking(child.stdin.fileno(), False)
        os.set_blocking(child.stdout.fileno(), False)
        self._child, self.pid = child, child.pid
        with self._cond:
            self._taken, self._idle, self._acks = 0, False, b""
            again = list(self._unacked)
            self._sent = len(again)
        self._unsent.clear()
        loop.add_reader(child.stdout.fileno(), self._read, child)
        self._write(orjson.dumps(asdict(self.spec), option=_ROW) + b"".join(again))

    def _read(self, child: subprocess.Popen[bytes]) -> None:
        """The child's reports: ``TAKEN IDLE`` lines, cumulative since it started; or its end."""
        assert child.stdout is not None and self._loop is not None
        fd = child.stdout.fileno()
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._loop.remove_reader(fd)
            self._ended(child)
            return
        *lines, self._acks = (self._acks + data).split(b"\n")
        with self._cond:
            for line in lines:
                try:
                    taken_s, idle_s = line.split()
                    taken, idle = int(taken_s), idle_s == b"1"
                except ValueError:
                    continue
                for _ in range(min(taken - self._taken, len(self._unacked))):
                    self._unacked.popleft()
                self._taken, self._idle = taken, idle
            if self._told_down:  # said before ``flush`` can return on this report
                self._told_down = False
                log.warning("ledger: the writer process works again")
            self._cond.notify_all()

    def _ended(self, child: subprocess.Popen[bytes]) -> None:
        """The child's stdout ended: it finished (``close``), or it died and another is started."""
        assert self._loop is not None
        if child.stdin is not None and not child.stdin.closed:
            with contextlib.suppress(OSError):
                self._loop.remove_writer(child.stdin.fileno())
                child.stdin.close()
        status = child.poll()
        with self._cond:
            self._child, self._ended_child = None, child
            self._cond.notify_all()
        if self._stopping:
            self._done.set()
            return
        if not self._told_down:
            self._told_down = True
            log.error("ledger: the writer process ended (exit status %s); starting another every %gs, "
                      "with the %d row(s) not yet taken", status, RESTART_AFTER, len(self._unacked))
        self._restart = self._loop.call_later(RESTART_AFTER, self._spawn)

    def _end_pipe(self) -> None:
        child = self._child
        if child is not None and child.stdin is not None and not child.stdin.closed:
            with contextlib.suppress(OSError):  # (a full pipe: the child then takes longer, and is stopped)
                os.write(child.stdin.fileno(), END)
            child.stdin.close()  # the end of the rows: the child writes what it holds and exits

    def _stop_sending(self) -> None:
        self._stopping = True
        self._send()  # with no child, the rows wait in ``unacked``
        if self._child is None:  # dead, its successor due: start it now, and send it what is left
            if self._restart is not None:
                self._restart.cancel()
            self._spawn()
            if self._child is None:
                self._done.set()
                return
        if not self._unsent:
            self._end_pipe()

    # -- from other threads --------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the store has every row told so far; whether it has, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._flushed() and (left := deadline - time.monotonic()) > 0:
                self._on_loop(lambda: self._send(nudge=True))
                self._cond.wait(min(left, 0.1))
            return self._flushed()

    def close(self, timeout: float | None = None) -> None:
        """Send what is left, close the pipe, and wait for the child to write it all and exit."""
        if self._loop is None:
            return
        # The child's own close takes up to twice its timeout (its rows, then its threads): it is
        # given that, and a margin, before it is stopped.
        wait = 2 * (timeout or self.close_timeout) + 5
        self._done.clear()
        self._on_loop(self._stop_sending)
        self._done.wait(wait)
        with self._cond:
            child, ended = self._child, self._ended_child
        if child is not None:
            log.error("ledger: the writer process did not finish within %gs; stopping it", wait)
            child.kill()
            ended = child
        if ended is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                ended.wait(5)  # it has closed its stdout: its exit follows
        self._loop = None
        if lost := self.depth():
            log.error("ledger: %d row(s) could not be written before shutdown", lost)

    def _flushed(self) -> bool:
        return not self._outbox and not self._unacked and self._idle and self._taken == self._sent

    def _on_loop(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(fn)


def row_of_line(line: bytes) -> UsageRow:
    """A row as the gateway sends it: its raw fields (``fields_of``) as a JSON array. A whole row as a JSON
    object, as the spool keeps it, is read too: a gateway started before an upgrade in place may still
    send those to a writer started after it."""
    doc = orjson.loads(line)
    if isinstance(doc, dict):
        from polyroute.tenancy.spool import decode

        return decode(line)
    return row_from(doc)


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

    def written_after(self, mark: float | None) -> tuple[list[UsageRow], float]:
        return self._open().written_after(mark)

    def latest(self, count: int, mark: float) -> list[UsageRow]:
        return self._open().latest(count, mark)

    def traffic(self, since: datetime, mark: float, ratio: float) -> Traffic:
        return self._open().traffic(since, mark, ratio)

    def cost_by_step(self, since: datetime, by: str, step: int) -> list[tuple[str, int, float]]:
        return self._open().cost_by_step(since, by, step)

    def rollup_summary(self, since: datetime, by: str) -> list[dict[str, Any]]:
        return self._open().rollup_summary(since, by)

    def rebuild_rollup(self) -> int:
        return self._open().rebuild_rollup()

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
    from polyroute.tenancy.spool import Spool

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
        spool = Spool(Path(spec.spool), spec.spool_owner) if spec.spool else None
    except Exception as exc:  # rows are not held back for it: they go straight to the store
        log.error("ledger: the writer process cannot open its spool, rows go straight to the store: %s", exc)
        spool = None
    store = _Opening(spec.url, spec.password)
    ledger = Ledger(store, spec.batch_size, spec.flush_interval, spool, spec.retention_days,
                    Path(spec.rejected) if spec.rejected else None)
    report = _Reporter(ledger, out)
    ledger.on_progress = report
    ledger.start()
    stopped = False
    for line in lines:
        if line == END:
            stopped = True
            continue
        if line == NUDGE:
            ledger.nudge()
            report()
            continue
        try:
            ledger.add(row_of_line(line))
        except (ValueError, TypeError, KeyError, OverflowError, OSError) as exc:
            log.error("ledger: a row the gateway sent cannot be read and is skipped: %s", exc)
    # The gateway closed the pipe (a stop: it waits for us), or died (nobody waits, and nothing is held
    # up by our taking longer: a database locked or down for minutes is waited out rather than given up on).
    ledger.close(timeout=CLOSE_TIMEOUT if stopped else ORPHAN_CLOSE)
    report()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
