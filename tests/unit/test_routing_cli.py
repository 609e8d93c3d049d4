"""``polyroute route explain``: the decision for a prompt, printed, nothing sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyroute.cli import main

CONFIG = """
[backends.box]
type = "fake"
[backends.cloud]
type = "openai"                      # never called: explain sends nothing
base_url = "https://api.example.com/v1"

[models.gpt]
backend = "cloud"
family = "gpt-4-1-mini"
[models.deepseek]
backend = "cloud"
family = "deepseek-v4-flash"
[models.smol]
backend = "box"
family = "smollm2-135m"

[policies.onprem]
locality = "local"
[policies.us]
origins_allow = ["US"]

[keys.acme]
secret = "env:ACME_KEY_NOT_SET_HERE"
policy = "us"
routes = ["main"]

[routes.main]
models = ["gpt", "deepseek", "smol"]
strategy = "cheapest"
"""


@pytest.fixture
def conf(tmp_path: Path) -> str:
    p = tmp_path / "gw.toml"
    p.write_text(CONFIG)
    return str(p)


def explain(conf: str, *args: str) -> list[str]:
    return ["route", "explain", "--config", conf, "--route", "main", *args]


def test_explain_prints_order_scores_costs_and_exclusions(conf: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(explain(conf, "--key", "acme", "--max-tokens", "100", "hello there")) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "route main: strategy cheapest, policy us"
    assert "order (score = est. cost USD):" in out
    assert "  1. smol [box]  score 0  est. cost $0.000000" in out
    assert "  2. gpt [cloud]  score 0.0001628  est. cost $0.000163" in out  # 7 tokens at 0.4 + 100 at 1.6 per M
    # 7 tokens at 0.30 + 100 at 1.20 per M (DeepSeek V4 Flash, peak list price)
    assert ("  - deepseek [cloud] (est. cost $0.000122): origin DeepSeek, CN is not in origins_allow [US] "
            "of policy 'us'") in out


def test_explain_as_json_with_a_narrowing_policy_that_leaves_a_fallback_only(
    conf: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A model without tools may still answer a request that lets it leave them uncalled.
    assert main(explain(conf, "--policy", "onprem", "--tools", "--json", "call a tool")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["policy"] == "onprem"
    assert doc["request"]["needs"] == ["tools"]
    assert [(o["model"], o["fallback_only"]) for o in doc["order"]] == [
        ("smol", "lacks tools (the request sends tools)")
    ]
    assert {r["model"]: r["reason"] for r in doc["excluded"]} == {
        "gpt": "backend 'cloud' is remote; policy 'onprem' allows local backends only",
        "deepseek": "backend 'cloud' is remote; policy 'onprem' allows local backends only",
    }


def test_explain_text_says_the_request_would_be_refused(conf: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(explain(conf, "--policy", "onprem", "--image", "look")) == 1
    out = capsys.readouterr().out
    assert "order: no candidate qualifies; the request would be refused (422)" in out
    assert "refusal: No candidate of 'main' satisfies policy 'onprem' for this request." in out
    assert "smol: lacks vision (the request contains images)" in out


def test_explain_reads_the_prompt_from_stdin(conf: str, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("x" * 4000))
    assert main(explain(conf, "--json", "-")) == 0
    assert json.loads(capsys.readouterr().out)["request"]["prompt_tokens_est"] == 1004


def test_explain_with_an_unknown_key_name_or_a_forbidden_route(
    conf: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(explain(conf, "--key", "nobody", "hi")) == 2
    assert "no key named 'nobody' (known: acme)" in capsys.readouterr().err
    assert main(["route", "explain", "--config", conf, "--route", "gpt", "--key", "acme", "hi"]) == 2
    assert "This key may not use 'gpt'." in capsys.readouterr().err
    assert main(explain(conf, "--policy", "onprm", "hi")) == 2
    err = capsys.readouterr().err
    assert "--policy: 'onprm' is not a policy of" in err and "(known: " in err and "x-polyroute-policy" not in err


def test_route_explain_is_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["route", "explain", "--help"])
    out = capsys.readouterr().out
    for flag in ("--route", "--key", "--config", "--policy", "--max-tokens", "--tools", "--json-mode", "--json"):
        assert flag in out
