"""The ledger's local spool: rows on disk until a remote store has acknowledged them.

An append-only file of JSON lines, one row a line, ``fsync``-ed per batch. The
ledger appends every finished row within ``flush_interval`` of the request's end,
whether the store is up or not, and reads the rows back from where the store's
acknowledgements have reached (``done``); once the store has every row, the file is
emptied. So a row is on disk within a second of its answer, and a store that is down
for an hour costs disk space, not rows.

    append(rows) ──fsync──▶ file ──next(n)──▶ store.write ──acknowledged──▶ commit(end)
                                                                  └─ all written: file emptied

After a crash the file is read from its start: rows the store already had come
again, and the store keeps each once (rows are keyed by request id and time).

A process holds its spool under an exclusive ``flock``. When the path given is held
(several workers or replicas on one machine), the next free ``NAME-1.jsonl``,
``NAME-2.jsonl``, ... is taken. On opening, every other spool of the same name that no
running process holds (left by a process that died) is adopted: its rows are appended
to this one and its file removed. The ledger looks for such spools again every few seconds,
so the rows of a process that dies after this one started are not left until a restart.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
from datetime import datetime
from pathlib import Path

import orjson

from polyroute.errors import ConfigError
from polyroute.tenancy.stores import UsageRow

log = logging.getLogger("polyroute.ledger")

SLOTS = 64  # spools one name may have on one machine
_READ = 256 << 10  # bytes read back at a time, at first


def encode(rows: list[UsageRow]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def decode(line: bytes) -> UsageRow:
    doc = orjson.loads(line)
    doc["at"] = datetime.fromisoformat(doc["at"])
    return UsageRow(**doc)


def owner_file(path: Path) -> Path:
    """Where a spool's name records the store its rows are for (``NAME.store`` beside ``NAME.jsonl``)."""
    return path.with_name(f"{path.stem}.store")


