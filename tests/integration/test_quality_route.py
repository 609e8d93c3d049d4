"""``strategy = "quality"`` in a real gateway on localhost: the prompt decides the model, policy still rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from polyroute import config as cfg
from polyroute.errors import ConfigError
from polyroute.quality.data import Example
from polyroute.quality.evaluate import train
from polyroute.quality.features import Embedder
from tests.support.live import Live, live_gateway

EASY = "What colour is the sky on a clear day? ({i})\nA. Blue\nB. Green\nC. Red\nD. Black\nAnswer:"
HARD = (
    "[{i}] Let f(x) = x^3 - 6x^2 + 11x - 6 and g(x) = 2x + 1. Compute the sum of all real x with f(g(x)) = 0, "
    "then give the remainder when 17^{{42}} is divided by 13.\nA. 3\nB. 7\nC. 11\nD. 12\nAnswer:"
)
ENV = {"ONPREM_KEY": "sk-onprem-42a1", "ANY_KEY": "sk-any-93b7"}


@pytest.fixture(scope="module")
def router_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The small model answers the easy questions only; the big one answers both.
    examples = [Example(EASY.format(i=i), "easy", {"small-col": True, "big": True}) for i in range(40)]
    examples += [Example(HARD.format(i=i), "hard", {"small-col": False, "big": True}) for i in range(20)]
    path = tmp_path_factory.mktemp("router") / "router.json"
    path.write_bytes(train(examples, ["small-col", "big"], Embedder()).to_json())
    return path


def raw_config(router: Path) -> dict[str, Any]:
    return {
        # Quality routes record their decisions in the store's file: the test's own.
        "store": {"url": f"sqlite:///{router.parent / 'store.db'}"},
        "backends": {"box": {"type": "fake"}, "cloud": {"type": "fake", "locality": "remote"}},
        "models": {
            "small": {"backend": "box", "input_per_mtok": 0.1, "output_per_mtok": 0.2},
            "big": {"backend": "cloud", "input_per_mtok": 5.0, "output_per_mtok": 15.0},
        },
        "policies": {"onprem": {"locality": "local"}},
        "keys": {"onprem": {"secret": "env:ONPREM_KEY", "policy": "onprem"}, "any": {"secret": "env:ANY_KEY"}},
        "routes": {
            "smart": {"models": ["big", "small"], "strategy": "quality", "router": str(router),
                      "quality_target": 0.6, "router_columns": {"small": "small-col"}},
            "bounded": {"models": ["big", "small"], "strategy": "quality", "router": str(router),
                        "quality_target": 0.6, "quality_min": 0.5, "quality_max": 0.9,
                        "router_columns": {"small": "small-col"}},
        },
    }


@pytest.fixture(scope="module")
def live(router_file: Path) -> Iterator[Live]:
    with live_gateway(raw_config(router_file), env=ENV) as g:
        yield g


def ask(
    live: Live, prompt: str, key: str = ENV["ANY_KEY"], route: str = "smart", headers: dict[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    client = openai.OpenAI(base_url=live.base_url, api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=route, messages=[{"role": "user", "content": prompt}],
        extra_headers={"x-polyroute-explain": "1", **(headers or {})})
    assert raw.parse().choices[0].message.content
    return raw.headers["x-polyroute-model"], json.loads(raw.headers["x-polyroute-route-explain"])


def test_an_easy_prompt_goes_to_the_cheap_model(live: Live) -> None:
    served, doc = ask(live, EASY.format(i=1000))
    assert served == "small"
    assert doc["strategy"] == "quality" and "cheapest at or above target 0.6" in doc["score"]
    scores = {row["model"]: row["score"] for row in doc["order"]}
    assert scores["small"] >= 0.6 and 0 < scores["big"] <= 1
    assert [row["model"] for row in doc["order"]] == ["small", "big"]


def test_a_hard_prompt_goes_to_the_strong_model_with_the_cheap_one_as_failover(live: Live) -> None:
    served, doc = ask(live, HARD.format(i=1000))
    assert served == "big"
    scores = {row["model"]: row["score"] for row in doc["order"]}
    assert scores["small"] < 0.6 <= scores["big"]
    assert [row["model"] for row in doc["order"]] == ["big", "small"]


def test_policy_still_wins_over_quality(live: Live) -> None:
    # The on-premises key may not reach the hosted model, however hard the prompt.
    served, doc = ask(live, HARD.format(i=1000), key=ENV["ONPREM_KEY"])
    assert served == "small"
    assert [row["model"] for row in doc["order"]] == ["small"]
    assert [row["model"] for row in doc["excluded"]] == ["big"]
    assert "none reaches target" in doc["score"]


def test_a_client_moves_the_target_within_the_routes_bounds(live: Live) -> None:
    # Target 0: the cheapest model qualifies whatever the prompt.
    served, doc = ask(live, HARD.format(i=1000), headers={"x-polyroute-quality": "0"})
    assert served == "small" and "target 0" in doc["score"]
    # The bounded route keeps the target at its minimum, 0.5: the hard prompt stays on the strong model.
    served, doc = ask(live, HARD.format(i=1000), route="bounded", headers={"x-polyroute-quality": "0"})
    assert served == "big" and "target 0.5" in doc["score"]


@pytest.mark.parametrize("value", ["high", "1.5", "-0.1", "nan"])
def test_a_bad_quality_header_is_a_400_in_the_openai_shape(live: Live, value: str) -> None:
    r = httpx.post(f"{live.base_url}/chat/completions", json={"model": "smart", "messages": [{"role": "user",
                   "content": "hi"}]}, headers={"authorization": f"Bearer {ENV['ANY_KEY']}",
                   "x-polyroute-quality": value})  # fmt: skip
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert "x-polyroute-quality must be a number from 0 to 1" in err["message"]


def test_the_target_must_lie_within_the_bounds() -> None:
    raw = raw_config(Path("unused.json"))
    raw["routes"]["bounded"]["quality_target"] = 0.95
    with pytest.raises(ConfigError) as err:
        cfg.parse(raw, env=ENV)
    assert "quality_target must lie within quality_min..quality_max" in str(err.value)


def test_a_quality_route_needs_a_router_file() -> None:
    raw = raw_config(Path("unused.json"))
    del raw["routes"]["smart"]["router"]
    with pytest.raises(ConfigError) as err:
        cfg.parse(raw, env=ENV)
    assert 'strategy "quality" needs router' in str(err.value)


def test_router_columns_must_name_the_routes_models() -> None:
    raw = raw_config(Path("unused.json"))
    raw["routes"]["smart"]["router_columns"] = {"tiny": "x"}
    with pytest.raises(ConfigError) as err:
        cfg.parse(raw, env=ENV)
    assert "router_columns names models not in the route: tiny" in str(err.value)


def test_an_unreadable_router_file_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "router.json"
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(ConfigError) as err, live_gateway(raw_config(bad), env=ENV):
        pass
    assert "is not a polyroute quality router" in str(err.value)


def test_route_explain_shows_each_candidates_prediction(
    router_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from polyroute.cli import main

    conf = tmp_path / "polyroute.toml"
    conf.write_text(f"""
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
router = "{router_file}"
router_columns = {{ small = "small-col" }}
""")
    assert main(["route", "explain", "--config", str(conf), "--route", "smart", "--json", HARD.format(i=7)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["strategy"] == "quality"
    assert [row["model"] for row in doc["order"]] == ["big", "small"]  # the default target is 0.8
    assert all(0 <= row["score"] <= 1 for row in doc["order"])


def test_config_check_reads_the_router_as_serve_would(
    router_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A router file that cannot be read stops config check on the route's key; a model the router has no head for
    (a mistyped router_columns) is a warning, since it would never reach the target, without a word."""
    from polyroute.cli import main

    def toml(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {json.dumps(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    def check(route: dict[str, Any]) -> tuple[int, str, str]:
        conf = tmp_path / "gw.toml"
        conf.write_text('[backends.box]\ntype = "fake"\n[models.small]\nbackend = "box"\n'
                        '[models.big]\nbackend = "box"\n[routes.smart]\n'
                        + "".join(f"{k} = {toml(v)}\n" for k, v in route.items()))
        rc = main(["config", "check", str(conf)])
        out, err = capsys.readouterr()
        return rc, out, err

    base = {"models": ["big", "small"], "strategy": "quality", "router": str(router_file)}
    rc, out, err = check({**base, "router": str(tmp_path / "routr.json")})
    assert rc == 2 and "routes.smart.router: Cannot read the router model" in err and "routr.json" in err
    rc, out, _ = check(base)
    assert rc == 0 and ("warning: routes.smart.router_columns: router.json has no head for small (column 'small') "
                        "(its columns: small-col, big)") in out
    rc, out, _ = check(base | {"router_columns": {"small": "small-col"}})
    assert rc == 0 and "warning" not in out
