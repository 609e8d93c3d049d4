"""A running ``polyroute serve --workers N`` seen from outside: its worker processes, who holds which connection."""

from __future__ import annotations

import os
from pathlib import Path


def worker_pids(supervisor: int) -> list[int]:
    """The supervisor's worker processes (multiprocessing's resource tracker left out)."""
    try:
        listed = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    except FileNotFoundError:
        return []
    found = []
    for pid in map(int, listed):
        try:
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except FileNotFoundError:
            continue
    return found


def connections_held(port: int, pids: list[int]) -> dict[int, int]:
    """How many established TCP connections to local ``port`` each of ``pids`` holds open."""
    established: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01":  # 01: ESTABLISHED
                established.add(cols[9])  # the socket's inode
    held = {}
    for pid in pids:
        count = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            count += target.startswith("socket:[") and target[8:-1] in established
        held[pid] = count
    return held