def check_writable(path: Path) -> None:
    """Refuse a spool folder that cannot be made or written (for a writer that opens the spool later)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
    except OSError as exc:
        raise _cannot_open(path, exc) from None
    if not writable:
        raise _cannot_open(path, PermissionError(13, "Permission denied"))


def _cannot_open(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot open the ledger's spool {path}: {exc.strerror or exc}", key="store.spool")


def check_owner(path: Path, owner: str) -> None:
    """Refuse a spool that holds rows for another store (the config's URL changed): replaying them into
    this one would put them in the wrong database. Files of no store, or empty, are this one's."""
    try:
        recorded = owner_file(path).read_text(encoding="utf-8").strip()
    except OSError:
        return
    if recorded and recorded != owner and held(path):
        raise ConfigError(
            f"the ledger's spool {path} holds rows for the store {recorded}, and the store is now {owner}: "
            f"start once with the store they were written for so they reach it, or move the spool files away",
            key="store.spool",
        )


def held(path: Path) -> bool:
    """Whether any spool of this name holds rows."""
    return any(p.exists() and p.stat().st_size > 0 for p in _slots(path))


class Spool:
    def __init__(self, path: Path, owner: str | None = None) -> None:
        if owner is not None:
            check_owner(path, owner)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if owner is not None:
                owner_file(path).write_text(owner + "\n", encoding="utf-8")
            self.path, self._fd = _claim(path)
        except OSError as exc:
            raise _cannot_open(path, exc) from None
        self._base = path
        self._lock = threading.Lock()
        self._size = _trim(self._fd, self.path)
        self._done = 0  # bytes the store has acknowledged
        try:
            self.adopt()
        except OSError as exc:  # (a full disk: tried again by the ledger every few seconds)
            log.error("ledger: taking over a stopped gateway's spool failed: %s", exc)

    def adopt(self) -> None:
        """Take over the rows of every spool of this name that no running process holds: at start, and
        again from time to time, for a process that died after this one started."""
        for orphan in _orphans(self._base, self.path):
            self._adopt(orphan)

    @property
    def pending(self) -> bool:
        with self._lock:
            return self._done < self._size

    def append(self, rows: list[UsageRow]) -> None:
        """Write ``rows`` and ``fsync``; raises ``OSError`` (disk full) having kept none of them."""
        data = encode(rows)
        with self._lock:
            try:
                _write_all(self._fd, data)
                os.fsync(self._fd)
            except OSError:
                os.ftruncate(self._fd, self._size)  # no half line left behind
                raise
            self._size += len(data)

    def next(self, limit: int) -> tuple[list[UsageRow], int]:
        """Up to ``limit`` rows from where the store has reached, and the offset after them."""
        with self._lock:
            start, size = self._done, self._size
        want = _READ
        while True:  # read more until ``limit`` whole lines are in, or the end
            asked = min(size - start, want)
            chunk = os.pread(self._fd, asked, start)
            if chunk.count(b"\n") >= limit or len(chunk) < asked or start + len(chunk) >= size:
                break  # (a file shorter than we counted ends the read too, rather than asking forever)
            want *= 2
        lines = chunk.split(b"\n", limit)[:-1][:limit]  # whole lines only (the last piece has no newline)
        rows, end = [], start
        for line in lines:
            end += len(line) + 1
            try:
                rows.append(decode(line))
            except (ValueError, TypeError, KeyError) as exc:
                self._keep_unreadable(line, exc)
        return rows, end

    def _keep_unreadable(self, line: bytes, exc: Exception) -> None:
        """A line that is not a row (a disk fault, a hand edit): copied aside before the spool is emptied."""
        aside = self.path.with_name(f"{self.path.stem}-unreadable{self.path.suffix}")
        try:
            with aside.open("ab") as out:
                out.write(line + b"\n")
        except OSError as err:
            log.error("ledger: a spooled line of %s cannot be read (%s) nor kept aside: %s", self.path, exc, err)
            return
        log.error("ledger: a spooled line of %s cannot be read (%s); kept in %s", self.path, exc, aside)

    def commit(self, end: int) -> None:
        """The store has every row before ``end``; once it has all, the file is emptied."""
        with self._lock:
            self._done = end
            if self._done >= self._size:
                os.ftruncate(self._fd, 0)
                self._done = self._size = 0

    def close(self) -> None:
        os.close(self._fd)  # releases the lock

    def _adopt(self, orphan: Path) -> None:
        try:
            fd = os.open(orphan, os.O_RDWR)
        except OSError:
            return
        try:
            if not _lock(fd, orphan):
                return
            end, at, lines = _whole_end(fd, os.fstat(fd).st_size), 0, 0
            with self._lock:
                try:
                    while at < end:
                        data = os.pread(fd, min(end - at, _READ), at)
                        _write_all(self._fd, data)
                        at, lines = at + len(data), lines + data.count(b"\n")
                    os.fsync(self._fd)
                except OSError:
                    os.ftruncate(self._fd, self._size)  # none of it, as for an append: the orphan stays
                    raise
                self._size += end
            if lines:
                log.warning("ledger: %d row(s) left in %s by a stopped gateway are taken over", lines, orphan)
            orphan.unlink()
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``. A full disk or a file-size limit makes ``os.write`` write part of it and
    say so, not raise: that is a failure here, or the spool would count bytes it does not hold."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "no space left for the ledger's spool")
        view = view[written:]


def _claim(path: Path) -> tuple[Path, int]:
    """The first slot of ``path`` no running process holds, opened and locked."""
    for candidate in _slots(path):
        fd = os.open(candidate, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if _lock(fd, candidate):
            return candidate, fd
        os.close(fd)
    raise OSError(f"all {SLOTS} spool files of that name are held by running gateways")


def _lock(fd: int, path: Path) -> bool:
    """Take the file's lock without waiting; false when another process holds it, or it was removed
    (adopted) between our open and our lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        fcntl.flock(fd, fcntl.LOCK_UN)
    return same


def _slots(path: Path) -> list[Path]:
    return [path, *(path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(1, SLOTS))]


def _orphans(path: Path, mine: Path) -> list[Path]:
    return [p for p in _slots(path) if p != mine and p.exists() and p.stat().st_size > 0]


def _whole_end(fd: int, size: int) -> int:
    """Where the last whole line of the file ends (0 for none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        found = os.pread(fd, pos - start, start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        pos = start
    return 0


def _trim(fd: int, path: Path) -> int:
    """The file's size, a torn last line (a crash mid-write) cut off first."""
    size = os.fstat(fd).st_size
    whole = _whole_end(fd, size)
    if whole < size:
        log.warning("ledger: a torn last line of %s (%d bytes) is dropped", path, size - whole)
        os.ftruncate(fd, whole)
    return whole
