"""Config validation: every refusal names the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from polyroute import config as cfg
from polyroute.errors import ConfigError

BASE: dict[str, Any] = {
    "backends": {"up": {"type": "openai", "base_url": "https://api.example.com/v1", "api_key": "env:UP_KEY"}},
    "models": {"m": {"backend": "up"}},
    "routes": {"r": {"models": ["m"]}},
}


def with_(path: str, value: Any) -> dict[str, Any]:
    import copy

    raw = copy.deepcopy(BASE)
    node = raw
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return raw


BAD = [
    (with_("gateway.colour", "blue"), "gateway.colour", "unknown key"),
    (with_("backends.up.type", "grpc"), "backends.up.type",
     "unknown backend type 'grpc' (known: openai, anthropic, ollama, llamacpp, fake)"),
    (with_("backends.up", {"base_url": "https://x"}), "backends.up.type", "required key is missing (known types:"),
    (with_("backends.up.model_path", "/m.gguf"), "backends.up.model_path", "unknown key"),
    (with_("backends.up.base_url", "ftp://x"), "backends.up.base_url", "http(s) URL"),
    (with_("backends.up.api_key", "sk-plaintext"), "backends.up.api_key", "env:VARIABLE"),
    (with_("backends.up.timeout", -1), "backends.up.timeout", "greater than 0"),
    (with_("models.m.backend", "nowhere"), None, "models.m.backend: 'nowhere' is not defined (known: up)"),
    (with_("routes.r.models", ["m", "ghost"]), None, "routes.r.models[1]: 'ghost' is not defined"),
    (with_("routes.r.policy", "strict"), None, "routes.r.policy: 'strict' is not defined"),
    (with_("routes.m", {"models": ["m"]}), None, "routes.m: a model has the same name"),
    (with_("gateway.listen", "8080"), "gateway.listen", "HOST:PORT"),
    (with_("backends.loc", {"type": "llamacpp"}), "backends.loc.model_path", "required key is missing"),
    (with_("backends.loc", {"type": "llamacpp", "model_path": "/no/such.gguf", "n_ctx": 1}), None,
     "2 problems:\n  backends.loc.model_path: model file not found: /no/such.gguf"),
    (with_("backends.loc", {"type": "llamacpp", "model_path": "/no/such.gguf", "n_ctx": 1}), None,
     "\n  backends.loc.n_ctx: Input should be greater than or equal to 128"),
    (with_("backends.loc", {"type": "fake", "base_url": "http://x"}), "backends.loc.base_url", "unknown key"),
    (with_("backends.up.base_url", None), "backends.up.base_url", "Input should be a valid string"),
    (with_("gateway.send_timeout", 0), "gateway.send_timeout", "greater than 0"),
    (with_("gateway.send_timeout", 3601), "gateway.send_timeout", "less than or equal to 3600"),
    (with_("gateway.header_timeout", -1), "gateway.header_timeout", "greater than 0"),
    (with_("gateway.shutdown_grace", -1), "gateway.shutdown_grace", "greater than or equal to 0"),
]


@pytest.mark.parametrize(("raw", "key", "words"), BAD)
def test_bad_config_is_refused_with_file_key_reason(raw: dict[str, Any], key: str | None, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.parse(raw, source="gw.toml", env={})
    text = str(info.value)
    assert text.startswith("gw.toml: ")
    if key:
        assert f": {key}: " in text
    assert words in text


def test_secret_is_resolved_but_never_shown() -> None:
    c = cfg.parse(BASE, env={"UP_KEY": "sk-live-123456"})
    key = c.backends["up"].api_key
    assert key is not None and key.get() == "sk-live-123456"
    assert "sk-live" not in repr(c) and "sk-live" not in str(c.redacted())
    assert c.redacted()["backends"]["up"]["api_key"] == "env:UP_KEY (set)"


def test_locality_is_inferred_from_the_host() -> None:
    def loc(url: str) -> str:
        return cfg.backend_config({"type": "openai", "base_url": url}).effective_locality()

    assert loc("http://127.0.0.1:8000/v1") == "local"
    assert loc("http://10.1.2.3/v1") == "local"
    assert loc("http://localhost:11434") == "local"
    assert loc("https://api.deepseek.com/v1") == "remote"
    assert cfg.backend_config({"type": "openai", "base_url": "http://10.0.0.1", "locality": "remote"}
                              ).effective_locality() == "remote"
    assert cfg.backend_config({"type": "fake"}).effective_locality() == "local"


def test_a_hosted_provider_behind_a_private_address_is_remote_and_billed() -> None:
    """An egress proxy or relay on 10.x in front of Anthropic: the data leaves and Anthropic bills."""
    from polyroute.catalog import load_catalog
    from polyroute.fleet import Fleet

    def backend(**extra: str) -> dict[str, str]:
        return {"type": "anthropic", "base_url": "http://10.0.0.7:9102", **extra}

    assert cfg.backend_config(backend(provider="anthropic")).effective_locality() == "remote"
    assert cfg.backend_config(backend(provider="Anthropic")).effective_locality() == "remote"
    for own in ("vllm", "local", "llama_cpp", "lm-studio", "text-generation-inference", "koboldcpp"):
        assert cfg.backend_config(backend(provider=own)).effective_locality() == "local", own
    assert cfg.backend_config(backend(provider="anthropic", locality="local")).effective_locality() == "local"
    raw = {"backends": {"claude": backend(provider="anthropic")},
           "models": {"sonnet": {"backend": "claude", "upstream": "claude-sonnet-5-5", "family": "claude-sonnet-5-5"}}}
    entry = Fleet.build(cfg.parse(raw, env={}), load_catalog()).models["sonnet"]
    offer = load_catalog().families["claude-sonnet-5-5"].offers[0]
    assert (entry.locality, entry.input_per_mtok, entry.output_per_mtok) == (
        "remote", offer.input_per_mtok, offer.output_per_mtok)


def test_load_reports_toml_syntax_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nlisten = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        cfg.load(bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        cfg.load(tmp_path / "missing.toml")


def test_every_problem_is_reported_at_once() -> None:
    raw = with_("gateway.listn", "x")
    raw["backends"]["up"]["api_key"] = "sk-plaintext"
    raw["backends"]["up"]["timeout"] = 0
    with pytest.raises(ConfigError) as info:
        cfg.parse(raw, source="gw.toml", env={})
    err = info.value
    assert err.problems == [
        "gateway.listn: unknown key (did you mean 'listen'?)",
        "backends.up.timeout: Input should be greater than 0",
        "backends.up.api_key: secrets are written as 'env:VARIABLE', never as values",
    ]
    assert str(err).startswith("gw.toml: 3 problems:\n  gateway.listn: unknown key (did you mean 'listen'?)\n")
    assert "sk-plaintext" not in str(err)


def test_every_dangling_reference_is_reported_at_once() -> None:
    raw = with_("models.m.backend", "nowhere")
    raw["routes"]["r"] = {"models": ["m", "ghost"], "policy": "strict"}
    with pytest.raises(ConfigError) as info:
        cfg.parse(raw, source="gw.toml", env={})
    assert info.value.problems == [
        "models.m.backend: 'nowhere' is not defined (known: up)",
        "routes.r.models[1]: 'ghost' is not defined (known: m)",
        "routes.r.policy: 'strict' is not defined (known: none defined)",
    ]


def test_config_check_prints_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from polyroute.cli import main

    bad = tmp_path / "gw.toml"
    bad.write_text('[gateway]\nlistn = "x"\n[models.m]\nbackend = "zzz"\n[routes.r]\nmodels = ["m"]\n')
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"polyroute: {bad}: gateway.listn: unknown key (did you mean 'listen'?)\n"


def test_the_client_timeouts_are_gateway_keys_with_their_defaults() -> None:
    """They live in polyroute.config_server; the file a user writes sees them under [gateway] as before."""
    gw = cfg.parse(BASE, env={}).gateway
    assert (gw.header_timeout, gw.body_timeout, gw.send_timeout, gw.shutdown_grace) == (10.0, 60.0, 60.0, 10.0)
    raw = with_("gateway", {"header_timeout": 2.5, "body_timeout": 7, "send_timeout": 3, "shutdown_grace": 0})
    config = cfg.parse(raw, env={})
    gw = config.gateway
    assert (gw.header_timeout, gw.body_timeout, gw.send_timeout, gw.shutdown_grace) == (2.5, 7.0, 3.0, 0.0)
    assert config.redacted()["gateway"]["send_timeout"] == 3.0


@pytest.mark.parametrize(("path", "typo", "hint"), [
    ("routes.r.stratgy", "cheapest", "(did you mean 'strategy'?)"),
    ("backends.up.api_kye", "env:X", "(did you mean 'api_key'?)"),
    ("store.retention_day", 30, "(did you mean 'retention_days'?)"),
    ("gateway.send_timout", 5, "(did you mean 'send_timeout'?)"),
])
def test_an_unknown_key_one_typo_away_names_the_key_meant(path: str, typo: object, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.parse(with_(path, typo))
    assert f"{path}: unknown key {hint}" in str(info.value)


@pytest.mark.parametrize("path", [
    "gateway.colour", "backends.up.model_path",
    "routes.r.timout", "gateway.stall_timout",  # keys of another table: not suggested where they are refused
])
def test_an_unknown_key_far_from_any_or_of_another_table_names_none(path: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.parse(with_(path, "x"))
    assert str(info.value).endswith(f"{path}: unknown key")


def test_config_check_warns_of_a_team_no_table_defines_and_of_a_key_already_expired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from polyroute.cli import main

    conf = tmp_path / "gw.toml"
    conf.write_text('[backends.f]\ntype = "fake"\n[models.m]\nbackend = "f"\n[teams.web]\nrpm = 1\n'
                    '[keys.app1]\nsecret = "env:APP1_KEY"\nteam = "webb"\n'
                    '[keys.old]\nsecret = "env:OLD_KEY"\nexpires_at = 2020-01-01T00:00:00Z\n')
    assert main(["config", "check", str(conf)]) == 0
    out = capsys.readouterr().out
    assert ("warning: keys.app1.team: 'webb' is not one of the config's [teams] (web) (did you mean 'web'?): "
            "no team budget or limits apply to this key") in out
    assert "warning: keys.old.expires_at: 2020-01-01T00:00:00+00:00 has passed: the key is refused" in out


def test_config_check_warns_of_a_fake_model_name_that_holds_a_typo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The fake backend is steered by its model's name; a mistyped behaviour would echo without a word, and a
    failover demo would show nothing failing. A plain name (``m1``, ``my-model``) echoes on purpose."""
    from polyroute.cli import main

    conf = tmp_path / "gw.toml"
    conf.write_text('[backends.f]\ntype = "fake"\n'
                    '[models.down]\nbackend = "f"\nupstream = "eror-503"\n'
                    '[models.slow]\nbackend = "f"\nupstream = "slow-fast+echo"\n'
                    '[models.mixed]\nbackend = "f"\nupstream = "slow-200+tool"\n'
                    '[models.m1]\nbackend = "f"\n[models.my-model]\nbackend = "f"\n[models.small]\nbackend = "f"\n'
                    '[models.ok]\nbackend = "f"\nupstream = "slow-200+error-429+text-hi-there"\n')
    assert main(["config", "check", str(conf)]) == 0
    warned = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning: models.")]
    assert warned[0].startswith("warning: models.down.upstream: 'eror-503' in 'eror-503' is no behaviour of the "
                                "fake backend (did you mean 'error'?) (known: echo, text-WORDS, slow-MS")
    assert warned[1].startswith("warning: models.slow.upstream: 'slow-fast' in 'slow-fast+echo'")
    assert warned[2].startswith("warning: models.mixed.upstream: 'tool' in 'slow-200+tool' is no behaviour of the "
                                "fake backend (did you mean 'tools'?)")
    assert len(warned) == 3 and all(line.endswith("it is ignored, and the model echoes") for line in warned)


