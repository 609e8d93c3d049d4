"""The learning loop in a real gateway: quality decisions recorded, ``POST /v1/feedback``, a retrain from it."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from polyroute.cli import main
from polyroute.quality.data import Example
from polyroute.quality.evaluate import train
from polyroute.quality.features import Embedder
from polyroute.quality.scorer import Scorer
from tests.support.live import Live, live_gateway

EASY = "What colour is the sky on a clear day? ({i})\nA. Blue\nB. Green\nC. Red\nD. Black\nAnswer:"
HARD = (
    "[{i}] Let f(x) = x^3 - 6x^2 + 11x - 6 and g(x) = 2x + 1. Compute the sum of all real x with f(g(x)) = 0, "
    "then give the remainder when 17^{{42}} is divided by 13.\nA. 3\nB. 7\nC. 11\nD. 12\nAnswer:"
)
ENV = {"MINE_KEY": "sk-mine-5e1f", "THEIRS_KEY": "sk-theirs-77c0"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feedback")


@pytest.fixture(scope="module")
def base_router(folder: Path) -> Path:
    examples = [Example(EASY.format(i=i), "easy", {"small": True, "big": True}) for i in range(40)]
    examples += [Example(HARD.format(i=i), "hard", {"small": False, "big": True}) for i in range(20)]
    path = folder / "router.json"
    path.write_bytes(train(examples, ["small", "big"], Embedder()).to_json())
    return path


def raw_config(router: Path, store: Path) -> dict[str, Any]:
    return {
        "store": {"url": f"sqlite:///{store}", "flush_interval": 0.05},
        "backends": {"box": {"type": "fake"}},
        "models": {
            "small": {"backend": "box", "input_per_mtok": 0.1, "output_per_mtok": 0.2},
            "big": {"backend": "box", "input_per_mtok": 5.0, "output_per_mtok": 15.0},
        },
        "keys": {"mine": {"secret": "env:MINE_KEY"}, "theirs": {"secret": "env:THEIRS_KEY"}},
        "routes": {
            "smart": {"models": ["big", "small"], "strategy": "quality", "router": str(router), "quality_target": 0.6},
            "plain": {"models": ["small"]},
        },
    }


@pytest.fixture(scope="module")
def live(base_router: Path, folder: Path) -> Iterator[Live]:
    with live_gateway(raw_config(base_router, folder / "store.db"), env=ENV) as g:
        yield g


def ask(live: Live, prompt: str, key: str = ENV["MINE_KEY"], route: str = "smart") -> tuple[str, str, str]:
    """(the answer's id, the gateway's request id, the model that answered)."""
    client = openai.OpenAI(base_url=live.base_url, api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model=route,
                                                           messages=[{"role": "user", "content": prompt}])
    done = raw.parse()
    return done.id, raw.headers["x-polyroute-request-id"], raw.headers["x-polyroute-model"]


def feedback(live: Live, body: Any, key: str | None = ENV["MINE_KEY"]) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, bytes):
        return httpx.post(f"{live.base_url}/feedback", content=body, headers=headers)
    return httpx.post(f"{live.base_url}/feedback", json=body, headers=headers)


def error_of(r: httpx.Response) -> dict[str, Any]:
    doc = r.json()
    assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}, doc
    err: dict[str, Any] = doc["error"]
    return err


def test_feedback_by_the_answers_id_or_the_request_id(live: Live, folder: Path) -> None:
    answer_id, request_id, served = ask(live, EASY.format(i=1))
    assert served == "small" and answer_id and answer_id != request_id
    r = feedback(live, {"id": answer_id, "score": 0.25})
    assert r.status_code == 200, r.text
    assert r.json() == {"object": "feedback", "id": answer_id, "request_id": request_id, "score": 0.25}
    r = feedback(live, {"id": request_id, "score": 1})  # again, by the other id: replaces the score
    assert r.status_code == 200 and r.json()["score"] == 1.0
    assert live.gateway.decisions is not None and live.gateway.decisions.flush()
    db = sqlite3.connect(folder / "store.db")
    row = db.execute("SELECT key, chosen, answered, answered_column, status, prompt_sha256, response_id "
                     "FROM route_decisions WHERE request_id = ?", (request_id,)).fetchone()
    sha = hashlib.sha256(EASY.format(i=1).encode()).hexdigest()
    assert row == ("mine", "small", "small", "small", 200, sha, answer_id)
    assert db.execute("SELECT score FROM route_feedback WHERE request_id = ?", (request_id,)).fetchone() == (1.0,)
    db.close()
    # The prompt's text is kept nowhere, only its hash and features.
    files = [p for p in folder.iterdir() if p.name.startswith("store.db")]
    assert not any(b"What colour is the sky" in p.read_bytes() for p in files)


def test_a_streamed_answer_takes_feedback_by_its_id(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key=ENV["MINE_KEY"], max_retries=0)
    chunks = list(client.chat.completions.create(model="smart", stream=True,
                                                 messages=[{"role": "user", "content": HARD.format(i=2)}]))
    assert chunks and chunks[0].id
    r = feedback(live, {"id": chunks[0].id, "score": 0.9})
    assert r.status_code == 200, r.text


def test_only_the_key_that_asked_may_give_feedback(live: Live) -> None:
    answer_id, _, _ = ask(live, EASY.format(i=3))
    r = feedback(live, {"id": answer_id, "score": 0.5}, key=ENV["THEIRS_KEY"])
    assert r.status_code == 404
    err = error_of(r)
    assert err["code"] == "not_found" and err["param"] == "id"
    # Answered exactly as an id that never existed: nothing tells another key the request is there.
    unknown = error_of(feedback(live, {"id": "chatcmpl-nothing", "score": 0.5}, key=ENV["THEIRS_KEY"]))
    assert unknown["message"].replace("chatcmpl-nothing", answer_id) == err["message"]
    assert feedback(live, {"id": answer_id, "score": 0.5}, key=None).status_code == 401


def test_a_request_of_another_strategy_takes_no_feedback(live: Live) -> None:
    answer_id, request_id, _ = ask(live, EASY.format(i=4), route="plain")
    for some_id in (answer_id, request_id):
        assert feedback(live, {"id": some_id, "score": 0.5}).status_code == 404


@pytest.mark.parametrize(("body", "param", "words"), [
    (b"{not json", None, "not valid JSON"),
    (b"[1, 2]", None, "must be a JSON object"),
    ({"score": 0.5}, "id", "Missing required parameter: 'id'"),
    ({"id": "x"}, "score", "Missing required parameter: 'score'"),
    ({"id": "x", "score": 1.5}, "score", "Invalid value for 'score'"),
    ({"id": "x", "score": -0.1}, "score", "Invalid value for 'score'"),
    ({"id": "x", "score": True}, "score", "must be a number from 0 to 1"),
    ({"id": "x", "score": "0.5"}, "score", "Invalid value for 'score'"),
    ({"id": "", "score": 0.5}, "id", "Invalid value for 'id'"),
    ({"id": 7, "score": 0.5}, "id", "Invalid value for 'id'"),
    ({"id": "x", "score": 0.5, "comment": "meh"}, "comment", "Unknown parameter: 'comment'"),
])  # fmt: skip
def test_bad_feedback_is_a_400_in_the_openai_shape(live: Live, body: Any, param: str | None, words: str) -> None:
    r = feedback(live, body)
    assert r.status_code == 400
    err = error_of(r)
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert words in err["message"]


def test_feedback_round_trip_retrains_the_router(live: Live, base_router: Path, folder: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # The application finds the small model's answers to these easy prompts poor.
    for i in range(100, 160):
        answer_id, _, served = ask(live, EASY.format(i=i))
        assert served == "small"
        assert feedback(live, {"id": answer_id, "score": 0.0}).status_code == 200
    assert live.gateway.decisions is not None and live.gateway.decisions.flush()
    out = folder / "retrained.json"
    capsys.readouterr()
    assert main(["router", "train", "--from-feedback", "--store", str(folder / "store.db"),
                 "--router", str(base_router), "--route", "smart", "--out", str(out)]) == 0  # fmt: skip
    assert "feedback scores" in capsys.readouterr().out
    assert out.read_bytes() != base_router.read_bytes()
    embedder = Embedder()
    before, after = Scorer.load(base_router, embedder), Scorer.load(out, embedder)
    easy = EASY.format(i=999)
    assert after.predict(easy)["small"] < before.predict(easy)["small"] - 0.1
    # The big model had a single score (a streamed answer above): one row barely moves a head.
    assert after.predict(easy)["big"] == pytest.approx(before.predict(easy)["big"], abs=0.02)
