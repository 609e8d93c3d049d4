"""A real gateway against hostile embeddings upstreams: a clear error or the next candidate, never wrong vectors.

``POST /v1/embeddings`` goes to OpenAI-wire backends on ``HostileUpstream`` (its ``emb-HOW``
answers and its gibibyte ``body``). Each hostile behaviour has a backend of its own, of the
same family as a sound one (text-embedding-3-small), and two routes: the hostile model alone,
which must end in an OpenAI-shaped 502 (never a 500 or a traceback), and the hostile model in
front of the sound one, which must answer with the sound model's vectors, in input order.
Memory is the process's peak RSS, read from ``/proc``.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.robustness.hostile_upstream import HostileUpstream, embedding_of
from tests.robustness.test_upstreams_hostile import Gateway, serving
from tests.support.clients import gateway_lines
from tests.support.live import free_port
from tests.support.wait import wait_until

DIMS = 8
INPUTS = ["the first text", "the second text", "the third text"]
TRICKLE_TIMEOUT = 2.0  # the trickling backend's answer_timeout
# Each must fail the attempt: none of these is a sound list of vectors for the inputs.
BROKEN = ["nan", "inf", "big", "b64nan", "str", "nested", "bool", "short", "long", "dupe", "gap", "extra", "gzip",
          "html", "trickle"]
HOSTILE = {name: f"emb-{name}" for name in BROKEN} | {"reversed": "emb-reversed", "noindex": "emb-noindex",
                                                        "body": "body-1073741824", "errtrickle": "emb-errtrickle"}


def _config(port: int, up: HostileUpstream) -> str:
    family = 'family = "text-embedding-3-small"'
    lines = [
        "[gateway]", f'listen = "127.0.0.1:{port}"', *gateway_lines(),
        "[backends.good]", 'type = "openai"', f'base_url = "{up.base_url}"', 'api_key = "env:UP_KEY"',
        "[models.ok]", 'backend = "good"', 'upstream = "emb-ok"', family,
    ]
    for name, behaviour in HOSTILE.items():
        timeout = [f"answer_timeout = {TRICKLE_TIMEOUT}"] if name in ("trickle", "errtrickle") else []
        lines += [f"[backends.{name}]", 'type = "openai"', f'base_url = "{up.base_url}"', 'api_key = "env:UP_KEY"',
                  *timeout, f"[models.{name}]", f'backend = "{name}"', f'upstream = "{behaviour}"', family,
                  f'[routes."{name}-then-ok"]', f'models = ["{name}", "ok"]']
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def gw(up: HostileUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = free_port()
    with serving(tmp_path_factory.mktemp("emb"), port, _config(port, up), {"UP_KEY": "sk-up-embeddings"}) as gateway:
        yield gateway


def _embed(gw: Gateway, model: str, encoding: str = "float") -> Any:
    with gw.client(None) as client:
        return client.post("/v1/embeddings", json={"model": model, "input": INPUTS, "dimensions": DIMS,
                                                   "encoding_format": encoding})


def _vectors(doc: dict[str, Any]) -> list[list[float]]:
    assert doc["object"] == "list" and [d["index"] for d in doc["data"]] == list(range(len(INPUTS))), doc
    out = []
    for item in doc["data"]:
        value = item["embedding"]
        if isinstance(value, str):
            raw = base64.b64decode(value)
            value = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        out.append(value)
    return out


def _sound(gw: Gateway, resp: Any, model: str = "ok") -> None:
    """The answer is the sound vectors, each for its own input, from ``model``."""
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-polyroute-model"] == model
    vectors = _vectors(resp.json())
    for i, vector in enumerate(vectors):
        assert vector == pytest.approx(embedding_of(i, DIMS), abs=1e-6), (i, vector)


def _failed(resp: Any) -> dict[str, Any]:
    """An OpenAI-shaped 502 (504 for a timeout) that says what the upstream did."""
    assert resp.status_code in (502, 504), resp.text
    doc = resp.json()
    assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}, doc
    assert "Traceback" not in resp.text
    error: dict[str, Any] = doc["error"]
    return error


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_a_sound_answer_in_any_order_reaches_each_input(gw: Gateway, encoding: str) -> None:
    _sound(gw, _embed(gw, "ok", encoding))
    _sound(gw, _embed(gw, "reversed-then-ok", encoding), "reversed")  # data out of order: put back in order
    _sound(gw, _embed(gw, "noindex-then-ok", encoding), "noindex")  # no index: in the order given


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_answer_fails_over_and_alone_is_a_clear_502(gw: Gateway, name: str) -> None:
    resp = _embed(gw, f"{name}-then-ok")
    _sound(gw, resp)
    assert "bad_response" in resp.headers["x-polyroute-attempt-log"] or name == "trickle"
    alone = _embed(gw, name)
    error = _failed(alone)
    assert error["code"] == "all_backends_failed" and f"{name}/{name}: " in error["message"], error
    print(f"\nrobustness: embeddings from emb-{name}: {error['message']}")
    assert gw.proc.poll() is None
    assert "Traceback" not in gw.log.read_text()


@pytest.mark.parametrize("name", ["trickle", "errtrickle"])
def test_a_body_that_trickles_for_ever_is_ended_by_the_answer_timeout(
    gw: Gateway, up: HostileUpstream, name: str
) -> None:
    """An answer's body, or an error's, that never ends: the attempt ends at its answer_timeout."""
    hangups = up.hangups.count(f"emb-{name}")
    started = time.monotonic()
    resp = _embed(gw, f"{name}-then-ok")
    took = time.monotonic() - started
    _sound(gw, resp)
    assert took < TRICKLE_TIMEOUT + 30  # bounds a failure only
    # Its connection is closed, not left open (and counted against the backend's connections) for ever.
    wait_until(lambda: up.hangups.count(f"emb-{name}") > hangups, 30, f"the {name} upstream's connection closed")


def test_a_gibibyte_answer_is_cut_at_the_answer_cap_and_memory_stays_bounded(
    gw: Gateway, up: HostileUpstream
) -> None:
    _sound(gw, _embed(gw, "ok"))
    before = gw.peak_rss()
    resp = _embed(gw, "body-then-ok")
    _sound(gw, resp)
    assert "body/body bad_response" in resp.headers["x-polyroute-attempt-log"]
    grown = gw.peak_rss() - before
    assert grown < 256 * 1024 * 1024, f"peak RSS grew by {grown >> 20} MiB"
    assert up.sent["body-1073741824"] < 256 * 1024 * 1024  # it stopped reading past max_answer_bytes


def test_a_gzip_bomb_is_not_inflated(gw: Gateway) -> None:
    before = gw.peak_rss()
    _sound(gw, _embed(gw, "gzip-then-ok"))
    grown = gw.peak_rss() - before
    assert grown < 128 * 1024 * 1024, f"peak RSS grew by {grown >> 20} MiB"  # 256 MiB once inflated
