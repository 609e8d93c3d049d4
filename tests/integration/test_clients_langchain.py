"""LangChain's ``ChatOpenAI`` (langchain-openai) against a real gateway, on Chat Completions and on the
Responses API (``use_responses_api=True``): whole answers, streams and their usage, tools called one at a time
and in parallel, a tool loop, structured output, and the errors a caller must be able to tell apart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.support.live import Live
from tests.support.obliging import KEYS, Json, client_fleet
from tests.support.wait import room_in_this_minute

APIS = pytest.mark.parametrize("responses", [False, True], ids=["chat", "responses"])


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def get_time(zone: str) -> str:
    """The time in a time zone."""
    return f"noon in {zone}"


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[Live, list[Json]]]:
    with client_fleet() as fleet:
        yield fleet


def chat(fleet: tuple[Live, list[Json]], responses: bool, **options: Any) -> ChatOpenAI:
    options = {"model": "main", "api_key": KEYS["FREE_KEY"], "max_retries": 0, **options}
    return ChatOpenAI(base_url=fleet[0].base_url, use_responses_api=responses, **options)


def joined(chunks: Iterator[BaseMessage]) -> AIMessageChunk:
    parts = [c for c in chunks if isinstance(c, AIMessageChunk)]
    whole = parts[0]
    for part in parts[1:]:
        whole = whole + part
    return whole


def text(message: BaseMessage) -> str:
    return str(message.text)


@APIS
def test_a_whole_answer_with_its_usage_and_who_answered(fleet: tuple[Live, list[Json]], responses: bool) -> None:
    answer = chat(fleet, responses).invoke("hello there")
    assert isinstance(answer, AIMessage) and text(answer) == "You said: hello there"
    assert answer.usage_metadata is not None and answer.usage_metadata["total_tokens"] > 0
    assert answer.response_metadata["model_name"] == "smart"  # the model the route chose, not the route


@APIS
def test_a_stream_joins_to_the_answer_and_its_usage(fleet: tuple[Live, list[Json]], responses: bool) -> None:
    whole = joined(chat(fleet, responses, stream_usage=True).stream("stream me please"))
    assert text(whole) == "You said: stream me please"
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["output_tokens"] == 5 and whole.usage_metadata["input_tokens"] > 0


def test_without_stream_usage_a_chat_stream_asks_for_no_usage(fleet: tuple[Live, list[Json]]) -> None:
    """LangChain asks for streamed usage by itself only from api.openai.com: with any other base URL it sends no
    ``stream_options`` unless told, so a caller of the gateway passes ``stream_usage=True`` (the README says so)."""
    whole = joined(chat(fleet, False).stream("no usage"))
    assert text(whole) == "You said: no usage" and whole.usage_metadata is None


@APIS
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_parallel_tool_calls_then_the_loop_ends_in_text(
    fleet: tuple[Live, list[Json]], responses: bool, streamed: bool
) -> None:
    model = chat(fleet, responses).bind_tools([get_weather, get_time])
    messages: list[BaseMessage] = [HumanMessage("weather and time, in parallel")]
    first = joined(model.stream(messages)) if streamed else model.invoke(messages)
    assert isinstance(first, AIMessage) and not first.invalid_tool_calls
    assert [(c["name"], c["args"]) for c in first.tool_calls] == [
        ("get_weather", {"city": "city"}), ("get_time", {"zone": "zone"})]
    assert len({c["id"] for c in first.tool_calls}) == 2
    results = [ToolMessage(get_weather.invoke(c["args"]) if c["name"] == "get_weather" else get_time.invoke(c["args"]),
                           tool_call_id=c["id"]) for c in first.tool_calls]
    last = model.invoke([*messages, first, *results])
    assert not last.tool_calls and text(last) == "You said: weather and time, in parallel"
    sent = fleet[1][-1]["messages"]  # the tool results reached the upstream, each with its call's id
    assert [(m["tool_call_id"], m["content"]) for m in sent if m["role"] == "tool"] == [
        (c["id"], r.content) for c, r in zip(first.tool_calls, results, strict=True)]


@APIS
@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output(fleet: tuple[Live, list[Json]], responses: bool, method: str) -> None:
    person = chat(fleet, responses).with_structured_output(Person, method=method).invoke("Ada, 36")  # type: ignore[arg-type]
    assert person == Person(name="name", age=1)
    sent = fleet[1][-1]
    if method == "json_schema":
        assert sent["response_format"]["type"] == "json_schema"
    else:
        assert sent["tool_choice"]["function"]["name"] == "Person"


# langchain-openai streams into the SDK's ChatCompletion, whose ``parsed`` is typed None: pydantic warns.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_a_structured_stream_ends_in_the_object(fleet: tuple[Live, list[Json]]) -> None:
    parts = list(chat(fleet, False).with_structured_output(Person, method="json_schema").stream("Ada"))
    assert parts[-1] == Person(name="name", age=1)


def counting(calls: list[int]) -> httpx.Client:
    return httpx.Client(event_hooks={"response": [lambda r: calls.append(r.status_code)]})


@APIS
def test_an_unknown_model_is_a_404_asked_once(fleet: tuple[Live, list[Json]], responses: bool) -> None:
    calls: list[int] = []
    model = chat(fleet, responses, model="no-such-model", max_retries=2, http_client=counting(calls))
    with pytest.raises(openai.NotFoundError) as failed:
        model.invoke("x")
    assert calls == [404]  # a 4xx the client cannot mend is not retried
    assert "no-such-model" in failed.value.message


def test_a_key_over_its_rate_is_a_429_with_its_wait(fleet: tuple[Live, list[Json]]) -> None:
    room_in_this_minute(5)  # the key's one request and its refusals in one minute
    assert text(chat(fleet, False, api_key=KEYS["TIGHT_KEY"]).invoke("one")) == "You said: one"
    for responses in (False, True):
        with pytest.raises(openai.RateLimitError) as failed:
            chat(fleet, responses, api_key=KEYS["TIGHT_KEY"]).invoke("two")
        headers = failed.value.response.headers
        assert failed.value.code == "rate_limit_exceeded"
        assert float(headers["retry-after-ms"]) > 0 and int(headers["retry-after"]) >= 1


def test_a_cut_stream_raises_after_the_text_that_came(fleet: tuple[Live, list[Json]]) -> None:
    pieces: list[str] = []
    with pytest.raises(openai.APIError, match="stream was cut"):
        for chunk in chat(fleet, False, model="cut").stream("one two three four five"):
            pieces.append(text(chunk))
    assert "".join(pieces) == "You said:"


def test_a_cut_responses_stream_raises(fleet: tuple[Live, list[Json]]) -> None:
    """On the Responses API LangChain turns the stream's ``error`` event into a ``ValueError`` carrying its code."""
    with pytest.raises(ValueError, match="stream_cut"):
        list(chat(fleet, True, model="cut").stream("one two three four five"))