def test_an_admin_secret_that_is_also_a_client_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client holding that key could make keys and read everyone's usage: config check and serve refuse it,
    whether the two name one variable or two with the same value."""
    from polyroute.auth import Keyring
    from polyroute.cli import main
    from polyroute.settings import effective_config

    monkeypatch.setenv("SHARED", "sk-shared-0123456789abcdef")
    monkeypatch.setenv("SAME_VALUE", "sk-shared-0123456789abcdef")
    for var in ("SHARED", "SAME_VALUE"):
        conf = tmp_path / f"{var}.toml"
        conf.write_text(f'[backends.f]\ntype = "fake"\n[models.m]\nbackend = "f"\n[admin]\nsecret = "env:SHARED"\n'
                        f'[keys.app]\nsecret = "env:{var}"\n')
        assert main(["config", "check", str(conf)]) == 2
        assert "keys.app.secret: is the admin secret too" in capsys.readouterr().err
        with pytest.raises(ConfigError, match="is the admin secret too"):
            Keyring.from_config(effective_config(str(conf)))


def test_config_check_warns_of_route_settings_that_do_something_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from polyroute.cli import main

    conf = tmp_path / "gw.toml"
    conf.write_text('[backends.f]\ntype = "fake"\n[models.a]\nbackend = "f"\n[models.b]\nbackend = "f"\n'
                    '[routes.twice]\nmodels = ["a", "a"]\n'
                    '[routes.slow]\nmodels = ["a", "b"]\nfirst_token_timeout = 50\ndeadline = 30\n'
                    '[routes.even]\nmodels = ["a", "b"]\nstrategy = "weighted"\n')
    assert main(["config", "check", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "warning: routes.twice.models: a listed more than once" in out
    assert "warning: routes.slow.first_token_timeout: 50s is not shorter than the route's deadline (30s)" in out
    assert 'warning: routes.even.weights: strategy "weighted" without weights' in out and "{ MODEL = N" in out
