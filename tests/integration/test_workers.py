"""``polyroute serve --workers 2`` as a user runs it: connections spread, a dead worker replaced."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from polyroute.server import workers
from tests.support.live import free_port
from tests.support.workers import connections_held, worker_pids

pytestmark = pytest.mark.skipif(not workers.BALANCED, reason="SO_REUSEPORT balancing is Linux's")

CONFIG = """
[gateway]
listen = "127.0.0.1:{port}"
[backends.f]
type = "fake"
[models.echo]
backend = "f"
"""
ASK = {"model": "echo", "messages": [{"role": "user", "content": "hello workers"}]}


def _alive(pid: int) -> bool:
    """Running, not gone and not a zombie waiting for whoever adopted it to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _wait_serving(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("gateway did not start")


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    cfg = tmp_path / "gw.toml"
    cfg.write_text(CONFIG.format(port=port))
    with (tmp_path / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "polyroute", "serve", "--config", str(cfg), "--workers", "2", "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=log, text=True,
        )
    try:
        _wait_serving(f"http://127.0.0.1:{port}", proc)
        deadline = time.monotonic() + 60
        while (tmp_path / "serve.log").read_text().count(" serving (pid ") < 2:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def test_connections_spread_over_both_workers(two_workers: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = two_workers
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) for _ in range(32)]
    try:
        for client in clients:
            r = client.post("/v1/chat/completions", json=ASK)
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        owners = connections_held(port, worker_pids(proc.pid))
        assert sum(owners.values()) == 32
        # A hash of 32 connections over two sockets: each gets some (all on one: p = 2 * 2**-32).
        assert len(owners) == 2 and min(owners.values()) > 0, owners
    finally:
        for client in clients:
            client.close()


def test_a_dead_worker_is_replaced_and_sigterm_stops_all(
    two_workers: tuple[subprocess.Popen[str], int], tmp_path: Path
) -> None:
    proc, port = two_workers
    first = worker_pids(proc.pid)
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = worker_pids(proc.pid)
        if len(now) == 2 and first[0] not in now:
            break
        time.sleep(0.1)
    now = worker_pids(proc.pid)
    assert len(now) == 2 and first[0] not in now and first[1] in now
    # Every new connection is served, whichever socket the kernel gives it.
    for _ in range(20):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.post("/v1/chat/completions", json=ASK).status_code == 200
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    err = (tmp_path / "serve.log").read_text()
    assert proc.returncode == 0
    assert f"(pid {first[0]}) exited with code -9; starting another" in err
    assert not any(_alive(pid) for pid in now)


def test_a_port_in_use_is_refused_plainly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "gw.toml"
        cfg.write_text(CONFIG.format(port=port))
        done = subprocess.run(
            [sys.executable, "-m", "polyroute", "serve", "--config", str(cfg), "--workers", "2"],
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("workers_of_second", ["1", "2"])
def test_a_second_gateway_on_the_port_of_a_running_one_is_refused(
        two_workers: tuple[subprocess.Popen[str], int], tmp_path: Path, workers_of_second: str) -> None:
    """Its sockets would share the port (SO_REUSEPORT) and take part of the traffic unnoticed."""
    proc, port = two_workers
    cfg = tmp_path / "second.toml"
    cfg.write_text(CONFIG.format(port=port))
    done = subprocess.run(
        [sys.executable, "-m", "polyroute", "serve", "--config", str(cfg), "--workers", workers_of_second],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr and proc.poll() is None


def test_workers_stop_when_their_supervisor_is_killed(two_workers: tuple[subprocess.Popen[str], int]) -> None:
    proc, _ = two_workers
    kids = worker_pids(proc.pid)
    assert len(kids) == 2
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 45
    while any(_alive(pid) for pid in kids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in kids)


def test_workers_without_redis_warn_that_limits_are_counted_per_worker(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "gw.toml"
    cfg.write_text(CONFIG.format(port=port) + '[keys.a]\nsecret = "env:A_KEY"\nbudget_usd = 1.0\n')
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "polyroute", "serve", "--config", str(cfg), "--workers", "2"],
            stdout=subprocess.DEVNULL, stderr=log, text=True, env={**os.environ, "A_KEY": "sk-a-0123456789abcdef"},
        )
    try:
        _wait_serving(f"http://127.0.0.1:{port}", proc)
        text = log_path.read_text()
        assert "2 workers and no [store] redis: each worker counts budgets and rate limits on its own" in text
        assert text.count("no [store] redis") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
