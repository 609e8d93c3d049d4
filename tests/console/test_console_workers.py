"""A console session on ``polyroute serve --workers 2``: good on whichever worker a connection lands on,
and a logout refused by all of them. No sticky routing: the kernel spreads connections (SO_REUSEPORT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from polyroute.server import workers
from tests.support.live import free_port
from tests.support.wait import wait_until
from tests.support.workers import connections_held, worker_pids

pytestmark = pytest.mark.skipif(not workers.BALANCED, reason="SO_REUSEPORT balancing is Linux's")

ADMIN = "admin-workers-0123456789abcdef"
CLIENT = "sk-workers-client-0123456789"
CONNECTIONS = 40  # all on one worker by chance: p = 2 * 2**-40
START_TIMEOUT = 90.0  # two interpreters importing the gateway on a busy 2-core machine
CONFIG = """
[gateway]
listen = "127.0.0.1:{port}"
[admin]
secret = "env:POLYROUTE_ADMIN_KEY"
[store]
url = "sqlite:///{tmp}/store.db"
[keys.client]
secret = "env:CLIENT_KEY"
[backends.f]
type = "fake"
[models.echo]
backend = "f"
"""


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    (tmp_path / "gw.toml").write_text(CONFIG.format(port=port, tmp=tmp_path))
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "polyroute", "serve", "--config", str(tmp_path / "gw.toml"), "--workers", "2",
             "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=log,
            env={**os.environ, "POLYROUTE_ADMIN_KEY": ADMIN, "CLIENT_KEY": CLIENT},
        )
    try:
        wait_until(lambda: proc.poll() is not None or log_path.read_text().count(" serving (pid ") >= 2,
                   timeout=START_TIMEOUT, what="both workers serving")
        assert proc.poll() is None, log_path.read_text()
        yield Served(proc, port)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def fresh_requests(served: Served, cookie: str, send: list[tuple[str, str, dict[str, str]]]) -> list[httpx.Response]:
    """Each request on a new connection, all held open until every one is answered; checks they reached
    both workers."""
    answers = []
    with ExitStack() as stack:
        for i in range(CONNECTIONS):
            client = stack.enter_context(httpx.Client(base_url=served.root, timeout=30, follow_redirects=False))
            method, path, headers = send[i % len(send)]
            body = {"route": "echo", "prompt": "hi"} if method == "POST" else None
            answers.append(client.request(method, path, json=body,
                                          headers={"cookie": f"polyroute_console={cookie}", **headers}))
        held = connections_held(served.port, worker_pids(served.proc.pid))
        assert len(held) == 2 and sum(held.values()) == CONNECTIONS and min(held.values()) > 0, held
    return answers


def test_a_session_is_good_on_every_worker_and_a_logout_ends_it_on_every_worker(two_workers: Served) -> None:
    with httpx.Client(base_url=two_workers.root, timeout=30) as c:
        r = c.post("/console/api/login", json={"secret": ADMIN})
        assert r.status_code == 200, r.text
        csrf = r.json()["csrf"]
        cookie = r.cookies["polyroute_console"]

    signed_in = fresh_requests(two_workers, cookie, [
        ("GET", "/console/api/overview", {}),
        ("GET", "/console/fleet", {}),
        ("GET", "/console/api/session", {}),
        ("POST", "/console/api/explain", {"x-csrf-token": csrf}),  # the CSRF token is checked by either worker
    ])
    assert [a.status_code for a in signed_in] == [200] * CONNECTIONS, [(a.url, a.text) for a in signed_in]
    assert {a.json()["csrf"] for a in signed_in if a.url.path == "/console/api/session"} == {csrf}

    with httpx.Client(base_url=two_workers.root, timeout=30) as c:
        out = c.post("/console/api/logout", headers={"x-csrf-token": csrf,
                                                     "cookie": f"polyroute_console={cookie}"})
        assert out.status_code == 200, out.text

    refused = fresh_requests(two_workers, cookie, [
        ("GET", "/console/api/overview", {}),
        ("GET", "/console/fleet", {}),
        ("POST", "/console/api/explain", {"x-csrf-token": csrf}),
    ])
    for answer in refused:
        if answer.url.path.startswith("/console/api/"):
            assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"
        else:
            assert answer.status_code == 303 and answer.headers["location"] == "/console/login?next=%2Fconsole%2Ffleet"


def test_the_overview_and_fleet_count_every_workers_requests(two_workers: Served) -> None:
    sent = 30
    for _ in range(sent):  # each on a new connection: both workers serve some
        r = httpx.post(f"{two_workers.root}/v1/chat/completions", timeout=30,
                       headers={"authorization": f"Bearer {CLIENT}"},
                       json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
    with httpx.Client(base_url=two_workers.root, timeout=30) as c:
        cookie = c.post("/console/api/login", json={"secret": ADMIN}).cookies["polyroute_console"]

    def counted() -> int:
        with httpx.Client(base_url=two_workers.root, timeout=30) as c:
            doc = c.get("/console/api/overview", headers={"cookie": f"polyroute_console={cookie}"}).json()
        assert doc["source"] == "ledger"
        return int(doc["windows"]["5m"]["requests"])

    wait_until(lambda: counted() == sent, what=f"the Overview counting all {sent} requests")  # once flushed
    answers = fresh_requests(two_workers, cookie, [("GET", "/console/api/overview", {}),
                                                   ("GET", "/console/api/fleet", {})])
    for a in answers:  # whichever worker answers
        if a.url.path.endswith("/overview"):
            assert a.json()["windows"]["1h"]["requests"] == sent
        else:
            echo = next(m for m in a.json()["models"] if m["name"] == "echo")
            assert echo["recent"]["answers"] == sent and echo["recent"]["failures"] == 0, echo
