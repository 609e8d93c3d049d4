"""``polyroute probe`` run as a user runs it, in its own process, against fake upstreams on localhost.

Each backend of the config is one fake provider answering what a real one answers in
that case, from the providers' documented error bodies: an answer, a refused key that
it echoes back, an empty account (OpenAI's wire and Anthropic's), a model id that does
not exist, a region block, an upstream that never answers, and a key variable that is
not set. The bundled SmolLM2 is probed in-process, and skipped when llama.cpp is not
installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from tests.support.upstreams import ANTHROPIC, OPENAI, FakeUpstream, load

POLYROUTE = [sys.executable, "-m", "polyroute"]
# The gateway as `pip install polyroute` leaves it: llama-cpp-python absent.
WITHOUT_LLAMA_CPP = [
    sys.executable, "-c",
    "import sys; sys.modules['llama_cpp'] = None; from polyroute.cli import main; sys.exit(main(sys.argv[1:]))",
]
RUN_TIMEOUT = 600.0  # bounds a failure only

KEYS = {
    "PROBE_OK_KEY": "sk-probe-ok-4f1c9a7e2b6d8035c1e9a4b7",
    "PROBE_BAD_KEY": "sk-probe-bad-9b7e1d3c5a2f4e6d8c0b1a3f",
    "PROBE_BROKE_KEY": "sk-probe-broke-1a2b3c4d5e6f7a8b9c0d",
    "PROBE_CLAUDE_KEY": "sk-ant-probe-7d6c5b4a39281706f5e4d3c2",
    "PROBE_MISSING_KEY": "sk-probe-missing-0f9e8d7c6b5a49382716",
    "PROBE_BLOCKED_KEY": "sk-or-probe-5e4d3c2b1a0f9e8d7c6b5a49",
    "PROBE_HELD_KEY": "sk-probe-held-2c4e6a8b0d1f3e5a7c9b",
    "PROBE_EMBED_KEY": "sk-probe-embed-8a6c4e2b0f1d3c5e7a9b",
}


class HeldUpstream(FakeUpstream):
    """Takes a request and answers nothing until released: only the probe's own timeout ends its wait."""

    def __init__(self) -> None:
        super().__init__(OPENAI)
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def _handle(self, request: Request) -> Response:
        self.arrived.set()
        await asyncio.to_thread(self.release.wait, RUN_TIMEOUT)
        return Response(b"{}", 503)

    def stop(self) -> None:
        self.release.set()
        super().stop()


# name -> (wire, key variable, [backends.NAME] lines beyond type, base_url and api_key, [models.NAME] lines)
FLEET: dict[str, tuple[str, str, str, str]] = {
    "good": ("openai", "PROBE_OK_KEY", 'provider = "openai"', 'upstream = "gpt-4.1-mini"\nfamily = "gpt-4-1-mini"'),
    "badkey": ("openai", "PROBE_BAD_KEY", 'locality = "local"', 'upstream = "gpt-4.1-mini"'),
    "broke": ("openai", "PROBE_BROKE_KEY", 'locality = "remote"',
              'upstream = "deepseek-flash"\nfamily = "deepseek-v4-flash"'),
    "broke-claude": ("anthropic", "PROBE_CLAUDE_KEY", 'locality = "local"', 'upstream = "claude-haiku-4-5"'),
    "missing": ("openai", "PROBE_MISSING_KEY", 'provider = "openai"',
                'upstream = "gpt-4.1-mni"\nfamily = "gpt-4-1-mini"'),
    "blocked": ("openai", "PROBE_BLOCKED_KEY", 'locality = "local"\nprovider = "openrouter"',
                'upstream = "meta-llama/llama-3.3-70b-instruct"\nfamily = "llama-3-3-70b"'),
    "held": ("openai", "PROBE_HELD_KEY", 'locality = "local"\ntimeout = 1', 'upstream = "slow-model"'),
    "unset": ("openai", "PROBE_UNSET_KEY", 'provider = "openai"', 'upstream = "gpt-4.1-mini"'),
    "embedder": ("openai", "PROBE_EMBED_KEY", 'locality = "local"',
                 'upstream = "text-embedding-3-small"\ncapabilities = ["embeddings"]'),
}


