"""A new user's first hour, as they would run it: ``polyroute serve`` in its own process.

"serving on" is printed only once the gateway answers; a hosted-only install (no
``polyroute[local]``, simulated by hiding ``llama_cpp``) serves hosted backends and
says what to install for the embedded model; a model file that will not load stops
``serve`` with a message, not a traceback.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.live import free_port, live_gateway
from tests.support.upstreams import OPENAI, FakeUpstream, load

# The gateway as `pip install polyroute` leaves it: llama-cpp-python absent.
WITHOUT_LLAMA_CPP = [
    sys.executable, "-c",
    "import sys; sys.modules['llama_cpp'] = None; "
    "from polyroute.cli import main; sys.exit(main(sys.argv[1:]))",
]
POLYROUTE = [sys.executable, "-m", "polyroute"]
START_TIMEOUT = 120.0

HOSTED = """
[gateway]
listen = "127.0.0.1:{port}"
[backends.up]
type = "openai"
base_url = "http://127.0.0.1:{dead}/v1"
locality = "remote"
[models.hosted]
backend = "up"
"""


class Served:
    """A ``serve`` process whose stderr is read line by line as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, words: str, timeout: float = START_TIMEOUT) -> bool:
        """True once a line holds ``words``; False when the process ended first."""
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                return False
            self.seen.append(line)
            if words in line:
                return True

    def rest(self, timeout: float = START_TIMEOUT) -> str:
        """Everything it printed, once it has exited."""
        self.proc.wait(timeout)
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


@contextmanager
def serve(command: list[str], *args: str) -> Iterator[Served]:
    # No config but the one given: POLYROUTE_CONFIG would replace the embedded default.
    env = {k: v for k, v in os.environ.items() if k != "POLYROUTE_CONFIG"}
    proc = subprocess.Popen([*command, "serve", *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env={**env, "PYTHONUNBUFFERED": "1"})
    try:
        yield Served(proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def hosted_config(tmp_path: Path) -> tuple[Path, int, int]:
    port, dead = free_port(), free_port()
    path = tmp_path / "hosted.toml"
    path.write_text(HOSTED.format(port=port, dead=dead))
    return path, port, dead


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serving_on_is_printed_once_the_gateway_answers(tmp_path: Path, workers: str) -> None:
    path, port, _ = hosted_config(tmp_path)
    with serve(POLYROUTE, "--config", str(path), "--workers", workers) as served:
        assert served.wait_for("serving on"), "".join(served.seen)
        # No waiting, no retry: the line itself is the signal that the gateway is ready.
        for _ in range(4):  # with workers, each of several connections lands on a ready one
            resp = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10)
            assert resp.status_code == 200
            assert [m["id"] for m in resp.json()["data"]] == ["hosted"]


def test_without_llama_cpp_a_hosted_config_serves_and_names_the_host_it_cannot_reach(tmp_path: Path) -> None:
    path, port, dead = hosted_config(tmp_path)
    with serve(WITHOUT_LLAMA_CPP, "--config", str(path)) as served:
        assert served.wait_for("serving on"), "".join(served.seen)
        body = {"model": "hosted", "messages": [{"role": "user", "content": "hi"}]}
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=30)
    assert resp.status_code == 503
    assert f"connection refused by 127.0.0.1:{dead}" in resp.json()["error"]["message"]


def test_without_llama_cpp_the_embedded_default_says_what_to_install() -> None:
    with serve(WITHOUT_LLAMA_CPP) as served:
        out = served.rest()
    assert served.proc.returncode == 2
    assert "backends.local.type: a backend of type 'llamacpp' needs the Python package 'llama_cpp'" in out
    assert "pip install 'polyroute[local]'" in out
    assert "Traceback" not in out and "serving on" not in out


