"""``include`` through a real gateway and the ``openai`` SDK: logprobs asked of an OpenAI-compatible upstream and
shown on the answer's text (whole and streamed), stored, and shown again by a read only when it asks; the values
about hosted tools accepted; an unknown value a 400 naming it on every route that takes ``include``."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from polyroute.server.responses_include import KNOWN
from tests.support.live import Live, live_gateway
from tests.support.upstreams import FakeUpstream, load

ENV = {"TEST_KEY": "sk-test"}
LOGPROBS = "message.output_text.logprobs"
HOSTED = ["file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
          "code_interpreter_call.outputs", "computer_call_output.output.image_url"]


def token(text: str, logprob: float, *others: tuple[str, float]) -> dict[str, Any]:
    """One token's entry as OpenAI's chat completions give it with ``logprobs: true``."""
    return {"token": text, "logprob": logprob, "bytes": list(text.encode()),
            "top_logprobs": [{"token": t, "logprob": p, "bytes": list(t.encode())} for t, p in others]}


TOKENS = [token("Hello", -0.01, ("Hello", -0.01), ("Hi", -4.6)), token("!", -0.2, ("!", -0.2), (".", -1.8))]


def said(entry: dict[str, Any]) -> dict[str, Any]:
    """A token's entry as the text events carry it (the SDK's type for them has no ``bytes``)."""
    return {"token": entry["token"], "logprob": entry["logprob"],
            "top_logprobs": [{"token": t["token"], "logprob": t["logprob"]} for t in entry["top_logprobs"]]}


def answer_with_logprobs() -> dict[str, Any]:
    doc = load("openai", "completion")
    doc["choices"][0]["message"]["content"] = "Hello!"
    doc["choices"][0]["logprobs"] = {"content": TOKENS, "refusal": None}
    return dict(doc)


def stream_with_logprobs() -> list[dict[str, Any]]:
    """The fixture's stream, its text as two chunks that each carry their token's logprobs."""
    events = load("openai", "stream")
    first, last = events[0], events[-1]
    texts = []
    for text, entry in (("Hello", TOKENS[0]), ("!", TOKENS[1])):
        chunk = copy.deepcopy(first)
        chunk["choices"][0]["delta"] = {"content": text}
        chunk["choices"][0]["logprobs"] = {"content": [entry], "refusal": None}
        texts.append(chunk)
    return [first, *texts, *[e for e in events if e["choices"] and e["choices"][0].get("finish_reason")], last]


@pytest.fixture
def live(first: FakeUpstream) -> Iterator[Live]:
    raw = {"backends": {"up": {"type": "openai", "base_url": first.url + "/v1", "api_key": "env:TEST_KEY"}},
           "models": {"m": {"backend": "up", "upstream": "gpt-4o-mini"}}}
    with live_gateway(raw, env=ENV) as g:
        yield g


def client_of(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)


def logprobs_of(item: Any) -> Any:
    return item.content[0].logprobs


def test_logprobs_are_asked_for_shown_stored_and_read_back_only_when_asked(live: Live, first: FakeUpstream) -> None:
    first.json(answer_with_logprobs())
    client = client_of(live)
    conv = client.conversations.create()
    answer = client.responses.create(model="m", input="hi", include=[LOGPROBS], top_logprobs=2, conversation=conv.id)
    sent = first.received[0].json()
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    [message] = answer.output
    assert message.type == "message" and [e.model_dump() for e in logprobs_of(message)] == TOKENS
    plain = client.conversations.items.list(conv.id).data[0]
    assert plain.type == "message" and logprobs_of(plain) == []
    asked = client.conversations.items.list(conv.id, include=[LOGPROBS]).data[0]
    assert asked.type == "message" and [e.model_dump() for e in logprobs_of(asked)] == TOKENS
    one = client.conversations.items.retrieve(message.id, conversation_id=conv.id, include=[LOGPROBS])
    assert one.type == "message" and len(logprobs_of(one)) == 2
    assert logprobs_of(client.responses.retrieve(answer.id).output[0]) == []
    assert len(logprobs_of(client.responses.retrieve(answer.id, include=[LOGPROBS]).output[0])) == 2


def test_a_stream_carries_each_tokens_logprobs_on_its_delta(live: Live, first: FakeUpstream) -> None:
    first.stream(stream_with_logprobs())
    client = client_of(live)
    events = list(client.responses.create(model="m", input="hi", include=[LOGPROBS], stream=True))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert [d.delta for d in deltas] == ["Hello", "!"]
    assert [[lp.model_dump() for lp in d.logprobs] for d in deltas] == [[said(TOKENS[0])], [said(TOKENS[1])]]
    done = next(e for e in events if e.type == "response.output_text.done")
    assert [lp.model_dump() for lp in done.logprobs] == [said(t) for t in TOKENS]
    completed = events[-1]
    assert completed.type == "response.completed"
    assert [lp.model_dump() for lp in logprobs_of(completed.response.output[0])] == TOKENS
    stored = client.responses.retrieve(completed.response.id, include=[LOGPROBS])
    assert len(logprobs_of(stored.output[0])) == 2


def test_without_include_no_logprobs_are_asked_for(live: Live, first: FakeUpstream) -> None:
    first.json(load("openai", "completion"))
    answer = client_of(live).responses.create(model="m", input="hi", include=HOSTED)
    assert "logprobs" not in first.received[0].json() and "top_logprobs" not in first.received[0].json()
    assert answer.output_text == "Hello! How can I help you today?"


def test_values_about_hosted_tools_are_accepted_and_change_nothing(live: Live) -> None:
    client = client_of(live)
    image = {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"}
    conv = client.conversations.create(items=[{"role": "user", "content": [
        {"type": "input_text", "text": "what is this"}, image]}])  # type: ignore[list-item]
    for include in (HOSTED, [], ["message.input_image.image_url"]):
        [item] = client.conversations.items.list(conv.id, include=include).data  # type: ignore[arg-type]
        assert item.type == "message" and item.content[1].model_dump(exclude_none=True) == image
    added = client.conversations.items.create(conv.id, items=[{"role": "user", "content": "more"}],
                                              include=list(KNOWN))  # type: ignore[arg-type]
    assert added.data[0].type == "message"
    read = client.conversations.items.retrieve(added.data[0].id, conversation_id=conv.id,
                                               include=list(KNOWN))  # type: ignore[arg-type]
    assert read.id == added.data[0].id


def test_an_unknown_value_is_a_400_naming_it_on_every_route(live: Live, first: FakeUpstream) -> None:
    first.json(load("openai", "completion"))
    client = client_of(live)
    conv = client.conversations.create(items=[{"role": "user", "content": "hi"}])
    [item] = client.conversations.items.list(conv.id).data
    answer = client.responses.create(model="m", input="hi")
    bad: Any = ["reasoning.encrypted_content", "message.output_text.everything"]
    for attempt in (lambda: client.conversations.items.list(conv.id, include=bad),
                    lambda: client.conversations.items.retrieve(item.id, conversation_id=conv.id, include=bad),
                    lambda: client.conversations.items.create(conv.id, items=[{"role": "user", "content": "x"}],
                                                              include=bad),
                    lambda: client.responses.create(model="m", input="hi", include=bad),
                    lambda: client.responses.retrieve(answer.id, include=bad),
                    lambda: client.responses.input_items.list(answer.id, include=bad)):
        with pytest.raises(openai.BadRequestError) as caught:
            attempt()
        assert (caught.value.param, caught.value.code) == ("include[1]", "invalid_value")
        assert "message.output_text.everything" in caught.value.message
    assert len(client.conversations.items.list(conv.id).data) == 1, "a refused include adds nothing"
    assert len(first.received) == 1, "a refused include sends nothing upstream"
    r = httpx.post(f"{live.base_url}/responses", json={"model": "m", "input": "hi", "include": "logprobs"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "include"
    r = httpx.post(f"{live.base_url}/responses", json={"model": "m", "input": "hi", "top_logprobs": 21})
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_logprobs"


def test_an_agent_asking_for_top_logprobs_goes_on_through_a_conversation(live: Live, first: FakeUpstream) -> None:
    """The Agents SDK builds ``include`` from its settings (``top_logprobs`` adds the logprobs value)."""
    agents = pytest.importorskip("agents", reason="openai-agents is not installed (pip install 'polyroute[test]')")
    first.json(answer_with_logprobs())

    async def scenario() -> Any:
        client = openai.AsyncOpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
        conv = await client.conversations.create()
        agent = agents.Agent(name="a", model=agents.OpenAIResponsesModel(model="m", openai_client=client),
                             model_settings=agents.ModelSettings(top_logprobs=2))
        result = await agents.Runner.run(agent, "hi", conversation_id=conv.id,
                                         run_config=agents.RunConfig(tracing_disabled=True))
        held = [item async for item in client.conversations.items.list(conv.id, order="asc")]
        await client.close()
        return result, held
    result, held = asyncio.run(scenario())
    assert result.final_output == "Hello!"
    assert first.received[0].json()["top_logprobs"] == 2 and first.received[0].json()["logprobs"] is True
    [answer] = result.raw_responses
    assert len(logprobs_of(answer.output[0])) == 2
    assert [item.type for item in held] == ["message", "message"]
