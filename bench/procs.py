"""Child processes that are always cleaned up, and what /proc says about them.

Every server is started in its own session (so its whole process group can be
signalled at once) with PR_SET_PDEATHSIG, so it dies with the harness even when
the harness is killed with SIGKILL. ``Service.stop`` sends SIGTERM to the group,
waits, then SIGKILLs it; the runner registers every stop in an ExitStack, which
runs on return, exception and Ctrl-C alike.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (runs in the child)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """A long-running child process whose output goes to a log file."""

    def __init__(
        self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after grace seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(self.proc.pid):
                break
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=2.0)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_for_port(port: int, service: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}:\n{service.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{service.name} did not listen on port {port} within {timeout:.0f}s:\n{service.log_tail()}")


def wait_for_chat(port: int, model: str, service: Service, timeout: float, api_key: str) -> None:
    """Wait until POST /v1/chat/completions answers 200 (the target is really ready)."""
    wait_for_port(port, service, timeout)
    deadline = time.monotonic() + timeout
    body = b'{"model":"%s","messages":[{"role":"user","content":"ready?"}],"max_tokens":4}' % model.encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
    last = ""
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}:\n{service.log_tail()}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/v1/chat/completions", body, headers)
            resp = conn.getresponse()
            text = resp.read()
            if resp.status == 200:
                return
            last = f"HTTP {resp.status}: {text[:300]!r}"
        except (OSError, http.client.HTTPException) as exc:
            last = repr(exc)
        finally:
            conn.close()
        time.sleep(0.2)
    raise RuntimeError(f"{service.name} never answered a chat completion ({last}):\n{service.log_tail()}")


def tree(root: int) -> list[int]:
    """root and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _read(f"/proc/{entry.name}/stat")
            if stat:
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        statm = _read(f"/proc/{pid}/statm").split()
        if len(statm) > 1:
            total += int(statm[1]) * _PAGE
    return total


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of the given processes (and their reaped children)."""
    ticks = 0
    for pid in pids:
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / _TICKS


class Sampler:
    """Samples the RSS of a process tree in a thread and keeps the peak.

    The tree is re-listed once a second (listing all of /proc costs more than
    reading a few statm files); RSS is read every ``interval`` seconds.
    """

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.pids = tree(root)
        self.peak = rss_bytes(self.pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{root}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        relist = time.monotonic() + 1.0
        while not self._stop.wait(self.interval):
            if time.monotonic() >= relist:
                self.pids = tree(self.root)
                relist = time.monotonic() + 1.0
            self.peak = max(self.peak, rss_bytes(self.pids))

    def cpu(self) -> float:
        return cpu_seconds(tree(self.root))

    def close(self) -> int:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.peak = max(self.peak, rss_bytes(tree(self.root)))
        return self.peak


def pin(root: int, cpus: set[int]) -> None:
    """Run every thread of the process tree under ``root`` on ``cpus`` only (Linux)."""
    for pid in tree(root):
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue  # gone meanwhile
        for tid in tids:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


def placement_cpus() -> tuple[set[int], set[int]] | None:
    """(the tools' CPUs, the gateway's CPU) for an own-core scenario; None with fewer than 2 CPUs."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(usable) < 2:
        return None
    return set(usable[:-1]), {usable[-1]}
