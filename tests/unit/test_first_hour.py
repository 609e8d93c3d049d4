"""What a new user meets first: config check, serve's warnings, route explain, errors that name their cause."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from polyroute.adapters.transport import ConnectFailed, Pool
from polyroute.cli import main
from tests.support.live import free_port

LOCAL = """
[backends.local]
type = "llamacpp"
model_path = "{path}"
n_ctx = 1024
[models.smol]
backend = "local"
family = "smollm2-135m"
"""

KEYS = """
[backends.f]
type = "fake"
[models.echo]
backend = "f"
[keys.acme]
secret = "env:POLYROUTE_TEST_CLIENT_KEY"
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gw.toml"
    path.write_text(text)
    return str(path)


def test_config_check_accepts_the_bundled_model_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", write(tmp_path, LOCAL.format(path="embedded"))]) == 0
    assert "ok: 1 backends, 1 models" in capsys.readouterr().out


def test_config_check_refuses_a_missing_model_file_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write(tmp_path, LOCAL.format(path=tmp_path / "absent.gguf"))
    assert main(["config", "check", conf]) == 2
    err = capsys.readouterr().err
    assert f"{conf}: backends.local.model_path: model file not found: {tmp_path / 'absent.gguf'}" in err
    assert "'embedded' for the bundled one" in err


def test_config_check_warns_about_an_unset_client_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POLYROUTE_TEST_CLIENT_KEY", raising=False)
    assert main(["config", "check", write(tmp_path, KEYS)]) == 0
    out = capsys.readouterr().out
    assert ("warning: keys.acme.secret (env:POLYROUTE_TEST_CLIENT_KEY): POLYROUTE_TEST_CLIENT_KEY is not set "
            "in this environment; export it before serving") in out


def test_serve_warns_about_an_unset_client_key_before_it_binds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POLYROUTE_TEST_CLIENT_KEY", raising=False)
    conf = write(tmp_path, KEYS)
    monkeypatch.setenv("POLYROUTE_CONFIG", conf)  # serve may set it for its workers: undone after the test
    with socket.socket() as taken:  # the port is busy: serve warns, then stops before serving
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--config", conf, "--port", str(port)]) == 2
    assert "keys.acme.secret: POLYROUTE_TEST_CLIENT_KEY is not set, so this key cannot be used" in caplog.text
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text


def test_route_explain_uses_the_context_window_the_local_model_is_loaded_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write(tmp_path, LOCAL.format(path="embedded"))
    assert main(["route", "explain", "--config", conf, "--route", "smol", "--json", "hello"]) == 0
    assert json.loads(capsys.readouterr().out)["order"][0]["context_window"] == 1024
    assert main(["route", "explain", "--config", conf, "--route", "smol", "hello"]) == 0
    assert "context 1024" in capsys.readouterr().out
    # ~1,500 tokens fit the catalog's 8192 for SmolLM2, not the 1024 served.
    assert main(["route", "explain", "--config", conf, "--route", "smol", "--json", "word " * 1200]) == 1
    excluded = json.loads(capsys.readouterr().out)["excluded"]
    assert excluded[0]["reason"].startswith("context window 1024 is too small for ~")


def test_a_local_models_window_is_at_most_the_n_ctx_it_is_loaded_with() -> None:
    from polyroute import config as cfg
    from polyroute.catalog import load_catalog
    from polyroute.fleet import Fleet

    raw: dict[str, Any] = {
        "backends": {"local": {"type": "llamacpp", "model_path": "embedded", "n_ctx": 1024}},
        "models": {"catalog": {"backend": "local", "family": "smollm2-135m"},
                   "wider": {"backend": "local", "context_window": 32768},
                   "narrower": {"backend": "local", "context_window": 512}},
    }
    fleet = Fleet.build(cfg.parse(raw, env={}), load_catalog())
    assert {n: m.context_window for n, m in fleet.models.items()} == {"catalog": 1024, "wider": 1024, "narrower": 512}


def test_a_host_that_does_not_resolve_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_such_host(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def attempt() -> None:
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_host)
        await Pool("https://api.example.com/v1", connect_timeout=2).request("POST", "/v1/x", {}, b"", 2)

    with pytest.raises(ConnectFailed) as info:
        asyncio.run(attempt())
    assert str(info.value) == "cannot resolve host api.example.com"


