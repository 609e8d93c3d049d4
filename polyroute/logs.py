"""Logging for a server process: records are formatted where they happen, written by a thread.

The gateway logs a line per request, so a record must cost the request little:

- written on the event loop, each line was a write(2) that now and then blocked on
  the disk and stalled every request in flight (the tail latency showed it);
- handed to a thread one by one (``QueueHandler``), each record woke the thread and
  moved the GIL twice: a large share of a worker's throughput at saturation.

So the handler only renders the message and appends the record to a deque; the
writer thread wakes at most once per ``FLUSH_INTERVAL``, formats whatever has
gathered and writes it in one write. The access log, a line per request, skips
even the record: ``direct_line`` formats the whole line where it is logged (the
writer thread then holds the GIL only to join and write, never to format while
the event loop waits for it), when this module's handler is the only one. The
logging module's own documented switches for what a record needn't carry
(caller's file and line, thread, process) are turned off: the format uses none
of them. Each worker process sets this up for
itself (``POLYROUTE_LOG_LEVEL`` carries the level to workers).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from polyroute.attempts import Report
    from polyroute.finish import Finished
    from polyroute.gateway import RequestContext

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVEL_ENV = "POLYROUTE_LOG_LEVEL"
# Lines reach stderr at most this long after they were logged.
FLUSH_INTERVAL = 0.05


class _Clock:
    """``FORMAT``'s date and time, rendered once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""

    def stamp(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int(msecs):03d}"


class _Formatter(logging.Formatter):
    """``FORMAT`` with the date and time rendered once per second, not once per record."""

    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._clock = _Clock()

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._clock.stamp(record.created, record.msecs)


# Control characters a client or an upstream put in a message (a model name, an error text) are
# written escaped, so that no message can end its line and forge another.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {10: "\\n", 13: "\\r", 9: "\\t"}


def one_line(message: str) -> str:
    """``message`` with its control characters escaped (a cheap check first: most lines have none)."""
    return message if message.isprintable() else message.translate(_CONTROLS)


class BufferHandler(logging.Handler):
    """Renders each record's message at once (its arguments may change later) and queues it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: deque[logging.LogRecord | str] = deque()  # a str is a line formatted already
        self.wake = threading.Event()
        self._clock = _Clock()  # for the lines formatted here (the writer thread has its own)
        self.redact: Callable[[str], str] | None = None  # the last guard against secrets (see guard)

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: deque.append is atomic, and nothing here needs more.
        record.msg = one_line(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
        if self.redact is not None:
            record.msg = self.redact(record.msg)
            if record.exc_text:
                record.exc_text = self.redact(record.exc_text)
        self.records.append(record)
        if not self.wake.is_set():
            self.wake.set()
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def line(self, name: str, levelname: str, message: str) -> None:
        """Queue ``message`` as ``FORMAT`` renders it, with no record made."""
        now = time.time()
        stamp = self._clock.stamp(now, (now - int(now)) * 1000)
        if self.redact is not None:
            message = self.redact(message)
        self.records.append(f"{stamp} {levelname} {name}: {one_line(message)}")
        if not self.wake.is_set():
            self.wake.set()


class _Writer(threading.Thread):
    """Writes what the handler queued: one write per wake-up, until stopped."""

    def __init__(self, handler: BufferHandler, out: TextIO) -> None:
        super().__init__(name="polyroute-log-writer", daemon=True)
        self.handler = handler
        self.out = out
        self.formatter = _Formatter()
        self.stopping = False

    def run(self) -> None:
        wake = self.handler.wake
        while not self.stopping:
            wake.wait()
            wake.clear()
            # Let a burst gather: under load one write carries many lines, one wake-up many records.
            time.sleep(FLUSH_INTERVAL)
            self.drain()
        self.drain()

    def drain(self) -> None:
        records = self.handler.records
        lines = []
        while records:
            item = records.popleft()
            lines.append((item if isinstance(item, str) else self.formatter.format(item)) + "\n")
        if lines:
            try:
                self.out.write("".join(lines))
                self.out.flush()
            except (OSError, ValueError):
                pass  # stderr gone (closed pipe, closed file): nothing left to tell

    def stop(self) -> None:
        self.stopping = True
        self.handler.wake.set()
        self.join(timeout=5)


def setup(level: str | None = None) -> None:
    """Send every record to stderr through a writer thread.

    Like ``logging.basicConfig``, it does nothing where logging is configured already
    (a host application's, a test runner's, or an earlier call's handlers).
    """
    root = logging.getLogger()
    if root.handlers:
        return
    logging._srcfile = None  # no caller lookup per record: FORMAT shows no file or line
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root.setLevel((level or os.environ.get(LEVEL_ENV) or "info").upper())
    handler = BufferHandler()
    writer = _Writer(handler, sys.stderr)
    writer.start()
    atexit.register(writer.stop)  # what is queued is written before the process ends
    root.addHandler(handler)


def guard(redact: Callable[[str], str] | None) -> None:
    """Blank secrets out of every line this module's handler writes (where ``setup`` installed it).

    Secrets are kept out of messages where they enter (``polyroute.redact``); this is
    the last guard, for a path that missed it. A falsy ``redact`` (no secrets) costs nothing.
    """
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BufferHandler):
            handler.redact = redact or None


def direct_line(logger: logging.Logger) -> Callable[[str], None] | None:
    """A function that logs a message at INFO on ``logger`` with no ``LogRecord``, or None.

    Only where nothing but this module's handler would see the record (``setup`` ran,
    the logger has no handlers or filters of its own, INFO is enabled): anywhere else
    (a host application's logging, a test's capture) the caller logs as usual.
    """
    root = logging.getLogger()
    if len(root.handlers) != 1 or not isinstance(root.handlers[0], BufferHandler) or root.filters:
        return None
    node: logging.Logger | None = logger
    while node is not None and node is not root:
        if node.handlers or node.filters or not node.propagate:
            return None
        node = node.parent
    if not logger.isEnabledFor(logging.INFO):
        return None
    handler, name = root.handlers[0], logger.name
    return lambda message: handler.line(name, "INFO", message)


class AccessLog:
    """The observer that logs a line per finished request on ``polyroute.access``.

    The line names the key and its team (never the secret), the gateway's request id,
    the status, who answered and every attempt. It is formatted once the answers of
    this turn of the event loop have been written: answers come in bursts, and
    formatting each one's line before writing it would keep the rest of the burst waiting.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("polyroute.access")
        # ``polyroute serve``'s own logging: the access line skips the logging machinery.
        self.line = direct_line(self.log)

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        if self.log.isEnabledFor(logging.INFO):
            try:
                asyncio.get_running_loop().call_soon(self.write, ctx, report, outcome)
            except RuntimeError:  # no loop (an embedded, synchronous caller): now, then
                self.write(ctx, report, outcome)

    def write(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        p = ctx.principal
        who = f"{report.model.backend}/{report.model.name}" if report.model else "-"
        tries = ", ".join(f"{a.backend}/{a.model}:{a.outcome}:{a.latency_ms:.0f}ms" for a in report.attempts)
        text = (
            f"chat id={outcome.request_id} status={outcome.status} key={p.key or '-'} team={p.team or '-'} "
            f"route={report.route or '-'} answered_by={who} stream={outcome.stream} "
            f"attempts={len(report.attempts)} [{tries}] tokens={report.usage['total_tokens']} "
            f"cost_usd={report.cost_usd:.8f} ms={outcome.latency_ms:.0f}"
            + (f" error={outcome.error}" if outcome.error else "")
        )
        if self.line is not None:
            self.line(text)
        else:
            self.log.info("%s", text)
