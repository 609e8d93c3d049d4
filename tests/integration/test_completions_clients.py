"""Text completions with LangChain's ``OpenAI`` LLM class (``langchain-openai``), whole and streamed, through a live
gateway: it sends a list of one prompt and its own defaults for every sampling field."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_openai import OpenAI
from pydantic import SecretStr

from tests.support.live import Live, live_gateway
from tests.support.upstreams import FakeUpstream, load

DOCUMENTED = "\n\nThis is indeed a test"


@pytest.fixture
def live(first: FakeUpstream) -> Iterator[Live]:
    raw = {"backends": {"a": {"type": "openai", "base_url": first.url}, "f": {"type": "fake"}},
           "models": {"instruct": {"backend": "a", "upstream": "gpt-3.5-turbo-instruct"},
                      "echo": {"backend": "f"}}}
    with live_gateway(raw) as g:
        yield g


def llm(live: Live, model: str) -> OpenAI:
    return OpenAI(base_url=live.base_url, api_key=SecretStr("unused"), model=model, max_retries=0, max_tokens=16)


def test_langchain_invokes_and_its_defaults_reach_the_upstream(live: Live, first: FakeUpstream) -> None:
    first.json(load("openai", "text_completion"))
    assert llm(live, "instruct").invoke("Say this is a test") == DOCUMENTED
    body = first.received[0].json()
    assert body["prompt"] == ["Say this is a test"] and body["model"] == "gpt-3.5-turbo-instruct"


def test_langchain_streams(live: Live, first: FakeUpstream) -> None:
    first.stream(load("openai", "text_completion_stream"))
    assert "".join(llm(live, "instruct").stream("Say this is a test")) == DOCUMENTED


def test_langchain_against_the_fake_backend(live: Live) -> None:
    assert llm(live, "echo").invoke("hello there") == "You said: hello there"
