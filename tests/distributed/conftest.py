"""Fixtures of the tests that share state through a real Redis (127.0.0.1:6379, or one started here).

Each test gets its own key prefix, removed afterwards, so tests running beside others on
the same Redis never see each other's keys. A test that needs a Redis it may stop
starts its own ``redis-server`` on a free port (``PrivateRedis``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.live import free_port
from tests.support.wait import wait_until

SHARED = os.environ.get("POLYROUTE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not reachable(SHARED):
        pytest.skip(f"no Redis at {SHARED} (set POLYROUTE_TEST_REDIS, or start redis-server)")
    return SHARED


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"prtest-{os.urandom(6).hex()}:"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{name}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


class PrivateRedis:
    """A ``redis-server`` of this test only, on a free port, that the test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: reachable(self.url), what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None
        wait_until(lambda: not _listening(self.port), what="the port to be closed")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the outage tests start and stop their own")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()
