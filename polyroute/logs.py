"""Logging for a server process: records are formatted where they happen, written by a thread.

The gateway logs a line per request. Written on the event loop, each line is a
write(2) that now and then blocks on the disk and stalls every request in flight:
at 64 concurrent requests that was +30 ms at p99. A ``QueueHandler`` hands each
record to a writer thread, which writes whatever has queued up meanwhile in one
write, so under load a write carries many lines. Each worker process sets this up
for itself (``POLYROUTE_LOG_LEVEL`` carries the level to workers).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
from logging.handlers import QueueHandler
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVEL_ENV = "POLYROUTE_LOG_LEVEL"


class _Writer(threading.Thread):
    """Drains the queue: one write for every record waiting, until told to stop (None)."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord | None], out: TextIO) -> None:
        super().__init__(name="polyroute-log-writer", daemon=True)
        self.records = records
        self.out = out
        self.formatter = logging.Formatter(FORMAT)

    def run(self) -> None:
        done = False
        while not done:
            batch = [self.records.get()]
            while True:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            done = None in batch
            lines = [self.formatter.format(r) + "\n" for r in batch if r is not None]
            if lines:
                try:
                    self.out.write("".join(lines))
                    self.out.flush()
                except (OSError, ValueError):
                    pass  # stderr gone (closed pipe, closed file): nothing left to tell

    def stop(self) -> None:
        self.records.put(None)
        self.join(timeout=5)


def setup(level: str | None = None) -> None:
    """Send every record to stderr through a writer thread.

    Like ``logging.basicConfig``, it does nothing where logging is configured already
    (a host application's, a test runner's, or an earlier call's handlers).
    """
    root = logging.getLogger()
    if root.handlers:
        return
    root.setLevel((level or os.environ.get(LEVEL_ENV) or "info").upper())
    records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    writer = _Writer(records, sys.stderr)
    writer.start()
    atexit.register(writer.stop)  # what is queued is written before the process ends
    root.addHandler(QueueHandler(records))
