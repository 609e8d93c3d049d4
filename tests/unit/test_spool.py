"""The ledger's spool: rows on disk until the store has them, replayed after a crash, none lost or doubled."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from polyroute.attempts import Report
from polyroute.errors import ConfigError
from polyroute.finish import Finished
from polyroute.gateway import RequestContext
from polyroute.tenancy.ledger import Ledger
from polyroute.tenancy.spool import Spool
from polyroute.tenancy.stores import UsageRow
from tests.support.wait import wait_until

AT = datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)


def row(i: int) -> UsageRow:
    return UsageRow(f"id{i}", AT + timedelta(seconds=i), "k", None, "main", "m", "b", "[]", 1, 2, 0.5, True, 3.25,
                    None, 200, None, i % 2 == 0)


class Store:
    """A ledger store that is down while ``down`` is set, and keeps rows by request id like the real ones."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.kept: dict[str, UsageRow] = {}
        self.writes = 0

    def write(self, rows: Sequence[UsageRow]) -> None:
        if self.down.is_set():
            raise OSError("connection refused")
        self.writes += 1
        for r in rows:
            self.kept.setdefault(r.request_id, r)

    def rows(self, since: datetime, key: str | None = None) -> list[UsageRow]:
        return list(self.kept.values())

    def close(self) -> None:
        pass


def finish(ledger: Ledger, first: int, last: int) -> None:
    for i in range(first, last):
        ledger.finished(RequestContext(), Report(route="r"), Finished(f"id{i}", 200, False, 0.0, 0.01))


def test_rows_come_back_as_they_went_in_and_the_file_empties_once_all_are_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.jsonl")
    spool.append([row(i) for i in range(5)])
    spool.append([row(5)])
    first, end = spool.next(4)
    assert first == [row(i) for i in range(4)] and spool.pending
    spool.commit(end)
    rest, end = spool.next(100)
    assert rest == [row(4), row(5)]
    spool.commit(end)
    assert not spool.pending and (tmp_path / "s.jsonl").stat().st_size == 0
    spool.close()


def test_after_a_crash_the_spool_is_read_from_its_start_and_a_torn_last_line_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.jsonl"
    spool = Spool(path)
    spool.append([row(0), row(1)])
    spool.commit(spool.next(1)[1])  # the store had the first; the process dies before it has the second
    with path.open("ab") as f:
        f.write(b'{"request_id": "id2", "at"')  # killed mid-write
    spool.close()
    again = Spool(path)
    assert again.next(100)[0] == [row(0), row(1)]  # the store keeps id0 once
    assert "torn last line" in caplog.text
    again.close()


