"""Each provider's own quirks, driven by fixtures built from its documented examples."""

from __future__ import annotations

import pytest

from polyroute.adapters import Adapter, build_adapter
from polyroute.adapters.openai_compat import wants_completion_tokens
from polyroute.adapters.regions import key_region_hint
from polyroute.catalog import load_catalog
from polyroute.config import OpenAIBackend
from polyroute.errors import UpstreamAuthError, UpstreamContextExceeded, UpstreamError
from polyroute.settings import default_raw
from polyroute.types import ChatChunk, chunk_has_token
from tests.conformance.helpers import ANSWER, USAGE, as_sdk_reads, call, collect, content
from tests.conformance.providers import (
    API_KEY,
    DASHSCOPE_PROVIDER,
    DEEPSEEK_PROVIDER,
    MOONSHOT_PROVIDER,
    OPENAI_PROVIDER,
    OPENROUTER_PROVIDER,
    QIANFAN_PROVIDER,
    ZAI_PROVIDER,
    Provider,
)
from tests.support.upstreams import FIXTURES, FakeUpstream, Reply, load

pytestmark = pytest.mark.anyio

REASONING = "The user greets me. A short greeting back fits."


def reasoning(chunks: list) -> str:  # type: ignore[type-arg]
    return "".join(ch["delta"].get("reasoning_content") or "" for c in chunks for ch in c["choices"])


# --- Kimi: partial mode -------------------------------------------------------------------


@pytest.fixture
def provider() -> Provider:
    return MOONSHOT_PROVIDER


async def test_kimi_continues_with_partial_as_documented(upstream: FakeUpstream, adapter: Adapter) -> None:
    documented = load("moonshot", "partial_request")["messages"][-1]
    doc = load("moonshot", "completion")
    doc["choices"][0]["message"]["content"] = " can I help you today?"
    upstream.json(doc)
    resp = await adapter.complete(call(prefix="Hello! How"))
    sent = upstream.received[0].json()["messages"][-1]
    assert sent.keys() == documented.keys() and sent["partial"] is documented["partial"] is True
    assert "prefix" not in sent
    assert sent == {"role": "assistant", "content": "Hello! How", "partial": True}
    # Kimi answers with the continuation only ("the API response does not include the leading_text").
    assert resp["choices"][0]["message"]["content"] == ANSWER


def test_kimi_offers_of_the_catalog_are_wired_for_partial() -> None:
    catalog = load_catalog()
    raw = default_raw(catalog, {"MOONSHOT_API_KEY": "x"})
    assert raw["backends"]["moonshot"]["continuation"] == "partial"
    assert raw["backends"]["moonshot"]["provider"] == "moonshot"


async def test_moonshot_usage_inside_the_choice_reaches_the_client_and_the_bill(
    upstream: FakeUpstream, adapter: Adapter
) -> None:
    events = load("moonshot", "stream")
    assert "usage" in events[-1]["choices"][0] and "usage" not in events[-1]  # the documented quirk
    upstream.stream(events)
    chunks = await collect(adapter, call(stream=True))
    assert content(chunks) == ANSWER
    assert all("usage" not in ch for c in chunks for ch in c["choices"])
    (last,) = [c for c in chunks if c.get("usage")]
    assert last is chunks[-1] and last["choices"] == [] and last["usage"] == USAGE


# --- reasoning as the first token, under either name --------------------------------------


@pytest.mark.parametrize("p", [DEEPSEEK_PROVIDER, OPENROUTER_PROVIDER], ids=str)
async def test_reasoning_streams_count_as_first_token_and_reach_the_client_as_reasoning_content(
    p: Provider, upstreams: dict[str, FakeUpstream]
) -> None:
    up = upstreams[p.name]
    up.reset()
    events = load(p.name, "reasoning_stream")
    field = "reasoning" if p is OPENROUTER_PROVIDER else "reasoning_content"
    assert any(e["choices"] and e["choices"][0]["delta"].get(field) for e in events)  # as documented
    up.stream(events)
    adapter = build_adapter("r", p.config(up.url))
    try:
        chunks = await collect(adapter, call(stream=True))
    finally:
        await adapter.aclose()
    first = next(c for c in chunks if chunk_has_token(c))
    assert reasoning([first]) and not content([first])  # the first token is reasoning
    assert reasoning(chunks) == REASONING and content(chunks) == ANSWER
    assert all("reasoning" not in ch["delta"] for c in chunks for ch in c["choices"])