def test_a_refused_connection_is_named_with_its_address() -> None:
    port = free_port()  # nothing listens there

    async def attempt() -> None:
        await Pool(f"http://127.0.0.1:{port}", connect_timeout=2).request("POST", "/", {}, b"", 2)

    with pytest.raises(ConnectFailed) as info:
        asyncio.run(attempt())
    assert str(info.value) == f"connection refused by 127.0.0.1:{port}"


def test_an_open_breaker_says_why_in_health_and_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from polyroute import config as cfg
    from polyroute.catalog import load_catalog
    from polyroute.errors import AllAttemptsFailed
    from polyroute.gateway import Gateway, RequestContext
    from polyroute.types import ChatRequest

    raw = {"backends": {"deepseek": {"type": "openai", "base_url": "https://api.deepseek.com",
                                     "api_key": "env:DEEPSEEK_API_KEY"}},
           "models": {"ds": {"backend": "deepseek", "upstream": "deepseek-chat"}}}
    gateway = Gateway.from_config(cfg.parse(raw, env={}), load_catalog())
    req = ChatRequest.from_json({"model": "ds", "messages": [{"role": "user", "content": "x"}]})

    async def scenario() -> tuple[dict[str, Any], list[str]]:
        health = await gateway.failover.health.report(gateway.fleet)
        messages = []
        for _ in range(2):  # the first attempt opens the breaker; the second is skipped by it
            with pytest.raises(AllAttemptsFailed) as info:
                await gateway.complete(req, RequestContext())
            messages.append(info.value.message)
            # Either way the key is what fails: the SDKs are told not to retry in a few seconds.
            assert info.value.headers() == {"x-should-retry": "false"}
        return health, messages

    health, (first, second) = asyncio.run(scenario())
    backend = health["backends"]["deepseek"]
    assert (backend["ready"], backend["detail"]) == (False, "DEEPSEEK_API_KEY is not set")
    assert "no API key: DEEPSEEK_API_KEY is not set" in first
    assert "skipped: circuit open (auth_error), next probe in " in second
    assert second.endswith("s (backend deepseek out: account-wide: the provider's auth_error applies to every model "
                           "of the backend): no API key: DEEPSEEK_API_KEY is not set; export DEEPSEEK_API_KEY=... "
                           "and restart the gateway")


def test_a_backend_without_its_key_degrades_the_health_of_the_fleet() -> None:
    from polyroute import config as cfg
    from polyroute.catalog import load_catalog
    from polyroute.gateway import Gateway

    raw = {"backends": {"deepseek": {"type": "openai", "base_url": "https://api.deepseek.com",
                                     "api_key": "env:DEEPSEEK_API_KEY"},
                        "here": {"type": "fake"}},
           "models": {"ds": {"backend": "deepseek", "upstream": "deepseek-chat"},
                      "f": {"backend": "here", "upstream": "f"}}}
    gateway = Gateway.from_config(cfg.parse(raw, env={}), load_catalog())
    health = asyncio.run(gateway.failover.health.report(gateway.fleet))
    assert health["status"] == "degraded"
    assert (health["backends"]["here"]["ready"], health["backends"]["deepseek"]["ready"]) == (True, False)


def test_config_check_and_serve_name_a_policy_term_the_catalog_does_not_know(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``origins_deny = ["deepsek"]`` denied nothing, silently: the model meant to be kept out was reachable."""
    conf = write(tmp_path, KEYS.replace("[keys.acme]\nsecret = \"env:POLYROUTE_TEST_CLIENT_KEY\"\n", "")
                 + '[policies.no-cn]\norigins_deny = ["deepsek"]\n')
    said = ("policies.no-cn.origins_deny: 'deepsek' matches no organisation of the catalog (did you mean "
            "'DeepSeek'?): it denies nothing")
    assert main(["config", "check", conf]) == 0
    assert f"warning: {said}" in capsys.readouterr().out
    monkeypatch.setenv("POLYROUTE_CONFIG", conf)
    with socket.socket() as taken:  # the port is busy: serve warns, then stops before serving
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--config", conf, "--port", str(taken.getsockname()[1])]) == 2
    assert said in caplog.text
