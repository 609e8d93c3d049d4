"""Items of every type the gateway takes, through a real gateway and the ``openai`` SDK: each added item is listed
and read back as it was sent, with the fields OpenAI's items always have (ids, ``status``, an ``output_text``'s
``annotations``, an ``input_image``'s ``detail``, a reasoning item's ``summary``), parses as the SDK's own type,
and can be sent again as a response's input, as an agent's session sends its history. ``metadata`` keeps OpenAI's
limits on a response as on a conversation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.conversations import Message
from openai.types.responses import (
    ResponseFunctionToolCallItem,
    ResponseFunctionToolCallOutputItem,
    ResponseReasoningItem,
)

from tests.support.live import Live, live_gateway

KEY = "sk-a-0123456789abcdef"
IMAGE = "data:image/png;base64,iVBORw0KGgo="

# What a client sends, and what it reads back besides an id: (sent, read).
ROUND_TRIPS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"role": "user", "content": "plain"},
     {"type": "message", "role": "user", "status": "completed", "content": [{"type": "input_text", "text": "plain"}]}),
    ({"type": "message", "role": "system", "content": "rules"},
     {"type": "message", "role": "system", "status": "completed",
      "content": [{"type": "input_text", "text": "rules"}]}),
    ({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
     {"type": "message", "role": "developer", "status": "completed",
      "content": [{"type": "input_text", "text": "be brief"}]}),
    ({"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "look"}, {"type": "input_image", "image_url": IMAGE},
        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "high"}]},
     {"type": "message", "role": "user", "status": "completed", "content": [
         {"type": "input_text", "text": "look"}, {"type": "input_image", "image_url": IMAGE, "detail": "auto"},
         {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "high"}]}),
    ({"role": "assistant", "content": "said"},
     {"type": "message", "role": "assistant", "status": "completed",
      "content": [{"type": "output_text", "text": "said", "annotations": []}]}),
    ({"type": "message", "role": "assistant", "status": "completed", "content": [
        {"type": "output_text", "text": "part"}, {"type": "refusal", "refusal": "not that"}]},
     {"type": "message", "role": "assistant", "status": "completed", "content": [
         {"type": "output_text", "text": "part", "annotations": []}, {"type": "refusal", "refusal": "not that"}]}),
    ({"type": "reasoning", "summary": [{"type": "summary_text", "text": "why"}],
      "content": [{"type": "reasoning_text", "text": "because"}]},
     {"type": "reasoning", "summary": [{"type": "summary_text", "text": "why"}],
      "content": [{"type": "reasoning_text", "text": "because"}]}),
    ({"type": "reasoning", "content": [{"type": "reasoning_text", "text": "bare"}]},
     {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "bare"}]}),
    ({"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
     {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}",
      "status": "completed"}),
    ({"type": "function_call_output", "call_id": "call_1", "output": "18C"},
     {"type": "function_call_output", "call_id": "call_1", "output": "18C", "status": "completed"}),
    ({"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "18C"}]},
     {"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "18C"}],
      "status": "completed"}),
]
SDK_TYPES = {"message": Message, "reasoning": ResponseReasoningItem, "function_call": ResponseFunctionToolCallItem,
             "function_call_output": ResponseFunctionToolCallOutputItem}


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    raw = {"backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}},
           "keys": {"a": {"secret": "env:A_KEY"}}}
    with live_gateway(raw, env={"A_KEY": KEY}) as g:
        yield g


@pytest.fixture
def client(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=KEY, max_retries=0)


def without_id(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "id"}


def test_every_item_type_round_trips(client: openai.OpenAI, live: Live) -> None:
    sent: Any = [item for item, _ in ROUND_TRIPS]
    conv = client.conversations.create(items=sent[:10])
    added = client.conversations.items.create(conv.id, items=sent[10:])
    raw = httpx.get(f"{live.base_url}/conversations/{conv.id}/items", params={"order": "asc"},
                    headers={"authorization": f"Bearer {KEY}"}).json()["data"]
    assert [without_id(item) for item in raw] == [read for _, read in ROUND_TRIPS]
    assert raw[-1]["id"] == added.data[0].id
    for item in client.conversations.items.list(conv.id, order="asc", limit=100):
        assert isinstance(item, SDK_TYPES[item.type]), item
        again = client.conversations.items.retrieve(item.id, conversation_id=conv.id)
        assert again.model_dump(exclude_none=True) == item.model_dump(exclude_none=True)


def test_listed_items_go_back_as_input(client: openai.OpenAI) -> None:
    """What an agent's session does: read the history as the SDK parsed it, and send it as the next input."""
    sent: Any = [item for item, _ in ROUND_TRIPS]
    conv = client.conversations.create(items=sent[:10])
    history = [item.model_dump(exclude_unset=True) for item in client.conversations.items.list(conv.id, order="asc")]
    answer = client.responses.create(model="echo", input=[*history, {"role": "user", "content": "and now"}])
    assert answer.output_text == "You said: and now"


@pytest.mark.parametrize(("metadata", "param", "code"), [
    ({f"k{n}": "v" for n in range(17)}, "metadata", "object_above_max_properties"),
    ({"k" * 65: "v"}, "metadata", "string_above_max_length"),
    ({"k": "v" * 513}, "metadata.k", "string_above_max_length"),
    ({"k": 1}, "metadata.k", "invalid_request"),
    ("tags", "metadata", "invalid_request"),
])
def test_a_responses_metadata_keeps_openais_limits(
        client: openai.OpenAI, metadata: Any, param: str, code: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="echo", input="hi", metadata=metadata)
    assert (caught.value.param, caught.value.code) == (param, code)
    widest = {f"{n:02d}" + "k" * 62: "v" * 512 for n in range(16)}
    assert client.responses.create(model="echo", input="hi", metadata=widest).metadata == widest
    conv = client.conversations.create(metadata=widest)
    assert client.conversations.update(conv.id, metadata={"k" * 64: "v" * 512}).metadata == {"k" * 64: "v" * 512}