# --- context-length refusals in each provider's words -------------------------------------


@pytest.mark.parametrize(
    ("p", "case"),
    [
        (MOONSHOT_PROVIDER, "context"), (MOONSHOT_PROVIDER, "context_input"), (DEEPSEEK_PROVIDER, "context"),
        (DASHSCOPE_PROVIDER, "context"), (ZAI_PROVIDER, "context"), (QIANFAN_PROVIDER, "context"),
        (QIANFAN_PROVIDER, "context_characters"),
    ],
    ids=lambda v: str(v),
)
async def test_context_refusals_in_each_providers_words(
    p: Provider, case: str, upstreams: dict[str, FakeUpstream]
) -> None:
    up = upstreams[p.name]
    up.reset()
    spec = load(p.name, "errors")[case]
    up.json(spec["body"], spec["status"])
    adapter = build_adapter("c", p.config(up.url))
    try:
        with pytest.raises(UpstreamError) as info:
            await adapter.complete(call())
    finally:
        await adapter.aclose()
    assert type(info.value) is UpstreamContextExceeded and info.value.may_fall_over


# --- keys tied to a region ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "case", "other"),
    [
        (MOONSHOT_PROVIDER, "auth", "api.moonshot"),
        (DASHSCOPE_PROVIDER, "auth", "dashscope"),
        (ZAI_PROVIDER, "auth", "open.bigmodel.cn"),
        (ZAI_PROVIDER, "auth_token", "api.z.ai"),
    ],
    ids=lambda v: str(v),
)
async def test_a_refused_key_names_the_other_regions_endpoint(
    p: Provider, case: str, other: str, upstreams: dict[str, FakeUpstream]
) -> None:
    up = upstreams[p.name]
    up.reset()
    spec = load(p.name, "errors")[case]
    up.json(spec["body"], spec["status"])
    adapter = build_adapter("k", p.config(up.url))
    try:
        with pytest.raises(UpstreamAuthError) as info:
            await adapter.complete(call())
    finally:
        await adapter.aclose()
    message = info.value.message
    assert spec["body"]["error"]["message"] in message  # the provider's own words come first
    assert "one region only" in message and other in message
    assert API_KEY not in message


