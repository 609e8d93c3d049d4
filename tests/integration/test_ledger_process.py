"""The ledger's writer process: rows reach the store once each, whoever of the two processes dies."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from polyroute.attempts import Report
from polyroute.errors import Attempt
from polyroute.finish import Finished
from polyroute.fleet import ModelEntry
from polyroute.gateway import RequestContext
from polyroute.routing import Principal
from polyroute.tenancy.ledger_process import CLOSE_TIMEOUT, LedgerProcess, WriterSpec
from polyroute.tenancy.sqlite import SqliteStore
from polyroute.types import make_usage
from tests.support.wait import wait_until

PASSWORD = "pw-never-shown-4f1c9e"


class OnLoop:
    """An event loop in a thread of its own, as the gateway's: the writer starts and is told there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


def spec(tmp_path: Path, **kw: object) -> WriterSpec:
    fields: dict[str, object] = {"url": f"sqlite:///{tmp_path / 'ledger.db'}", "flush_interval": 0.05,
                                 "rejected": str(tmp_path / "rejected.jsonl"), **kw}
    return WriterSpec(**fields)  # type: ignore[arg-type]


def tell(on: OnLoop, ledger: LedgerProcess, first: int, count: int) -> None:
    """Requests finished on the event loop, as the gateway's observers are told."""

    def finish() -> None:
        for i in range(first, first + count):
            ledger.finished(RequestContext(), Report(route="r"), Finished(f"req{i:05d}", 200, False, 0.0, 0.01))

    on.call(finish)


