"""Logging for a server process: records are formatted where they happen, written by a thread.

The gateway logs a line per request. Written on the event loop, each line is a
write(2) that now and then blocks on the disk and stalls every request in flight:
at 64 concurrent requests that was +30 ms at p99. A ``QueueHandler`` hands the
record to a ``QueueListener`` thread that does the writing. Each worker process
sets this up for itself (``POLYROUTE_LOG_LEVEL`` carries the level to workers).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
from logging.handlers import QueueHandler, QueueListener

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVEL_ENV = "POLYROUTE_LOG_LEVEL"


def setup(level: str | None = None) -> None:
    """Send every record to stderr through a writer thread.

    Like ``logging.basicConfig``, it does nothing where logging is configured already
    (a host application's, a test runner's, or an earlier call's handlers).
    """
    root = logging.getLogger()
    if root.handlers:
        return
    root.setLevel((level or os.environ.get(LEVEL_ENV) or "info").upper())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    out = logging.StreamHandler(sys.stderr)
    out.setFormatter(logging.Formatter(FORMAT))
    listener = QueueListener(records, out)
    listener.start()
    atexit.register(listener.stop)  # what is queued is written before the process ends
    root.addHandler(QueueHandler(records))
