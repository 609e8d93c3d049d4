"""Server logging: records reach stderr through a writer thread, not from the thread that logs."""

from __future__ import annotations

import re
import subprocess
import sys

SCRIPT = """
import logging, sys, threading
from polyroute import logs
logs.setup("info")
logs.setup("debug")  # configured already: nothing changes
root = logging.getLogger()
assert [type(h) for h in root.handlers] == [logs.BufferHandler] and root.level == logging.INFO
written_by = []
real_write = sys.stderr.write
def write(text):
    written_by.append(threading.current_thread().name)
    return real_write(text)
sys.stderr.write = write
logging.getLogger("polyroute.access").info("chat route=%s", "r1")
logging.getLogger("polyroute.access").debug("not at info")
logging.shutdown()
import atexit; atexit._run_exitfuncs()
print(sorted(set(written_by)) == ["polyroute-log-writer"])
"""


def test_records_are_written_by_a_thread_and_flushed_at_exit() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].endswith("INFO polyroute.access: chat route=r1")


BURST = """
import logging, sys
from polyroute import logs
logs.setup("info")
writes = []
real_write = sys.stderr.write
sys.stderr.write = lambda text: (writes.append(text), real_write(text))[1]
log = logging.getLogger("polyroute.access")
for i in range(2000):
    log.info("line %d", i)
import atexit; atexit._run_exitfuncs()
print(len(writes))
"""


def test_a_burst_of_records_is_written_in_fewer_writes_and_in_order() -> None:
    done = subprocess.run([sys.executable, "-c", BURST], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == [str(i) for i in range(2000)]
    assert int(done.stdout) < 2000


LATER = """
import logging
from polyroute import logs
logs.setup("info")
log = logging.getLogger("polyroute.server")
state = {"n": 1}
log.info("state %s", state)
state["n"] = 2  # changed before the writer thread gets to the record
try:
    1 / 0
except ZeroDivisionError:
    log.exception("failed")
import atexit; atexit._run_exitfuncs()
"""


def test_messages_are_rendered_when_logged_and_tracebacks_kept() -> None:
    done = subprocess.run([sys.executable, "-c", LATER], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].endswith("INFO polyroute.server: state {'n': 1}")
    assert lines[1].endswith("ERROR polyroute.server: failed")
    assert lines[2] == "Traceback (most recent call last):" and lines[-1] == "ZeroDivisionError: division by zero"


DIRECT = """
import logging
from polyroute import logs
access = logging.getLogger("polyroute.access")
print(logs.direct_line(access) is None)  # before setup: the host's logging (none here) decides
logs.setup("info")
line = logs.direct_line(access)
line("chat route=r1 tokens=3")
access.info("chat route=%s tokens=%d", "r2", 4)
own = logging.getLogger("polyroute.custom")
own.addHandler(logging.NullHandler())
print(logs.direct_line(own) is None)  # a handler of its own would miss the line
logging.getLogger().setLevel("WARNING")
print(logs.direct_line(access) is None)  # INFO is off: no line at all
import atexit; atexit._run_exitfuncs()
"""


def test_a_direct_line_reads_like_a_logged_one_and_only_where_nothing_else_would_see_it() -> None:
    done = subprocess.run([sys.executable, "-c", DIRECT], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True"]
    direct, logged = done.stderr.splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(stamp + r" INFO polyroute\.access: chat route=r1 tokens=3", direct), direct
    assert re.fullmatch(stamp + r" INFO polyroute\.access: chat route=r2 tokens=4", logged), logged


FORGE = """
import logging
from polyroute import logs
logs.setup("info")
forged = "x\\n2026-01-01 00:00:00,000 INFO polyroute.access: chat id=FORGED status=200 key=admin\\x00\\x1b[2J"
logging.getLogger("polyroute.access").info("chat route=%s", forged)
line = logs.direct_line(logging.getLogger("polyroute.access"))
line("chat route=" + forged)
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("polyroute").exception("failed for %s", "a\\r\\nb")
logging.shutdown()
import atexit; atexit._run_exitfuncs()
"""


def test_a_message_cannot_end_its_line_and_forge_another() -> None:
    """A model name or an upstream's text with a newline, NUL or escape codes is written escaped, on its own line."""
    done = subprocess.run([sys.executable, "-c", FORGE], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert not any(line.startswith("2026-01-01") for line in lines)
    access = [line for line in lines if "polyroute.access" in line]
    assert len(access) == 2
    assert all(line.endswith("chat route=x\\n2026-01-01 00:00:00,000 INFO polyroute.access: chat id=FORGED "
                             "status=200 key=admin\\x00\\x1b[2J") for line in access)
    assert any(line.endswith("failed for a\\r\\nb") for line in lines)
    assert "ValueError: boom" in done.stderr  # a traceback keeps its lines