def test_without_llama_cpp_config_check_refuses_a_llamacpp_backend(tmp_path: Path) -> None:
    conf = tmp_path / "local.toml"
    conf.write_text('[backends.local]\ntype = "llamacpp"\nmodel_path = "embedded"\n')
    done = subprocess.run([*WITHOUT_LLAMA_CPP, "config", "check", str(conf)], capture_output=True, text=True,
                          timeout=START_TIMEOUT)
    assert done.returncode == 2
    assert done.stderr == (f"polyroute: {conf}: backends.local.type: a backend of type 'llamacpp' needs the Python "
                           "package 'llama_cpp', which is not installed: run `pip install 'polyroute[local]'`\n")


def test_a_model_file_that_will_not_load_stops_serve_before_serving_on(tmp_path: Path) -> None:
    model = tmp_path / "not-a-model.gguf"
    model.write_bytes(b"this is not a GGUF file")
    conf = tmp_path / "local.toml"
    conf.write_text(f'[gateway]\nlisten = "127.0.0.1:{free_port()}"\n'
                    f'[backends.local]\ntype = "llamacpp"\nmodel_path = "{model}"\n'
                    '[models.mine]\nbackend = "local"\n')
    with serve(POLYROUTE, "--config", str(conf)) as served:
        out = served.rest()
    assert served.proc.returncode == 1
    assert f"backends.local.model_path: llama.cpp cannot load {model}" in out
    assert "Traceback" not in out and "serving on" not in out


# --- over the wire, in-process ------------------------------------------------------------

TOOLS: list[Any] = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def test_models_retrieve_with_the_openai_sdk() -> None:
    raw = {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f", "context_window": 4096}, "other": {"backend": "f"}},
        "routes": {"main": {"models": ["echo"]}},
        "keys": {"k": {"secret": "env:K", "routes": ["main", "echo"]}},
    }
    with live_gateway(raw, env={"K": "sk-polyroute-k"}) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="sk-polyroute-k", max_retries=0)
        model = client.models.retrieve("echo")
        assert (model.id, model.object, model.owned_by) == ("echo", "model", "polyroute")
        assert model.model_extra is not None and model.model_extra["polyroute"]["context_window"] == 4096
        assert client.models.retrieve("main").id == "main"
        for hidden in ("nope", "other"):  # unknown, and not this key's to see: the same 404
            with pytest.raises(openai.NotFoundError) as info:
                client.models.retrieve(hidden)
            assert info.value.code == "model_not_found"
            assert info.value.body == {"message": f"The model '{hidden}' does not exist", "type":
                                       "invalid_request_error", "param": "model", "code": "model_not_found"}
        anonymous = httpx.get(f"{g.base_url}/models/echo")
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_api_key"
        wrong = httpx.post(f"{g.base_url}/models/echo", headers={"authorization": "Bearer sk-polyroute-k"})
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"


def test_tools_a_model_cannot_use_are_dropped_and_named() -> None:
    # A hosted model the config says has no tools: it still answers, without them.
    with FakeUpstream(OPENAI) as up:
        up.json(load("openai", "completion"))
        raw = {
            # Asked for whole answers, as the fake upstream gives them (no stream to assemble).
            "backends": {"up": {"type": "openai", "base_url": f"{up.url}/v1", "locality": "remote",
                                "assemble_from_stream": False}},
            "models": {"plain": {"backend": "up", "upstream": "plain-1", "capabilities": ["json_mode"]}},
        }
        with live_gateway(raw) as g:
            body = {"model": "plain", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS,
                    "tool_choice": "auto"}
            resp = httpx.post(f"{g.base_url}/chat/completions", json=body)
            assert resp.status_code == 200
            assert resp.headers["x-polyroute-dropped-params"] == "tool_choice,tools"
            sent = up.received[-1].json()
            assert "tools" not in sent and "tool_choice" not in sent
            # A call the request demands is refused: an answer without it would be wrong.
            forced = httpx.post(f"{g.base_url}/chat/completions", json={**body, "tool_choice": "required"})
            assert forced.status_code == 422
            assert "plain: lacks tools (the request requires a tool call)" in forced.json()["error"]["message"]
            assert len(up.received) == 1
