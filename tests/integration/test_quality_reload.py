"""A `polyroute serve` process reads its router file again, without a restart: when it changes, or on SIGHUP."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from polyroute.cli import main
from tests.support.live import free_port
from tests.support.wait import wait_until

EASY = "What colour is the sky on a clear day? ({i})\nA. Blue\nB. Green\nC. Red\nD. Black\nAnswer:"
HARD = (
    "[{i}] Let f(x) = x^3 - 6x^2 + 11x - 6 and g(x) = 2x + 1. Compute the sum of all real x with f(g(x)) = 0, "
    "then give the remainder when 17^{{42}} is divided by 13.\nA. 3\nB. 7\nC. 11\nD. 12\nAnswer:"
)
CONFIG = """
[gateway]
listen = "127.0.0.1:{port}"
router_poll = {poll}
[store]
url = "sqlite:///{store}"
[backends.box]
type = "fake"
[models.small]
backend = "box"
input_per_mtok = 0.1
[models.big]
backend = "box"
input_per_mtok = 5.0
[routes.smart]
models = ["big", "small"]
strategy = "quality"
router = "{router}"
quality_target = 0.6
"""
START_TIMEOUT = 60.0


def train(folder: Path, out: Path, small_answers_hard: bool) -> None:
    """A router file written the way `polyroute router train` writes one (replaced whole)."""
    data = folder / f"labels-{small_answers_hard}.csv"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "small", "big"])
        for i in range(60):
            hard = i % 3 == 0
            w.writerow([(HARD if hard else EASY).format(i=i), small_answers_hard or not hard, True])
    assert main(["router", "train", "--data", str(data), "--models", "small,big", "--out", str(out)]) == 0


@contextmanager
def serve(
    folder: Path, router: Path, poll: float, workers: int = 1
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    conf = folder / "gateway.toml"
    conf.write_text(CONFIG.format(port=port, poll=poll, store=folder / "store.db", router=router))
    log = folder / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "polyroute", "serve", "--config", str(conf),
                                 "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=out)
    try:
        wait_until(lambda: "ready: accepting requests" in log.read_text() or proc.poll() is not None, START_TIMEOUT)
        assert proc.poll() is None, log.read_text()
        yield proc, f"http://127.0.0.1:{port}/v1", log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def first(base_url: str, prompt: str) -> tuple[str, dict[str, Any]]:
    """The model that answered, and the decision as x-polyroute-route-explain tells it."""
    r = httpx.post(f"{base_url}/chat/completions", headers={"x-polyroute-explain": "1"}, timeout=30,
                   json={"model": "smart", "messages": [{"role": "user", "content": prompt}]})
    assert r.status_code == 200, r.text
    return r.headers["x-polyroute-model"], json.loads(r.headers["x-polyroute-route-explain"])


def test_a_changed_router_file_is_read_again_without_a_restart(tmp_path: Path) -> None:
    router = tmp_path / "router.json"
    train(tmp_path, router, small_answers_hard=False)
    with serve(tmp_path, router, poll=0.2) as (proc, url, log):
        served, doc = first(url, HARD.format(i=500))
        assert served == "big" and [r["model"] for r in doc["order"]] == ["big", "small"]
        before = {r["model"]: r["score"] for r in doc["order"]}
        assert before["small"] < 0.6
        train(tmp_path, router, small_answers_hard=True)
        wait_until(lambda: first(url, HARD.format(i=500))[0] == "small", what="the new router in use")
        served, doc = first(url, HARD.format(i=500))
        assert [r["model"] for r in doc["order"]] == ["small", "big"]
        assert {r["model"]: r["score"] for r in doc["order"]}["small"] >= 0.6
        # The line is logged just after the swap: wait for it rather than race it.
        wait_until(lambda: f"router {router} loaded again: heads small, big" in log.read_text(),
                   what="the reload logged")
        assert proc.poll() is None  # the same process all along


def test_sighup_reads_the_file_again_and_a_broken_file_keeps_the_one_in_use(tmp_path: Path) -> None:
    router = tmp_path / "router.json"
    train(tmp_path, router, small_answers_hard=False)
    with serve(tmp_path, router, poll=0) as (proc, url, log):
        assert first(url, HARD.format(i=600))[0] == "big"
        # A broken file: SIGHUP tries it, says why it cannot be used, and routing goes on as before.
        router.write_text('{"format": "not a router"')
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "cannot be loaded; keeping the one in use" in log.read_text(), what="the refusal logged")
        assert first(url, HARD.format(i=600))[0] == "big"
        # A good file: with polling off (router_poll = 0) only SIGHUP brings it in.
        train(tmp_path, router, small_answers_hard=True)
        assert first(url, HARD.format(i=600))[0] == "big"
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: first(url, HARD.format(i=600))[0] == "small", what="the new router in use after SIGHUP")
        # A file that leaves one of the route's models without a head is used, and said so, as config check says it.
        assert main(["router", "train", "--data", str(tmp_path / "labels-True.csv"), "--models", "big",
                     "--out", str(router)]) == 0
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: f"router {router} has no head for small of route smart" in log.read_text(),
                   what="the missing head logged")
        assert proc.poll() is None


def test_sighup_to_the_supervisor_reaches_every_worker(tmp_path: Path) -> None:
    router = tmp_path / "router.json"
    train(tmp_path, router, small_answers_hard=False)
    with serve(tmp_path, router, poll=0, workers=2) as (proc, url, log):
        train(tmp_path, router, small_answers_hard=True)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: log.read_text().count(f"router {router} loaded again") == 2, what="both workers reloaded")
        # Whichever worker answers, it routes with the new file.
        assert {first(url, HARD.format(i=700 + i))[0] for i in range(6)} == {"small"}
        assert proc.poll() is None
