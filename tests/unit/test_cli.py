"""The CLI as a user runs it: config check, serve --print-config, chat in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyroute.cli import main

GOOD = """
[backends.f]
type = "fake"
[backends.remote]
type = "openai"
base_url = "https://api.example.com/v1"
api_key = "env:POLYROUTE_TEST_KEY"
[models.echo]
backend = "f"
[models.down]
backend = "f"
upstream = "error-500"
[models.hosted]
backend = "remote"
family = "deepseek-v4-flash"
[routes.main]
models = ["down", "echo"]
"""


@pytest.fixture
def good(tmp_path: Path) -> Path:
    p = tmp_path / "gw.toml"
    p.write_text(GOOD)
    return p


def test_config_check_ok_and_warns_about_unset_key(good: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYROUTE_TEST_KEY", raising=False)
    assert main(["config", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "ok: 2 backends, 3 models, 1 routes" in out
    assert "POLYROUTE_TEST_KEY" in out and "not set" in out


def test_config_check_warns_about_an_unset_admin_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, the admin API and the console are off: said before serving, not found out by a 404."""
    monkeypatch.delenv("POLYROUTE_TEST_ADMIN", raising=False)
    p = tmp_path / "gw.toml"
    p.write_text(GOOD + '[admin]\nsecret = "env:POLYROUTE_TEST_ADMIN"\n')
    assert main(["config", "check", str(p)]) == 0
    out = capsys.readouterr().out
    assert "warning: admin.secret (env:POLYROUTE_TEST_ADMIN): POLYROUTE_TEST_ADMIN is not set" in out


def test_config_check_refuses_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(GOOD.replace('family = "deepseek-v4-flash"', 'family = "deepseek-v9"'))
    assert main(["config", "check", str(p)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml: models.hosted.family: unknown catalog family 'deepseek-v9'" in err


def test_print_config_redacts_secrets(good: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYROUTE_TEST_KEY", "sk-very-secret-value")
    assert main(["serve", "--config", str(good), "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "sk-very-secret-value" not in out
    assert '"api_key": "env:POLYROUTE_TEST_KEY (set)"' in out


def test_chat_in_process_streams_the_answer(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--config", str(good), "--model", "main", "hello from the cli"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "You said: hello from the cli"
    assert "[echo via f," in captured.err


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("serve", "chat", "models", "config"):
        assert cmd in out


def test_missing_key_says_what_to_do(good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from polyroute.catalog import load_catalog
    from polyroute.errors import AllAttemptsFailed
    from polyroute.gateway import Gateway, RequestContext
    from polyroute.settings import effective_config
    from polyroute.types import ChatRequest

    monkeypatch.delenv("POLYROUTE_TEST_KEY", raising=False)
    gateway = Gateway.from_config(effective_config(str(good)), load_catalog())
    assert not gateway.fleet.adapters["remote"].ready()
    req = ChatRequest.from_json({"model": "hosted", "messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(AllAttemptsFailed) as info:
        asyncio.run(gateway.complete(req, RequestContext()))
    assert "POLYROUTE_TEST_KEY is not set; export POLYROUTE_TEST_KEY=... and restart" in info.value.message


def test_embedded_default_adds_keyed_providers_and_ends_on_local() -> None:
    from polyroute.catalog import load_catalog
    from polyroute.settings import default_raw, effective_config

    env = {"DEEPSEEK_API_KEY": "sk-a", "OPENAI_API_KEY": "sk-b", "MOONSHOT_API_KEY": "sk-c",
           "ANTHROPIC_API_KEY": "sk-d", "DASHSCOPE_API_KEY": "sk-e"}
    raw = default_raw(load_catalog(), env)
    route = raw["routes"]["default"]
    assert route["models"][-1] == "smollm2-135m"
    assert route["max_attempts"] == len(route["models"]) > 5
    assert raw["backends"]["deepseek"]["api_key"] == "env:DEEPSEEK_API_KEY"
    bare = effective_config(None, env={})
    assert list(bare.models) == ["smollm2-135m"] and bare.routes["default"].models == ["smollm2-135m"]


def test_serve_refuses_an_open_gateway_beyond_loopback(good: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["serve", "--config", str(good), "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "refusing to serve an open gateway beyond loopback" in caplog.text


def test_chat_against_a_running_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.live import live_gateway

    raw = {"backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}}}
    with live_gateway(raw) as g:
        assert main(["chat", "--url", g.base_url, "--model", "echo", "over the wire"]) == 0
        out = capsys.readouterr()
        assert out.out == "You said: over the wire\n"
        assert "[echo via f]" in out.err
        assert main(["chat", "--url", g.base_url, "--model", "nope", "x"]) == 1
        assert "HTTP 404" in capsys.readouterr().err


def test_chat_against_nothing_listening_says_so_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.live import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    assert main(["chat", "--url", url, "Hello"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach {url}/chat/completions" in err and "Traceback" not in err


def test_serve_refuses_workers_and_ports_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, words in ((["--workers", "0"], "0 is not between 1 and 256"),
                        (["--port", "99999"], "99999 is not between 0 and 65535")):
        with pytest.raises(SystemExit) as done:
            main(["serve", *argv])
        assert done.value.code == 2 and words in capsys.readouterr().err


def test_config_check_warns_about_a_config_with_no_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "empty.toml"
    p.write_text("[gateway]\nlisten = \"127.0.0.1:8080\"\n")
    assert main(["config", "check", str(p)]) == 0
    assert "warning: no [models.*]: a gateway on this config answers every request with 404" in capsys.readouterr().out


@pytest.mark.parametrize(("listen", "warned"), [("0.0.0.0:8080", True), ("127.0.0.1:8080", False)])
def test_config_check_warns_about_an_open_gateway_serve_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str, warned: bool
) -> None:
    p = tmp_path / "open.toml"
    p.write_text(f'[gateway]\nlisten = "{listen}"\n[backends.f]\ntype = "fake"\n[models.echo]\nbackend = "f"\n')
    assert main(["config", "check", str(p)]) == 0
    assert ("serve refuses an open gateway there" in capsys.readouterr().out) is warned