def test_a_second_process_takes_the_next_slot_and_a_dead_ones_rows_are_adopted(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    first = Spool(path)
    second = Spool(path)  # the same folder, e.g. two workers: each holds its own file
    assert (first.path, second.path) == (path, tmp_path / "s-1.jsonl")
    second.append([row(7), row(8)])
    second.close()  # the second dies with rows the store never got
    third = Spool(path)
    assert third.path == tmp_path / "s-1.jsonl" and third.next(10)[0] == [row(7), row(8)]
    third.close()
    first.close()
    # Started alone later, a gateway takes the first slot and the rows of every other one.
    fourth = Spool(path)
    assert fourth.path == path and fourth.next(10)[0] == [row(7), row(8)]
    assert not (tmp_path / "s-1.jsonl").exists()
    fourth.close()


def test_a_spool_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as bad:
        Spool(blocker / "s.jsonl")
    assert "store.spool" in str(bad.value)


def test_while_the_store_is_down_rows_wait_on_disk_and_arrive_once_when_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("polyroute.tenancy.ledger.RETRY_AFTER", 0.01)
    caplog.set_level(logging.WARNING, logger="polyroute.ledger")
    store = Store()
    store.down.set()
    ledger = Ledger(store, batch_size=7, flush_interval=0.01, spool=Spool(tmp_path / "s.jsonl"))
    ledger.start()
    finish(ledger, 0, 50)
    wait_until(lambda: not ledger.queue, what="the queue spooled while the store is down")
    # The writer has met the outage (on a busy machine it may not have tried yet when the queue is spooled).
    wait_until(lambda: any("failed" in r.getMessage() for r in caplog.records), what="the writer met the outage")
    assert store.kept == {} and ledger.spool is not None and ledger.spool.pending
    store.down.clear()
    assert ledger.flush(timeout=20)
    finish(ledger, 50, 60)
    assert ledger.flush(timeout=20)
    ledger.close()
    assert sorted(store.kept) == sorted(f"id{i}" for i in range(60))
    assert sum("failed" in r.getMessage() for r in caplog.records) == 1
    assert sum("works again" in r.getMessage() for r in caplog.records) == 1


def test_shutdown_with_the_store_down_leaves_every_row_in_the_spool_for_the_next_start(tmp_path: Path) -> None:
    store = Store()
    store.down.set()
    ledger = Ledger(store, batch_size=1000, flush_interval=60, spool=Spool(tmp_path / "s.jsonl"))
    ledger.start()
    finish(ledger, 0, 20)
    ledger.close(timeout=30)  # returns once the rows are on disk, not after the timeout
    assert not any(t.name.startswith("polyroute-ledger") for t in threading.enumerate())
    store.down.clear()
    # Replayed at start, not a flush interval later.
    restarted = Ledger(store, batch_size=1000, flush_interval=60, spool=Spool(tmp_path / "s.jsonl"))
    restarted.start()
    assert restarted.flush(timeout=20)
    restarted.close()
    assert sorted(store.kept) == sorted(f"id{i}" for i in range(20))


def test_with_retention_the_writer_asks_the_store_to_forget_older_rows(tmp_path: Path) -> None:
    store = Store()
    asked: list[datetime] = []
    store.expire = asked.append  # type: ignore[attr-defined]
    ledger = Ledger(store, flush_interval=0.01, spool=Spool(tmp_path / "s.jsonl"), retention_days=30)
    ledger.start()
    wait_until(lambda: asked, what="a retention pass at start")
    ledger.close()
    assert len(asked) == 1  # then hourly
    assert abs(asked[0] - (datetime.now(UTC) - timedelta(days=30))) < timedelta(minutes=5)


_FULL_DISK = """
import resource, sys
from datetime import UTC, datetime
from pathlib import Path
from polyroute.tenancy.spool import Spool
from polyroute.tenancy.stores import UsageRow

at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
rows = [UsageRow(f"id{i}", at, "k", None, "main", "m", "b", "[]", 1, 2, 0.5, True, 3.25, None, 200, None, False)
        for i in range(40)]
spool = Spool(Path(sys.argv[1]))
resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))  # a disk that fills up part-way through a batch
kept, failed = 0, 0
for r in rows:
    try:
        spool.append([r])
        kept += 1
    except OSError:
        failed += 1
back, end = spool.next(1000)  # must return: it used to ask for bytes the file never got, forever
assert [r.request_id for r in back] == [f"id{i}" for i in range(kept)], back
assert failed and end == Path(sys.argv[1]).stat().st_size
print(kept, failed)
"""


def test_a_full_disk_fails_the_append_and_the_spool_still_reads_back_what_it_holds(tmp_path: Path) -> None:
    """A write cut short by a full disk (or a file-size limit) is a failure, not bytes the spool counts."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path / "s.jsonl")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    kept, failed = map(int, done.stdout.split())
    assert kept > 0 and failed > 0 and kept + failed == 40


def test_a_spool_that_cannot_be_written_sends_rows_straight_to_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="polyroute.ledger")
    store = Store()
    spool = Spool(tmp_path / "s.jsonl")
    real = spool.append
    broken = threading.Event()
    broken.set()

    def append(rows: list[UsageRow]) -> None:
        if broken.is_set():
            raise OSError(30, "Read-only file system")
        real(rows)

    monkeypatch.setattr(spool, "append", append)
    ledger = Ledger(store, batch_size=7, flush_interval=0.01, spool=spool)
    ledger.start()
    finish(ledger, 0, 30)
    assert ledger.flush(timeout=20)  # the store has them all, with no spool to pass through
    assert sorted(store.kept) == sorted(f"id{i}" for i in range(30)) and not spool.pending
    broken.clear()  # the spool can be written again: rows pass through it once more
    finish(ledger, 30, 40)
    assert ledger.flush(timeout=20)
    ledger.close()
    assert sorted(store.kept) == sorted(f"id{i}" for i in range(40))
    assert sum("cannot be written" in r.getMessage() for r in caplog.records) == 1
    assert sum("can be written again" in r.getMessage() for r in caplog.records) == 1


def test_rows_neither_the_store_nor_the_spool_took_are_logged_at_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("polyroute.tenancy.ledger.RETRY_AFTER", 0.01)
    store = Store()
    store.down.set()
    spool = Spool(tmp_path / "s.jsonl")
    monkeypatch.setattr(spool, "append", lambda rows: (_ for _ in ()).throw(OSError(28, "No space left")))
    ledger = Ledger(store, batch_size=7, flush_interval=0.01, spool=spool)
    ledger.start()
    finish(ledger, 0, 3)
    ledger.close(timeout=0.5)
    logged = [r.getMessage() for r in caplog.records if "unwritten row" in r.getMessage()]
    assert len(logged) == 3 and all('"request_id":"id' in m for m in logged)


def test_a_spool_left_by_a_process_that_died_after_start_is_taken_over_while_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("polyroute.tenancy.ledger.ADOPT_EVERY", 0.01)
    store = Store()
    path = tmp_path / "s.jsonl"
    ledger = Ledger(store, flush_interval=0.01, spool=Spool(path))
    ledger.start()
    other = Spool(path)  # another worker, started later, that dies with rows the store never got
    other.append([row(7), row(8)])
    other.close()
    wait_until(lambda: {"id7", "id8"} <= set(store.kept), what="the dead worker's rows taken over")
    ledger.close()
    assert not (tmp_path / "s-1.jsonl").exists()


def test_a_spooled_line_that_is_not_a_row_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    spool = Spool(path)
    spool.append([row(0)])
    spool.close()
    with path.open("ab") as f:
        f.write(b'{"not": "a row"}\n')
    again = Spool(path)
    again.append([row(1)])
    rows, end = again.next(10)
    again.commit(end)
    again.close()
    assert rows == [row(0), row(1)]
    assert (tmp_path / "s-unreadable.jsonl").read_bytes() == b'{"not": "a row"}\n'


def test_a_takeover_cut_short_by_a_full_disk_keeps_neither_half_nor_the_count_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyroute.tenancy import spool as spool_module

    path = tmp_path / "s.jsonl"
    mine = Spool(path)
    mine.append([row(0)])
    other = Spool(path)  # a worker that dies with rows of its own
    other.append([row(i) for i in range(100, 200)])
    other.close()
    real = spool_module._write_all

    def half(fd: int, data: bytes) -> None:
        real(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_module, "_write_all", half)
    with pytest.raises(OSError):
        mine.adopt()
    monkeypatch.setattr(spool_module, "_write_all", real)
    mine.append([row(1)])
    rows, end = mine.next(1000)
    assert rows == [row(0), row(1)] and end == path.stat().st_size  # nothing half-copied in between
    mine.adopt()  # the disk has room again: the orphan's rows come over whole
    rows, end = mine.next(1000)
    assert rows == [row(0), row(1), *(row(i) for i in range(100, 200))]
    mine.commit(end)
    assert not mine.pending and not (tmp_path / "s-1.jsonl").exists()
    mine.close()


def test_a_spool_holding_rows_for_another_store_is_refused_not_replayed_into_this_one(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    first = Spool(path, "postgresql://db-a:5432/ledger")
    first.append([row(0), row(1)])
    first.close()  # the gateway stops with rows the store never got; then its config names another database
    with pytest.raises(ConfigError) as bad:
        Spool(path, "postgresql://db-b:5432/ledger")
    said = str(bad.value)
    assert "holds rows for the store postgresql://db-a:5432/ledger" in said and "store.spool" in said
    again = Spool(path, "postgresql://db-a:5432/ledger")  # the store they are for takes them
    rows, end = again.next(10)
    again.commit(end)
    again.close()
    assert rows == [row(0), row(1)]
    Spool(path, "postgresql://db-b:5432/ledger").close()  # empty now: any store may use the name


def test_a_spool_from_before_stores_were_recorded_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    old = Spool(path)
    old.append([row(3)])
    old.close()
    new = Spool(path, "postgresql://db:5432/ledger")
    assert new.next(10)[0] == [row(3)]
    new.close()


def test_a_sqlite_store_says_it_will_not_take_a_spool_left_for_postgresql(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from polyroute import config as cfg
    from polyroute.tenancy.setup import open_ledger
    from polyroute.tenancy.sqlite import SqliteStore

    spool = tmp_path / "spool.jsonl"
    left = Spool(spool, "postgresql://db:5432/ledger")
    left.append([row(5)])
    left.close()
    config = cfg.parse({"store": {"url": f"sqlite:///{tmp_path / 'l.db'}", "spool": str(spool)}}, source="<test>")
    store = SqliteStore(tmp_path / "l.db")
    open_ledger(config, store)
    store.close()
    assert "holds rows this store" in caplog.text
    assert "postgresql://db:5432/ledger" in (tmp_path / "spool.store").read_text()
