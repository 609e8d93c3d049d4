"""What the conformance suite knows about each HTTP provider.

Each ``Provider`` says where the adapter must send its request, which header
carries the key, and how that provider's request body expresses the things every
adapter must translate (system prompt, stop sequences, output limit, sampling,
tools, the rescue prefix). The scenarios in ``test_adapters.py`` are written once
against these readers and run for every provider.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from polyroute.config import HttpBackendConfig, Secret, backend_config
from tests.support.clients import backend_keys
from tests.support.upstreams import ANTHROPIC, OLLAMA, OPENAI, Wire

API_KEY = "sk-test-0123456789abcdefSECRET"

Body = dict[str, Any]


def text_of(message: dict[str, Any]) -> str:
    """A message's text, whether its content is a string or a list of text blocks."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or [] if b.get("type") == "text")


def _system_message(body: Body) -> str | None:
    first = body["messages"][0]
    return text_of(first) if first["role"] == "system" else None


@dataclass(frozen=True)
class Provider:
    name: str  # the fixture directory and test id
    type: str  # a backend type of polyroute.config.BackendConfig
    wire: Wire
    chat_path: str  # where the adapter must POST
    base_path: str  # appended to the fake server's URL to make base_url
    key_header: str
    key_value: str  # with "{key}" for the key
    system: Callable[[Body], str | None]
    stop: Callable[[Body], Any]
    max_tokens: Callable[[Body], Any]
    sampling: Callable[[Body], dict[str, Any]]
    tool_names: Callable[[Body], list[str]]
    prefix_message: Callable[[str], dict[str, Any]] | None  # the trailing turn a rescue sends; None: cannot
    backend: dict[str, Any] = field(default_factory=dict)  # extra BackendConfig fields

    def config(self, url: str, key: str | None = API_KEY) -> HttpBackendConfig:
        api_key = Secret("env:POLYROUTE_TEST_KEY", key) if key else None
        config = backend_config({"type": self.type, "base_url": url + self.base_path, "api_key": api_key,
                                 **backend_keys(), **self.backend})
        assert isinstance(config, HttpBackendConfig)
        return config

    def __str__(self) -> str:
        return self.name


OPENAI_PROVIDER = Provider(
    name="openai",
    type="openai",
    wire=OPENAI,
    chat_path="/v1/chat/completions",
    base_path="/v1",
    key_header="authorization",
    key_value="Bearer {key}",
    system=_system_message,
    stop=lambda b: b.get("stop"),
    max_tokens=lambda b: b.get("max_tokens"),
    sampling=lambda b: {"temperature": b.get("temperature"), "top_p": b.get("top_p")},
    tool_names=lambda b: [t["function"]["name"] for t in b.get("tools", [])],
    # DeepSeek's beta continuation: the one continuation mode that marks the message.
    prefix_message=lambda p: {"role": "assistant", "content": p, "prefix": True},
    backend={"continuation": "prefix"},
)

ANTHROPIC_PROVIDER = Provider(
    name="anthropic",
    type="anthropic",
    wire=ANTHROPIC,
    chat_path="/v1/messages",
    base_path="",
    key_header="x-api-key",
    key_value="{key}",
    system=lambda b: None if any(m["role"] == "system" for m in b["messages"]) else b.get("system"),
    stop=lambda b: b.get("stop_sequences"),
    max_tokens=lambda b: b.get("max_tokens"),
    sampling=lambda b: {"temperature": b.get("temperature"), "top_p": b.get("top_p")},
    tool_names=lambda b: [t["name"] for t in b.get("tools", [])],
    prefix_message=lambda p: {"role": "assistant", "content": p},
)

OLLAMA_PROVIDER = Provider(
    name="ollama",
    type="ollama",
    wire=OLLAMA,
    chat_path="/api/chat",
    base_path="",
    key_header="authorization",
    key_value="Bearer {key}",
    system=_system_message,
    stop=lambda b: b.get("options", {}).get("stop"),
    max_tokens=lambda b: b.get("options", {}).get("num_predict"),
    sampling=lambda b: {k: b.get("options", {}).get(k) for k in ("temperature", "top_p")},
    tool_names=lambda b: [t["function"]["name"] for t in b.get("tools", [])],
    prefix_message=lambda p: {"role": "assistant", "content": p},
)



def _compatible(name: str, base_path: str, prefix_flag: str | None = None, **backend: Any) -> Provider:
    """An OpenAI-compatible provider: the OpenAI wire at its own path, continuing as its docs say."""
    prefix: Callable[[str], dict[str, Any]] | None = None
    if prefix_flag is not None:
        flag = prefix_flag
        prefix = lambda p: {"role": "assistant", "content": p, flag: True}  # noqa: E731
        backend["continuation"] = flag
    return Provider(
        name=name,
        type="openai",
        wire=OPENAI,
        chat_path=f"{base_path}/chat/completions",
        base_path=base_path,
        key_header="authorization",
        key_value="Bearer {key}",
        system=_system_message,
        stop=lambda b: b.get("stop"),
        max_tokens=lambda b: b.get("max_tokens"),
        sampling=lambda b: {"temperature": b.get("temperature"), "top_p": b.get("top_p")},
        tool_names=lambda b: [t["function"]["name"] for t in b.get("tools", [])],
        prefix_message=prefix,
        backend=backend,
    )


# Continuation as each documents it: DeepSeek's chat prefix completion (beta) marks the trailing
# assistant turn "prefix": true; Kimi's and Model Studio's partial mode mark it "partial": true
# (https://platform.kimi.ai/docs/api/partial, https://www.alibabacloud.com/help/en/model-studio/partial-mode,
# read 2026-12-06). The others document none.
DEEPSEEK_PROVIDER = _compatible("deepseek", "", "prefix", provider="deepseek")
MOONSHOT_PROVIDER = _compatible("moonshot", "/v1", "partial", provider="moonshot")
ZAI_PROVIDER = _compatible("zai", "/api/paas/v4", provider="zhipu")
DASHSCOPE_PROVIDER = _compatible("dashscope", "/compatible-mode/v1", "partial", provider="dashscope")
QIANFAN_PROVIDER = _compatible("qianfan", "/v2", provider="baidu-qianfan")
OPENROUTER_PROVIDER = _compatible("openrouter", "/api/v1", provider="openrouter")

PROVIDERS = [
    OPENAI_PROVIDER, ANTHROPIC_PROVIDER, OLLAMA_PROVIDER, DEEPSEEK_PROVIDER, MOONSHOT_PROVIDER, ZAI_PROVIDER,
    DASHSCOPE_PROVIDER, QIANFAN_PROVIDER, OPENROUTER_PROVIDER,
]
