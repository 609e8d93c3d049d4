"""Tokens/s of llama-cpp-python called directly vs through polyroute's LlamaCppAdapter.

Both sides load the same GGUF with the same n_ctx and threads, answer the same
prompt with temperature 0 and the same seed (so they generate the same tokens),
and take turns run by run so that a change in machine load hits both alike. Each
side is measured non-streamed and streamed; the streamed figures are the ones
that matter for a gateway and are repeated at the top level. Tokens/s is
completion tokens over wall time, prompt evaluation included. The prompt is
cached by llama.cpp after the warm-up on both sides, so runs measure generation.

    .venv/bin/python -m bench.local_llama [--max-tokens 64] [--runs 5] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import llama_cpp
from llama_cpp.llama_types import ChatCompletionRequestMessage

from polyroute.adapters.base import Call
from polyroute.adapters.llamacpp import LlamaCppAdapter
from polyroute.config import LlamaCppBackend
from polyroute.embedded import LOCAL_MODEL, smollm2_path
from polyroute.types import ChatRequest, chunk_text

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
SEED = 42
N_CTX = 2048


def measure_local(
    model_path: str | Path, prompt: str, max_tokens: int, runs: int, *, n_threads: int | None = None
) -> dict[str, Any]:
    """Median tokens/s, direct and through the adapter, for both answer modes."""
    return asyncio.run(_measure(Path(model_path), prompt, max_tokens, runs, n_threads))


async def _measure(path: Path, prompt: str, max_tokens: int, runs: int, n_threads: int | None) -> dict[str, Any]:
    config = LlamaCppBackend(type="llamacpp", model_path=str(path), n_ctx=N_CTX, n_threads=n_threads)
    adapter = LlamaCppAdapter("bench", config)
    await adapter.start()
    direct = llama_cpp.Llama(
        model_path=str(path), n_ctx=N_CTX, n_threads=adapter.threads, n_threads_batch=adapter.threads, verbose=False
    )
    messages: list[ChatCompletionRequestMessage] = [{"role": "user", "content": prompt}]
    options: dict[str, Any] = {"temperature": 0.0, "seed": SEED, "max_tokens": max_tokens}
    call = Call(ChatRequest(model=LOCAL_MODEL, messages=[{"role": "user", "content": prompt}], **options), LOCAL_MODEL)
    try:
        # Warm-up, and the token count of the (deterministic) answer, from llama.cpp itself.
        warm = cast(dict[str, Any], direct.create_chat_completion(messages, **options))
        text, tokens = warm["choices"][0]["message"]["content"], int(warm["usage"]["completion_tokens"])
        await adapter.complete(call)
        same = True
        times: dict[str, list[float]] = {k: [] for k in ("direct", "adapter", "direct_stream", "adapter_stream")}
        for _ in range(runs):
            t0 = time.perf_counter()
            out = cast(dict[str, Any], direct.create_chat_completion(messages, **options))
            times["direct"].append(time.perf_counter() - t0)
            same &= out["choices"][0]["message"]["content"] == text

            t0 = time.perf_counter()
            resp = await adapter.complete(call)
            times["adapter"].append(time.perf_counter() - t0)
            same &= resp["choices"][0]["message"]["content"] == text

            t0 = time.perf_counter()
            chunks = direct.create_chat_completion(messages, stream=True, **options)
            streamed = "".join(_direct_text(cast(Iterator[dict[str, Any]], chunks)))
            times["direct_stream"].append(time.perf_counter() - t0)
            same &= streamed == text

            t0 = time.perf_counter()
            streamed = "".join([chunk_text(c) async for c in adapter.stream(call)])
            times["adapter_stream"].append(time.perf_counter() - t0)
            same &= streamed == text
    finally:
        direct.close()
        await adapter.aclose()

    def rate(key: str) -> float:
        return round(tokens / statistics.median(times[key]), 2)

    complete = _pair(rate("direct"), rate("adapter"))
    stream = _pair(rate("direct_stream"), rate("adapter_stream"))
    return {
        "model": path.name,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "completion_tokens": tokens,
        "runs": runs,
        "n_threads": adapter.threads,
        "same_output": same,
        **stream,
        "complete": complete,
        "stream": stream,
    }


def _direct_text(chunks: Iterator[dict[str, Any]]) -> Iterator[str]:
    for chunk in chunks:
        yield chunk["choices"][0]["delta"].get("content") or ""


def _pair(direct: float, adapter: float) -> dict[str, float]:
    return {
        "direct_tokens_per_s": direct,
        "adapter_tokens_per_s": adapter,
        "ratio": round(adapter / direct, 3) if direct else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.local_llama", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a GGUF file (default: the embedded SmolLM2-135M)")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: the usable cores)")
    args = parser.parse_args()
    path = Path(args.model) if args.model else smollm2_path()
    print(json.dumps(measure_local(path, args.prompt, args.max_tokens, args.runs, n_threads=args.threads), indent=2))


if __name__ == "__main__":
    main()