def config_text(urls: dict[str, str]) -> str:
    parts = []
    for name, (wire, var, backend, model) in FLEET.items():
        base = urls[name] + ("" if wire == "anthropic" else "/v1")
        parts.append(f'[backends.{name}]\ntype = "{wire}"\nbase_url = "{base}"\napi_key = "env:{var}"\n{backend}\n')
        parts.append(f'[models.{name}]\nbackend = "{name}"\n{model}\n')
    return "\n".join(parts)


def error_of(provider: str, name: str) -> tuple[Any, int]:
    doc = load(provider, f"errors/{name}")
    return doc["body"], doc["status"]


def echoing_401() -> dict[str, Any]:
    """OpenAI's bad-key body, quoting the key it got, whole and masked, and another backend's key besides."""
    bad, other = KEYS["PROBE_BAD_KEY"], KEYS["PROBE_OK_KEY"]
    return {"error": {
        "message": f"Incorrect API key provided: {bad} ({bad[:8]}****{bad[-16:]}); not {other}. You can find your "
                   "API key at https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}


class Fleet:
    """Every fake provider of ``FLEET``, each scripted with its one answer before a run."""

    def __init__(self) -> None:
        self.ups: dict[str, FakeUpstream] = {
            name: HeldUpstream() if name == "held" else FakeUpstream(ANTHROPIC if wire == "anthropic" else OPENAI)
            for name, (wire, *_) in FLEET.items()
        }

    def script(self) -> None:
        ups = self.ups
        for up in ups.values():
            up.reset()
        ups["good"].json(load("openai", "completion"))
        ups["badkey"].json(echoing_401(), status=401)
        ups["broke"].json(*error_of("deepseek", "402_insufficient_balance"))
        ups["broke-claude"].json(*error_of("anthropic", "402_billing_error"))
        ups["missing"].json(*error_of("openai", "404_model_not_found"))
        ups["blocked"].json(*error_of("openrouter", "403_provider_region_block"))
        ups["embedder"].json(load("openai", "embeddings"))


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    f = Fleet()
    for up in f.ups.values():
        up.start()
    try:
        yield f
    finally:
        for up in f.ups.values():
            up.stop()


@pytest.fixture
def config(fleet: Fleet, tmp_path: Path) -> Path:
    fleet.script()
    path = tmp_path / "probe.toml"
    path.write_text(config_text({name: up.url for name, up in fleet.ups.items()}), encoding="utf-8")
    return path


def env_with_keys() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("PROBE_")}
    env.pop("POLYROUTE_CONFIG", None)
    return {**env, **KEYS}


def probe(*args: str, command: list[str] = POLYROUTE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, "probe", *args], env=env_with_keys(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, check=False)


def assert_no_secret(run: subprocess.CompletedProcess[str]) -> None:
    for secret in KEYS.values():
        for text in (run.stdout, run.stderr):
            assert secret not in text
            # Nor any run of twelve of its characters, as a provider's masked echo would give away.
            assert not any(secret[i:i + 12] in text for i in range(8, len(secret) - 11)), text


def test_every_case_classified_as_the_gateway_does_with_what_to_do(fleet: Fleet, config: Path) -> None:
    run = probe("--config", str(config), "--json")
    assert run.returncode == 1, run.stderr
    rows = {r["model"]: r for r in json.loads(run.stdout)}
    assert list(rows) == list(FLEET)  # the config's order, whatever answered first
    assert {name: r["result"] for name, r in rows.items()} == {
        "good": "ok", "badkey": "auth_error", "broke": "billing", "broke-claude": "billing",
        "missing": "model_not_found", "blocked": "blocked", "held": "timeout", "unset": "skipped",
        "embedder": "ok",
    }
    for r in rows.values():
        assert set(r) == {"model", "backend", "upstream", "kind", "paid", "result", "words", "upstream_status",
                          "latency_ms", "prompt_tokens", "completion_tokens", "cost_usd", "message", "hint"}

    good = rows["good"]
    assert (good["words"], good["kind"], good["paid"], good["upstream"]) == ("ok", "chat", True, "gpt-4.1-mini")
    assert (good["prompt_tokens"], good["completion_tokens"]) == (12, 9)  # the fixture's usage
    assert good["cost_usd"] == pytest.approx((12 * 0.4 + 9 * 1.6) / 1e6)  # gpt-4-1-mini's catalog price
    assert good["latency_ms"] >= 0 and good["message"] is None and good["hint"] is None
    [sent] = fleet.ups["good"].received
    body = sent.json()
    assert sent.path == "/v1/chat/completions"
    assert body["messages"] == [{"role": "user", "content": "Reply with the word ok."}]
    assert body["max_completion_tokens"] == 16 and not body["stream"]  # OpenAI's name for the limit

    assert (rows["badkey"]["words"], rows["badkey"]["upstream_status"]) == ("key refused", 401)
    assert "Incorrect API key provided" in rows["badkey"]["message"]
    assert "PROBE_BAD_KEY" in rows["badkey"]["hint"] and "backends.badkey.api_key" in rows["badkey"]["hint"]

    for name in ("broke", "broke-claude"):
        assert (rows[name]["words"], rows[name]["upstream_status"]) == ("account cannot pay", 402)
        assert "top up the account behind backends." + name in rows[name]["hint"]
    assert "Insufficient Balance" in rows["broke"]["message"]
    assert [r.path for r in fleet.ups["broke-claude"].received] == ["/v1/messages"]

    missing = rows["missing"]
    assert (missing["words"], missing["upstream_status"]) == ("model not found", 404)
    assert "does not exist" in missing["message"]
    assert "models.missing.upstream" in missing["hint"] and "did you mean 'gpt-4.1-mini'?" in missing["hint"]

    blocked = rows["blocked"]
    assert (blocked["words"], blocked["upstream_status"]) == ("region blocked", 403)
    assert "OpenAI" in blocked["message"]  # the provider behind the relay, as the relay names it
    # The other offers of the family, with the variable each one's key goes in.
    assert "together (TOGETHER_API_KEY" in blocked["hint"] and "fireworks (FIREWORKS_API_KEY" in blocked["hint"]

    held = rows["held"]
    assert fleet.ups["held"].arrived.is_set()  # it was asked, and the probe gave up on it
    assert (held["words"], held["upstream_status"]) == ("timeout", None)
    assert "no answer within 1s" in held["message"] and "--timeout" in held["hint"]

    unset = rows["unset"]
    assert fleet.ups["unset"].received == []  # skipped without a request
    assert (unset["words"], unset["latency_ms"], unset["cost_usd"]) == ("skipped", None, None)
    assert unset["message"] == "PROBE_UNSET_KEY is not set"
    assert unset["hint"] == "export PROBE_UNSET_KEY=... (backends.unset.api_key), then probe again"

    embedder = rows["embedder"]
    assert (embedder["kind"], embedder["prompt_tokens"], embedder["completion_tokens"]) == ("embeddings", 8, 0)
    [asked] = fleet.ups["embedder"].received
    assert asked.path == "/v1/embeddings" and asked.json()["input"] == "Reply with the word ok."

    # Before asking: how many are asked (not the one without a key), how many are paid, the most they can cost:
    # good and missing at gpt-4-1-mini's prices, broke at deepseek-v4-flash's, for 50 prompt and 16 answer tokens.
    worst = (2 * (50 * 0.4 + 16 * 1.6) + (50 * 0.3 + 16 * 1.2)) / 1e6
    assert f"asking 8 model(s); 3 paid: at most ${worst:.6f} in all" in run.stderr
    assert_no_secret(run)


def test_the_table_says_each_result_in_words_and_what_to_do(config: Path) -> None:
    run = probe("--config", str(config))
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["model", "backend", "upstream", "result", "latency", "tokens", "cost", "detail"]
    row = {line.split()[0]: line for line in lines[1:len(FLEET) + 1]}
    assert "key refused" in row["badkey"] and "[redacted]" in row["badkey"]
    assert "12+9" in row["good"] and "$0.000019" in row["good"]
    assert "model not found" in row["missing"] and "region blocked" in row["blocked"]
    assert "timeout" in row["held"] and "skipped" in row["unset"]
    todo = lines[lines.index("what to do:") + 1:]
    assert "  missing: check models.missing.upstream: 'gpt-4.1-mni' is not a model of this backend " \
           "(did you mean 'gpt-4.1-mini'?)" in todo
    assert "  unset: export PROBE_UNSET_KEY=... (backends.unset.api_key), then probe again" in todo
    assert lines[-1] == "2 answered, 6 failed, 1 skipped"
    assert_no_secret(run)


def test_only_the_named_models_are_asked_and_all_answering_exits_0(fleet: Fleet, config: Path) -> None:
    run = probe("--config", str(config), "--models", "good, embedder,unset", "--json", "--concurrency", "1")
    assert run.returncode == 0, run.stderr  # the skipped one does not fail a run where the others answered
    assert [(r["model"], r["result"]) for r in json.loads(run.stdout)] == [
        ("good", "ok"), ("embedder", "ok"), ("unset", "skipped")]
    assert fleet.ups["missing"].received == [] and fleet.ups["held"].received == []
    assert "asking 2 model(s); 1 paid" in run.stderr


def test_nothing_asked_is_a_failure(config: Path) -> None:
    run = probe("--config", str(config), "--models", "unset", "--json")
    assert run.returncode == 1
    assert [r["result"] for r in json.loads(run.stdout)] == ["skipped"]
    assert "asking 0 model(s); none of them is paid" in run.stderr


def test_bad_usage_and_bad_config_exit_2(config: Path, tmp_path: Path) -> None:
    unknown = probe("--config", str(config), "--models", "godo")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "--models: no model or route 'godo'" in unknown.stderr and "did you mean 'good'?" in unknown.stderr

    assert probe("--config", str(config), "--timeout", "0").returncode == 2
    assert probe("--config", str(config), "--concurrency", "none").returncode == 2

    bad = tmp_path / "bad.toml"
    bad.write_text('[backends.x]\ntype = "openai"\nbase_url = "http://127.0.0.1:1/v1"\nmodel = "y"\n',
                   encoding="utf-8")
    run = probe("--config", str(bad))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith(f"polyroute: {bad}: backends.x.model")


def test_the_help_says_it_costs_money() -> None:
    run = subprocess.run([*POLYROUTE, "probe", "--help"], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                         check=True)
    assert "This costs real money on paid providers" in run.stdout
    assert "polyroute probe --config polyroute.toml" in run.stdout


SMOL = """
[backends.local]
type = "llamacpp"
model_path = "embedded"
n_ctx = 512

[models.smol]
backend = "local"
family = "smollm2-135m"

[models.smol-embed]
backend = "local"
family = "smollm2-135m"
capabilities = ["embeddings"]
"""


def test_the_bundled_model_is_loaded_and_asked_like_the_others(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'polyroute[local]')")
    path = tmp_path / "smol.toml"
    path.write_text(SMOL, encoding="utf-8")
    run = probe("--config", str(path), "--json", "--timeout", str(RUN_TIMEOUT))
    assert run.returncode == 0, run.stderr
    chat, embed = json.loads(run.stdout)
    assert (chat["model"], chat["result"], chat["kind"], chat["paid"]) == ("smol", "ok", "chat", False)
    assert 0 < chat["completion_tokens"] <= 16 and chat["prompt_tokens"] > 0 and chat["cost_usd"] == 0.0
    assert (embed["model"], embed["result"], embed["kind"]) == ("smol-embed", "ok", "embeddings")
    assert embed["prompt_tokens"] > 0 and embed["cost_usd"] == 0.0
    assert "asking 2 model(s); none of them is paid" in run.stderr


def test_without_llama_cpp_the_local_model_is_skipped_with_what_to_install(fleet: Fleet, tmp_path: Path) -> None:
    fleet.script()
    path = tmp_path / "mixed.toml"
    good = FLEET["good"]
    path.write_text(SMOL + f'\n[backends.good]\ntype = "openai"\nbase_url = "{fleet.ups["good"].url}/v1"\n'
                    f'api_key = "env:{good[1]}"\n{good[2]}\n\n[models.good]\nbackend = "good"\n{good[3]}\n',
                    encoding="utf-8")
    run = probe("--config", str(path), "--json", command=WITHOUT_LLAMA_CPP)
    assert run.returncode == 0, run.stderr  # the hosted model answered; the local one could not be asked
    rows = {r["model"]: r for r in json.loads(run.stdout)}
    assert [rows[n]["result"] for n in ("smol", "smol-embed", "good")] == ["skipped", "skipped", "ok"]
    assert "'llama_cpp'" in rows["smol"]["message"]
    assert rows["smol"]["hint"] == "run `pip install 'polyroute[local]'`, then probe again"
    assert rows["smol-embed"]["kind"] == "embeddings"
    assert "asking 1 model(s); 1 paid" in run.stderr