def stored(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return [r[0] for r in conn.execute("SELECT request_id FROM usage ORDER BY request_id")]
        except sqlite3.OperationalError:  # the writer has made the file and not yet its tables
            return []


def child_of(ledger: LedgerProcess) -> int:
    """The pid of the writer process the gateway runs now."""
    wait_until(lambda: ledger.pid is not None and Path(f"/proc/{ledger.pid}").exists(), what="a writer process")
    assert ledger.pid is not None
    return ledger.pid


@pytest.fixture
def on() -> Iterator[OnLoop]:
    loop = OnLoop()
    yield loop
    loop.stop()


@pytest.fixture
def ledger(tmp_path: Path, on: OnLoop) -> Iterator[LedgerProcess]:
    writer = LedgerProcess(spec(tmp_path, password=PASSWORD))
    on.call(writer.start)
    yield writer
    writer.close()


def test_every_row_reaches_the_store_once_and_close_waits_for_them(
    on: OnLoop, ledger: LedgerProcess, tmp_path: Path
) -> None:
    tell(on, ledger, 0, 700)
    assert ledger.flush(timeout=30)
    assert ledger.depth() == 0
    tell(on, ledger, 700, 300)
    ledger.close()  # no flush first: close sends the rest and waits for the child to write it
    assert stored(tmp_path / "ledger.db") == [f"req{i:05d}" for i in range(1000)]


def test_the_password_is_in_neither_the_childs_arguments_nor_its_environment(ledger: LedgerProcess) -> None:
    pid = child_of(ledger)
    assert PASSWORD.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert PASSWORD.encode() not in Path(f"/proc/{pid}/environ").read_bytes()


def test_the_gateway_runs_no_thread_for_its_ledger(on: OnLoop, tmp_path: Path) -> None:
    """A thread that wants the GIL costs the event loop far more than its own work (see the module)."""
    before = set(threading.enumerate())
    writer = LedgerProcess(spec(tmp_path))
    on.call(writer.start)
    try:
        tell(on, writer, 0, 100)
        assert writer.flush(timeout=30)
        assert set(threading.enumerate()) - before == set()
    finally:
        writer.close()
    assert len(stored(tmp_path / "ledger.db")) == 100


def test_a_writer_killed_is_started_again_and_sent_what_it_had_not_taken(
    on: OnLoop, ledger: LedgerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="polyroute.ledger")
    tell(on, ledger, 0, 200)
    assert ledger.flush(timeout=30)
    first = child_of(ledger)
    os.kill(first, signal.SIGKILL)
    tell(on, ledger, 200, 300)  # told while the writer is dead: kept, then sent to the next one
    assert ledger.flush(timeout=30)
    assert child_of(ledger) != first
    assert stored(tmp_path / "ledger.db") == [f"req{i:05d}" for i in range(500)]
    said = [r.getMessage() for r in caplog.records]
    assert sum("writer process ended" in m for m in said) == 1 and any("works again" in m for m in said)


def test_the_writer_ignores_sigterm_and_sigint_and_ends_with_the_pipe(
    on: OnLoop, ledger: LedgerProcess, tmp_path: Path
) -> None:
    assert ledger.flush(timeout=30)  # the writer has started and answered
    pid = child_of(ledger)
    os.kill(pid, signal.SIGTERM)  # a stop sent to the whole process group: the gateway decides when it ends
    os.kill(pid, signal.SIGINT)
    tell(on, ledger, 0, 50)
    assert ledger.flush(timeout=30) and child_of(ledger) == pid
    ledger.close()
    assert not Path(f"/proc/{pid}").exists()  # ended, and reaped
    assert len(stored(tmp_path / "ledger.db")) == 50


def test_rows_sent_before_the_gateway_is_killed_are_still_written(tmp_path: Path) -> None:
    """``kill -9`` of the gateway's process: its writer has the rows it was sent, writes them, and exits."""
    send_400_rows_then_kill_the_gateway(tmp_path)
    wait_until(lambda: len(stored(tmp_path / "ledger.db")) == 400, timeout=30, what="the orphaned writer's rows")


def test_an_orphaned_writer_waits_out_a_database_locked_longer_than_a_stop_would_wait(tmp_path: Path) -> None:
    """A gateway killed while another process holds the SQLite file: nobody waits for its writer, so the
    writer does not give up after a stop's budget; the rows arrive once the lock is gone."""
    db = tmp_path / "ledger.db"
    SqliteStore(db).close()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    send_400_rows_then_kill_the_gateway(tmp_path)
    time.sleep(CLOSE_TIMEOUT + 3)  # the lock outlasts what a stop would wait: the scenario, not a wait for a state
    assert stored(db) == []
    locker.execute("COMMIT")
    locker.close()
    wait_until(lambda: len(stored(db)) == 400, timeout=60, what="the orphaned writer's rows, after the lock")


def send_400_rows_then_kill_the_gateway(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import asyncio, os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from pathlib import Path
        from polyroute.attempts import Report
        from polyroute.finish import Finished
        from polyroute.gateway import RequestContext
        from polyroute.tenancy.ledger_process import LedgerProcess
        from tests.integration.test_ledger_process import spec

        async def main():
            ledger = LedgerProcess(spec(Path({str(tmp_path)!r}), flush_interval=60.0))  # nothing written before
            ledger.start()
            for i in range(400):
                ledger.finished(RequestContext(), Report(route="r"), Finished(f"req{{i:05d}}", 200, False, 0.0, 0.01))
            while ledger._outbox or ledger._unsent:  # sent: in the pipe, not yet written
                await asyncio.sleep(0.01)
            print("sent", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
    """)
    # Its log to a file: the orphaned writer inherits it and outlives the gateway, and a pipe would stay open.
    with (tmp_path / "gateway.log").open("wb") as log:
        gateway = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=log, timeout=120)
    assert gateway.returncode == -signal.SIGKILL and b"sent" in gateway.stdout, (tmp_path / "gateway.log").read_text()


def test_a_writer_whose_store_cannot_be_opened_yet_keeps_the_rows_until_it_can(tmp_path: Path, on: OnLoop) -> None:
    """A writer started while its database is down (the file's directory is a file here) does not die:
    it holds the rows, says so once, and writes them when the store can be opened."""
    blocker = tmp_path / "later"
    blocker.write_text("not a directory yet")
    writer = LedgerProcess(spec(tmp_path, url=f"sqlite:///{blocker / 'ledger.db'}"))
    on.call(writer.start)
    try:
        tell(on, writer, 0, 30)
        assert not writer.flush(timeout=2)
        pid = child_of(writer)
        blocker.unlink()
        blocker.mkdir()
        assert writer.flush(timeout=30)
        assert writer.pid == pid  # the same writer: it waited rather than died
    finally:
        writer.close()
    assert len(stored(blocker / "ledger.db")) == 30


def test_a_writer_dead_at_shutdown_is_started_once_more_for_what_is_left(
    on: OnLoop, ledger: LedgerProcess, tmp_path: Path
) -> None:
    tell(on, ledger, 0, 100)
    assert ledger.flush(timeout=30)
    pid = child_of(ledger)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: on.call(lambda: ledger._child is None), what="the writer's death noticed")
    tell(on, ledger, 100, 50)  # nobody to send them to until the next writer
    ledger.close()  # before that one is due: close starts it at once, and waits for it
    assert stored(tmp_path / "ledger.db") == [f"req{i:05d}" for i in range(150)]


def test_the_writer_reads_rows_as_fields_and_as_whole_rows() -> None:
    from polyroute.tenancy.ledger import fields_of, row_of
    from polyroute.tenancy.ledger_process import row_of_line
    from polyroute.tenancy.spool import encode

    report = Report(route="main", model=ModelEntry("m", "b", "m", None, 1.0, 2.0, None, frozenset(), "hosted"),
                    usage=make_usage(5, 7), cost_usd=0.0123456789012)
    report.attempts.append(Attempt("b", "x", "unavailable", 12.5, ""))
    report.attempts.append(Attempt("b", "m", "ok", 30.25, ""))
    ctx = RequestContext(principal=Principal(key="app", team="ops"))
    outcome = Finished("req_1", 200, True, 10.0, 10.5, 10.1)
    expected = row_of(ctx, report, outcome, 1_765_000_000.25)
    as_fields = orjson.dumps(fields_of(ctx, report, outcome, 1_765_000_000.25))
    assert row_of_line(as_fields) == expected
    assert row_of_line(encode([expected]).rstrip(b"\n")) == expected  # a whole row, as before
    assert expected.ttft_ms == 100.0 and expected.latency_ms == 500.0 and expected.cost_usd == 0.0123456789
    assert orjson.loads(expected.attempts)[0] == {"backend": "b", "model": "x", "outcome": "unavailable", "ms": 12.5}
