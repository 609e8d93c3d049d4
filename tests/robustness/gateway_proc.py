"""A real `polyroute serve` process for the client-side robustness tests, and raw-socket helpers.

The gateway serves the ``fake`` backend only (no network beyond loopback); each
test passes the ``[gateway]`` keys it needs. Memory is read from
``/proc/PID/status`` (VmRSS), the way an operator's monitor would see it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.support.live import free_port
from tests.support.wait import wait_until

CONFIG = """
[gateway]
listen = "127.0.0.1:{port}"
{gateway}
[backends.f]
type = "fake"
[models.echo]
backend = "f"
[models.slow-stream]
backend = "f"
upstream = "gap-{gap_ms}+text-one-two-three-four-five-six-seven-eight"
[models.slow-whole]
backend = "f"
upstream = "slow-{gap_ms}+echo"
"""
START_TIMEOUT = 60.0


@dataclass
class GatewayProc:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        """Resident memory of the gateway process, in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc status")

    def connect(self, rcvbuf: int | None = None, timeout: float = 10.0) -> socket.socket:
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", self.port))
        return sock

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@contextmanager
def gateway(tmp_path: Path, gateway_keys: str = "", gap_ms: int = 10,
            preexec: Callable[[], None] | None = None) -> Iterator[GatewayProc]:
    """Start `python -m polyroute serve` with ``gateway_keys`` under ``[gateway]``; stop it after."""
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(port=port, gateway=gateway_keys, gap_ms=gap_ms))
    with serving(config, port, tmp_path / "gateway.log", preexec=preexec) as gw:
        yield gw


@contextmanager
def serving(config: Path, port: int, log_path: Path, env: dict[str, str] | None = None,
            preexec: Callable[[], None] | None = None, args: tuple[str, ...] = ()) -> Iterator[GatewayProc]:
    """`python -m polyroute serve --config CONFIG [ARGS]` (listening on ``port``) until ready; killed after
    unless it has ended. ``env`` is added to this process's environment."""
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "polyroute", "serve", "--config", str(config), *args],
            stdout=subprocess.DEVNULL, stderr=out, preexec_fn=preexec, env={**os.environ, **(env or {})},
        )
    gw = GatewayProc(proc, port, log_path)
    try:
        wait_until(lambda: "ready: accepting requests" in gw.log() or proc.poll() is not None, START_TIMEOUT)
        assert proc.poll() is None, gw.log()
        yield gw
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def limit_files(count: int) -> Callable[[], None]:
    """For ``preexec_fn``: the child may hold at most ``count`` descriptors (soft and hard limit)."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))
    return apply


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n".encode()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def chat(body: dict[str, Any] | bytes) -> bytes:
    return post("/v1/chat/completions", body if isinstance(body, bytes) else orjson.dumps(body))


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Reader:
    """Reads whole answers (content-length or chunked) from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._more()
        out, _, self.buf = self.buf.partition(marker)
        return out

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self) -> tuple[int, dict[str, str]]:
        lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers

    def chunk(self) -> bytes:
        """The next chunk of a chunked body; b"" for the last one."""
        size = int(self._until(b"\r\n"), 16)
        if size == 0:
            self._until(b"\r\n")
            return b""
        data = self._exactly(size)
        self._exactly(2)
        return data

    def answer(self) -> Answer:
        status, headers = self.head()
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while chunk := self.chunk():
                body += chunk
        else:
            body = self._exactly(int(headers.get("content-length", "0")))
        return Answer(status, headers, body)

    def at_eof(self) -> bool:
        """Whether the peer closes: reads until EOF (or a reset), dropping what comes."""
        with contextlib.suppress(ConnectionResetError):
            while self.sock.recv(65536):
                pass
        return True


def ask(gw: GatewayProc, request: bytes, timeout: float = 10.0) -> tuple[Answer, float]:
    """One request on a new connection: the answer and the seconds it took."""
    started = time.monotonic()
    with gw.connect(timeout=timeout) as sock:
        sock.sendall(request)
        answer = Reader(sock).answer()
    return answer, time.monotonic() - started


def error_of(answer: Answer) -> dict[str, Any]:
    """The OpenAI-shaped error of an answer, checked for its four fields."""
    doc = answer.json()
    assert set(doc) == {"error"}, doc
    assert set(doc["error"]) == {"message", "type", "param", "code"}, doc
    err: dict[str, Any] = doc["error"]
    return err


def unread_by_gateway(gw: GatewayProc, sock: socket.socket) -> int | None:
    """Bytes the client sent on ``sock`` that the gateway has not read yet (its socket's receive
    queue, from /proc/net/tcp); None while the kernel does not show that socket."""
    client_port = sock.getsockname()[1]
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.rsplit(":", 1)[1], 16) == gw.port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                return int(queues.split(":")[1], 16)
    return None