@pytest.mark.parametrize(
    ("base_url", "names"),
    [
        ("https://dashscope.aliyuncs.com/compatible-mode/v1", "https://dashscope-intl.aliyuncs.com"),
        ("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "https://dashscope.aliyuncs.com"),
        ("https://api.moonshot.ai/v1", "https://api.moonshot.cn/v1 (mainland China)"),
        ("https://api.moonshot.cn/v1", "https://api.moonshot.ai/v1 (international)"),
        ("https://api.z.ai/api/paas/v4", "https://open.bigmodel.cn"),
        ("https://open.bigmodel.cn/api/paas/v4", "https://api.z.ai"),
    ],
)
def test_the_hint_names_the_other_region_by_host(base_url: str, names: str) -> None:
    hint = key_region_hint(None, base_url)
    assert hint is not None and names in hint


def test_providers_without_regional_keys_get_no_hint() -> None:
    assert key_region_hint(None, "https://api.deepseek.com") is None
    assert key_region_hint("openrouter", "https://openrouter.ai/api/v1") is None
    assert key_region_hint(None, "http://127.0.0.1:8000/v1") is None


async def test_a_key_refused_elsewhere_gets_no_region_hint(upstreams: dict[str, FakeUpstream]) -> None:
    up = upstreams["qianfan"]
    up.reset()
    spec = load("qianfan", "errors")["auth"]
    up.json(spec["body"], spec["status"])
    adapter = build_adapter("q", OpenAIBackend(type="openai", base_url=up.url + "/v2", provider="baidu-qianfan"))
    try:
        with pytest.raises(UpstreamAuthError) as info:
            await adapter.complete(call())
    finally:
        await adapter.aclose()
    assert info.value.message == "IAM Certification failed"


# --- OpenRouter's keep-alive comments -----------------------------------------------------


async def recorded_openrouter_stream(upstreams: dict[str, FakeUpstream]) -> tuple[bytes, list[ChatChunk]]:
    """OpenRouter's recorded stream, sent as the file has it (comments included), and what the adapter made of it."""
    up = upstreams["openrouter"]
    up.reset()
    raw = (FIXTURES / "openrouter" / "stream.sse").read_bytes()
    up.reply(Reply(chunks=tuple(raw.splitlines(keepends=True)), media_type="text/event-stream"))
    adapter = build_adapter("o", OPENROUTER_PROVIDER.config(up.url))
    try:
        return raw, await collect(adapter, call(stream=True))
    finally:
        await adapter.aclose()


async def test_openrouter_keep_alive_comments_are_skipped(upstreams: dict[str, FakeUpstream]) -> None:
    raw, chunks = await recorded_openrouter_stream(upstreams)
    assert b": OPENROUTER PROCESSING" in raw
    assert content(chunks) == ANSWER
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == USAGE


async def test_a_role_said_in_every_chunk_reaches_the_client_once(upstreams: dict[str, FakeUpstream]) -> None:
    """OpenRouter's recorded stream says ``"role": "assistant"`` in each chunk; OpenAI's SDK joins every text field
    of a delta, so the client would build "assistantassistant..." and send that back as its history's role."""
    raw, chunks = await recorded_openrouter_stream(upstreams)
    assert raw.count(b'"role"') > 2
    message = as_sdk_reads(chunks)
    assert message["role"] == "assistant" and message["content"] == ANSWER


@pytest.mark.parametrize(("provider_name", "both"), [("kimi", "api.moonshot.cn"), ("qwen", "dashscope-intl"),
                                                     ("zai", "open.bigmodel.cn")])
def test_a_named_provider_behind_another_host_gets_both_endpoints(provider_name: str, both: str) -> None:
    # A proxy or a test server: the host says nothing, the provider field does.
    hint = key_region_hint(provider_name, "http://127.0.0.1:8000/v1")
    assert hint is not None and "check that base_url matches the key's region" in hint and both in hint


async def test_openrouter_answer_reasoning_becomes_reasoning_content(upstreams: dict[str, FakeUpstream]) -> None:
    up = upstreams["openrouter"]
    up.reset()
    doc = load("openrouter", "completion")
    assert doc["choices"][0]["message"]["reasoning"]  # as documented
    up.json(doc)
    adapter = build_adapter("o", OPENROUTER_PROVIDER.config(up.url))
    try:
        message = (await adapter.complete(call()))["choices"][0]["message"]
    finally:
        await adapter.aclose()
    assert message.get("reasoning_content") == REASONING and "reasoning" not in message
    assert message["content"] == ANSWER


# --- OpenAI: max_completion_tokens --------------------------------------------------------------


@pytest.mark.parametrize(("backend", "renamed"), [
    ({"provider": "openai"}, True),
    ({"provider": "azure"}, True),
    ({"provider": "deepseek"}, False),  # DeepSeek documents max_tokens only
    ({"provider": "mistral"}, False),  # Mistral refuses max_completion_tokens with 422
    ({}, False),  # a server on loopback: sent as the client wrote it
])
async def test_openai_gets_a_clients_max_tokens_as_max_completion_tokens(
    upstreams: dict[str, FakeUpstream], backend: dict[str, str], renamed: bool
) -> None:
    """OpenAI's GPT-5 family refuses max_tokens (400 unsupported_parameter); every OpenAI chat model takes
    max_completion_tokens, so a client written for any provider reaches GPT-5 through the same route."""
    from dataclasses import replace

    up = upstreams["openai"]
    up.reset()
    provider = replace(OPENAI_PROVIDER, backend={**OPENAI_PROVIDER.backend, **backend})
    adapter = build_adapter("openai-test", provider.config(up.url))
    try:
        for _ in range(2):
            up.json(load("openai", "completion"))
        await adapter.complete(call(max_tokens=50))
        await adapter.complete(call(max_tokens=50, max_completion_tokens=40))
    finally:
        await adapter.aclose()
    plain, both = (r.json() for r in up.received)
    if renamed:
        assert "max_tokens" not in plain and plain["max_completion_tokens"] == 50
        assert "max_tokens" not in both and both["max_completion_tokens"] == 40  # the client's own wins
    else:  # the newer name is sent as the one every other server takes, and the client's own still wins
        assert plain["max_tokens"] == 50 and "max_completion_tokens" not in plain
        assert both["max_tokens"] == 40 and "max_completion_tokens" not in both
    assert all(r.json()["model"] for r in up.received)
    assert wants_completion_tokens(None, "https://api.openai.com/v1")
    assert wants_completion_tokens(None, "https://my-resource.openai.azure.com/openai/v1")
    assert not wants_completion_tokens(None, "https://api.deepseek.com/v1")


@pytest.mark.parametrize(("tool_choice", "thinking"), [
    ("required", {"type": "disabled"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "disabled"}),
    ("auto", None),
])
async def test_deepseek_is_asked_without_thinking_for_a_forced_tool_call(
    upstreams: dict[str, FakeUpstream], tool_choice: object, thinking: object
) -> None:
    """DeepSeek thinks by default and refuses a forced tool call while thinking."""
    from tests.conformance.helpers import WEATHER_TOOL

    up = upstreams["deepseek"]
    up.reset()
    adapter = build_adapter("deepseek-test", DEEPSEEK_PROVIDER.config(up.url))
    try:
        up.json(load("openai", "tool_call"))
        await adapter.complete(call(tools=[WEATHER_TOOL], tool_choice=tool_choice))
    finally:
        await adapter.aclose()
    assert up.received[0].json().get("thinking") == thinking


@pytest.mark.parametrize(("name", "tool_choice", "added"), [
    ("deepseek", "auto", True),
    ("moonshot", None, True),
    ("deepseek", "required", False),  # sent with thinking off (a forced call): nothing to pass back
    ("openai", None, False),
])
async def test_a_tool_turn_another_model_wrote_is_sent_to_a_thinking_mode_with_reasoning_content(
    upstreams: dict[str, FakeUpstream], name: str, tool_choice: object, added: bool
) -> None:
    """DeepSeek's and Kimi's thinking modes refuse a tool-call turn without reasoning_content (400 "Missing
    reasoning_content field"): one Claude or GPT wrote before a failover gets an empty one; their own keep theirs."""
    from tests.conformance.helpers import WEATHER_TOOL
    from tests.conformance.providers import MOONSHOT_PROVIDER, OPENAI_PROVIDER

    providers = {"deepseek": DEEPSEEK_PROVIDER, "moonshot": MOONSHOT_PROVIDER, "openai": OPENAI_PROVIDER}
    calls = [{"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]
    history = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": calls},  # another model's: no reasoning_content
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C"},
        {"role": "assistant", "content": "", "tool_calls": calls, "reasoning_content": "Its own thought."},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C"},
    ]
    up = upstreams[name]
    up.reset()
    up.json(load("openai", "completion"))
    adapter = build_adapter(f"{name}-test", providers[name].config(up.url))
    try:
        await adapter.complete(call(messages=history, tools=[WEATHER_TOOL], tool_choice=tool_choice))
    finally:
        await adapter.aclose()
    sent = up.received[0].json()["messages"]
    assert ("reasoning_content" in sent[1]) is added and sent[1].get("reasoning_content", "") == ""
    assert sent[3]["reasoning_content"] == "Its own thought."
    assert "reasoning_content" not in history[1]  # the client's request is not changed in place
