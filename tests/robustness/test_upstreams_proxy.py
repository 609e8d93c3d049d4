"""The upstream client on a corporate network: proxies from the environment or per backend, private CAs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from polyroute import config as cfg
from polyroute.adapters.http import pool_for
from polyroute.adapters.proxy import Proxy, bypassed, env_proxies, proxy_for
from polyroute.adapters.transport import ConnectFailed, Pool
from polyroute.errors import ConfigError
from tests.robustness.hostile_upstream import ANSWER, ConnectProxy, HostileUpstream
from tests.support.live import live_gateway
from tests.support.wait import wait_until

ASK = b'{"model": "ok", "stream": false}'


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def tls_up(ca: trustme.CA) -> Iterator[HostileUpstream]:
    """A TLS upstream whose certificate (for 'localhost') only the private CA vouches for."""
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    with HostileUpstream(tls=ctx, host="localhost") as up:
        yield up


@pytest.fixture(scope="module")
def plain_up() -> Iterator[HostileUpstream]:
    with HostileUpstream() as up:
        yield up


@pytest.mark.parametrize(("url", "env", "expected"), [
    ("https://api.example.com", {"HTTPS_PROXY": "http://p:3128"}, "p:3128"),
    ("https://api.example.com", {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"}, "low:1"),
    ("http://api.example.com", {"HTTPS_PROXY": "http://p:3128"}, None),
    ("http://api.example.com", {"HTTP_PROXY": "p:3128"}, "p:3128"),
    ("https://api.example.com", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "example.com"}, None),
    ("https://api.example.com", {"HTTPS_PROXY": "http://p:3128", "no_proxy": ".example.com"}, None),
    ("https://notexample.com", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "example.com"}, "p:3128"),
    ("https://api.example.com", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "*"}, None),
    ("https://api.example.com", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "example.com:8443"}, "p:3128"),
    ("https://api.example.com:8443", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "example.com:8443"}, None),
    ("http://10.1.2.3:8000", {"HTTP_PROXY": "http://p:3128", "NO_PROXY": "localhost, 10.0.0.0/8"}, None),
    ("http://11.1.2.3:8000", {"HTTP_PROXY": "http://p:3128", "NO_PROXY": "10.0.0.0/8"}, "p:3128"),
    ("http://api.example.com", {"HTTP_PROXY": "http://p:3128", "REQUEST_METHOD": "GET"}, None),
])
def test_the_environment_chooses_the_proxy_as_curl_and_requests_do(
    url: str, env: dict[str, str], expected: str | None
) -> None:
    proxy = proxy_for(url, None, env)
    assert (proxy.where if proxy else None) == expected


def test_a_backend_override_wins_and_none_goes_direct() -> None:
    env = {"HTTPS_PROXY": "http://corp:3128"}
    assert proxy_for("https://api.example.com", "none", env) is None
    own = proxy_for("https://api.example.com", "http://own:8080", env, credentials="u:p")
    assert own == Proxy("own", 8080, "Basic dTpw")
    assert bypassed("::1", 80, "[::1]:80") and not bypassed("::1", 81, "[::1]:80")
    assert env_proxies({"NO_PROXY": "a", "no_proxy": "b"}) == {"no": "b"}


@pytest.mark.anyio
async def test_plain_http_through_a_proxy_uses_absolute_form_and_its_credentials(plain_up: HostileUpstream) -> None:
    with ConnectProxy(credentials="alice:s3cret-pass") as proxy:
        env = {"HTTP_PROXY": f"http://alice:s3cret-pass@127.0.0.1:{proxy.port}"}
        pool = Pool(plain_up.base_url, connect_timeout=5, proxy=proxy_for(plain_up.base_url, None, env))
        resp = await pool.request("POST", f"{plain_up.base_url}/chat/completions", {}, ASK, 10)
        assert resp.status == 200 and ANSWER.encode() in await resp.read()
        await pool.aclose()
    assert proxy.request_lines == [f"POST {plain_up.base_url}/chat/completions HTTP/1.1"]
    assert proxy.authorizations == [proxy.expected]


@pytest.mark.anyio
async def test_https_through_a_connect_proxy_with_a_private_ca(
    tls_up: HostileUpstream, ca_file: Path
) -> None:
    with ConnectProxy() as proxy:
        pool = Pool(tls_up.base_url, connect_timeout=5, proxy=Proxy("127.0.0.1", proxy.port, None),
                    ca_bundle=str(ca_file))
        for _ in range(2):  # the second request reuses the tunnel
            resp = await pool.request("POST", f"{tls_up.base_url}/chat/completions", {}, ASK, 10)
            assert resp.status == 200 and ANSWER.encode() in await resp.read()
        await pool.aclose()
    assert proxy.request_lines == [f"CONNECT localhost:{tls_up.port} HTTP/1.1"]
    assert tls_up.hits[-1].head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost:")


@pytest.mark.anyio
async def test_without_the_private_ca_the_certificate_is_refused(tls_up: HostileUpstream) -> None:
    with ConnectProxy() as proxy:
        pool = Pool(tls_up.base_url, connect_timeout=5, proxy=Proxy("127.0.0.1", proxy.port, None))
        with pytest.raises(ConnectFailed, match=r"via proxy 127\.0\.0\.1:\d+ \(SSLCertVerificationError\)"):
            await pool.request("POST", f"{tls_up.base_url}/chat/completions", {}, ASK, 10)


@pytest.mark.anyio
async def test_a_proxy_that_wants_credentials_is_named_without_ours(
    tls_up: HostileUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with ConnectProxy(credentials="alice:right") as proxy:
        env = {"HTTPS_PROXY": f"http://alice:wrong-secret-pw@127.0.0.1:{proxy.port}"}
        pool = Pool(tls_up.base_url, connect_timeout=5, proxy=proxy_for(tls_up.base_url, None, env))
        with pytest.raises(ConnectFailed) as caught:
            await pool.request("POST", f"{tls_up.base_url}/chat/completions", {}, ASK, 10)
    assert f"the proxy 127.0.0.1:{proxy.port} wants credentials (407)" in str(caught.value)
    assert "wrong-secret-pw" not in str(caught.value) and "wrong-secret-pw" not in caplog.text


def _config(base_url: str, **backend: object) -> dict[str, object]:
    return {
        "backends": {"corp": {"type": "openai", "base_url": base_url, **backend}},
        "models": {"ok": {"backend": "corp"}},
    }


def test_the_gateway_reaches_a_private_ca_upstream_through_the_backends_proxy(
    tls_up: HostileUpstream, ca_file: Path
) -> None:
    with ConnectProxy(credentials="bob:tunnel-pw") as proxy:
        raw = _config(tls_up.base_url, proxy=proxy.url, proxy_auth="env:CORP_PROXY_AUTH", ca_bundle=str(ca_file))
        with live_gateway(raw, env={"CORP_PROXY_AUTH": "bob:tunnel-pw"}) as live:
            r = httpx.post(f"{live.base_url}/chat/completions", timeout=30,
                           json={"model": "ok", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == ANSWER
    assert proxy.request_lines == [f"CONNECT localhost:{tls_up.port} HTTP/1.1"]


def test_config_check_refuses_a_missing_ca_bundle_and_credentials_in_a_proxy_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        cfg.parse(_config("https://api.example.com", ca_bundle=str(tmp_path / "nope.pem")), source="<t>", env={})
    assert "is not a readable file" in str(caught.value)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        cfg.parse(_config("https://api.example.com", ca_bundle=str(tmp_path / "junk.pem")), source="<t>", env={})
    with pytest.raises(ConfigError) as creds:
        cfg.parse(_config("https://api.example.com", proxy="http://u:hunter22@p:3128"), source="<t>", env={})
    assert "proxy_auth" in str(creds.value) and "hunter22" not in str(creds.value)
    with pytest.raises(ConfigError, match="proxy must be an http:// URL"):
        cfg.parse(_config("https://api.example.com", proxy="socks5://p:1080"), source="<t>", env={})


def test_a_proxy_variable_that_is_not_http_is_refused_without_repeating_it() -> None:
    conf = cfg.parse(_config("https://api.example.com"), source="<t>", env={})
    with pytest.raises(ConfigError) as caught:
        pool_for(conf.backends["corp"], {"HTTPS_PROXY": "https://u:topsecret@p:3128"})
    assert "topsecret" not in str(caught.value) and "HTTPS_PROXY" in str(caught.value)


def test_polyroute_config_check_names_the_missing_ca_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyroute.cli import main

    conf = tmp_path / "gw.toml"
    conf.write_text(
        '[backends.corp]\ntype = "openai"\nbase_url = "https://llm.corp.example/v1"\n'
        f'ca_bundle = "{tmp_path / "missing.pem"}"\nproxy = "http://proxy.corp.example:3128"\n'
        'proxy_auth = "env:CORP_PROXY_AUTH"\nmax_connections = 8\n[models.m]\nbackend = "corp"\n'
    )
    assert main(["config", "check", str(conf)]) == 2
    assert "backends.corp.ca_bundle" in capsys.readouterr().err
    conf.write_text(conf.read_text().replace(str(tmp_path / "missing.pem"), str(_pem(tmp_path))))
    monkeypatch.setenv("CORP_PROXY_AUTH", "dave:never-printed")
    assert main(["config", "check", str(conf)]) == 0
    assert main(["serve", "--config", str(conf), "--print-config"]) == 0
    assert "never-printed" not in capsys.readouterr().out


def _pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def test_a_backend_at_its_connection_limit_answers_a_clear_503(plain_up: HostileUpstream) -> None:
    raw = {
        "backends": {"small": {"type": "openai", "base_url": plain_up.base_url, "max_connections": 1,
                               "connection_queue": 0}},
        "models": {"hold": {"backend": "small"}},
    }
    ask = {"model": "hold", "messages": [{"role": "user", "content": "hi"}]}
    plain_up.release.clear()
    with live_gateway(raw) as live, httpx.Client(base_url=live.base_url, timeout=30) as client:
        first: list[httpx.Response] = []
        holder = threading.Thread(target=lambda: first.append(client.post("/chat/completions", json=ask)))
        holder.start()
        wait_until(lambda: any(h.model == "hold" for h in plain_up.hits), what="the held request upstream")
        refused = client.post("/chat/completions", json=ask)
        plain_up.release.set()
        holder.join(30)
    assert refused.status_code == 503
    message = refused.json()["error"]["message"]
    assert "connection limit reached: 1 of 1 connections busy and 0 requests waiting" in message
    assert first[0].status_code == 200
