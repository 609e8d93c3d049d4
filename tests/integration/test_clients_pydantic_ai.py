"""pydantic-ai's agents (pydantic-ai-slim[openai]) against a real gateway, with ``OpenAIChatModel`` and with
``OpenAIResponsesModel``: an agent that calls a tool and answers with a structured type (as a tool call, and as
a JSON schema), run whole and streamed, and the errors it raises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import openai
import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, ModelAPIError, ModelHTTPError, NativeOutput
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.support.live import Live
from tests.support.obliging import KEYS, Json, client_fleet
from tests.support.wait import room_in_this_minute

Model = type[OpenAIChatModel] | type[OpenAIResponsesModel]
MODELS = pytest.mark.parametrize("kind", [OpenAIChatModel, OpenAIResponsesModel], ids=["chat", "responses"])


class City(BaseModel):
    name: str
    weather: str


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[Live, list[Json]]]:
    with client_fleet() as fleet:
        yield fleet


def agent(live: Live, kind: Model, output: Any = City, *, model: str = "main", key: str = "FREE_KEY",
          retries: int = 2, http_client: httpx2.AsyncClient | None = None) -> tuple[Agent[None, Any], list[str]]:
    """An agent with one tool, ``get_weather``; the list records the cities it was asked about."""
    sdk = openai.AsyncOpenAI(base_url=live.base_url, api_key=KEYS[key], max_retries=retries, http_client=http_client)
    provider = OpenAIProvider(openai_client=sdk)
    asked: list[str] = []
    bot: Agent[None, Any] = Agent(kind(model, provider=provider), output_type=output)

    @bot.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return "sunny"

    return bot, asked


@MODELS
@pytest.mark.parametrize("output", ["tool", "native"])
def test_an_agent_calls_its_tool_then_answers_in_its_type(
    fleet: tuple[Live, list[Json]], kind: Model, output: str
) -> None:
    live, seen = fleet
    bot, asked = agent(live, kind, City if output == "tool" else NativeOutput(City))
    result = anyio.run(bot.run, "Weather in Paris?")
    assert result.output == City(name="name", weather="weather")
    assert asked == ["city"]
    assert result.usage.requests == 2 and result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    last = seen[-1]  # the second turn gave the model the tool's result
    assert [m["content"] for m in last["messages"] if m["role"] == "tool"] == ["sunny"]
    if output == "native":
        assert last["response_format"]["json_schema"]["schema"]["required"] == ["name", "weather"]


@MODELS
@pytest.mark.parametrize("output", ["tool", "native"])
def test_a_streamed_run_ends_in_the_object_with_usage(
    fleet: tuple[Live, list[Json]], kind: Model, output: str
) -> None:
    bot, asked = agent(fleet[0], kind, City if output == "tool" else NativeOutput(City))

    async def run() -> tuple[list[City], int]:
        async with bot.run_stream("Weather in Paris?") as stream:
            outputs = [o async for o in stream.stream_output(debounce_by=None)]
            return outputs, stream.usage.output_tokens

    outputs, output_tokens = anyio.run(run)
    assert outputs[-1] == City(name="name", weather="weather") and asked == ["city"]
    assert output_tokens > 0  # the agent asked for streamed usage and got it


@MODELS
def test_streamed_text(fleet: tuple[Live, list[Json]], kind: Model) -> None:
    bot, _ = agent(fleet[0], kind, str)

    async def run() -> str:
        async with bot.run_stream("Weather in Paris?") as stream:
            return "".join([d async for d in stream.stream_text(delta=True, debounce_by=None)])

    assert anyio.run(run) == "You said: Weather in Paris?"


@MODELS
def test_an_unknown_model_is_a_404_asked_once(fleet: tuple[Live, list[Json]], kind: Model) -> None:
    calls: list[int] = []

    async def count(response: httpx2.Response) -> None:
        calls.append(response.status_code)

    counting = httpx2.AsyncClient(event_hooks={"response": [count]})
    bot, _ = agent(fleet[0], kind, str, model="no-such-model", http_client=counting)
    with pytest.raises(ModelHTTPError) as failed:
        anyio.run(bot.run, "x")
    assert failed.value.status_code == 404 and calls == [404]  # the SDK's retries leave a 404 alone
    assert isinstance(failed.value.body, dict) and failed.value.body["code"] == "model_not_found"


def test_a_key_over_its_rate_is_a_429(fleet: tuple[Live, list[Json]]) -> None:
    room_in_this_minute(5)  # the key's one request and its refusals in one minute
    spent = httpx2.post(f"{fleet[0].base_url}/chat/completions", json={"model": "main", "messages": [
        {"role": "user", "content": "one"}]}, headers={"authorization": f"Bearer {KEYS['TIGHT_KEY']}"})
    assert spent.status_code == 200  # (an agent's tool loop would take two requests, the second refused)
    for kind in (OpenAIChatModel, OpenAIResponsesModel):
        bot, _ = agent(fleet[0], kind, str, key="TIGHT_KEY", retries=0)  # else the SDK waits out the minute
        with pytest.raises(ModelHTTPError) as failed:
            anyio.run(bot.run, "two")
        assert failed.value.status_code == 429
        assert isinstance(failed.value.body, dict) and failed.value.body["code"] == "rate_limit_exceeded"


@MODELS
def test_a_cut_stream_raises(fleet: tuple[Live, list[Json]], kind: Model) -> None:
    bot, _ = agent(fleet[0], kind, str, model="cut")

    async def run() -> list[str]:
        async with bot.run_stream("one two three four five") as stream:
            return [d async for d in stream.stream_text(delta=True, debounce_by=None)]

    with pytest.raises(ModelAPIError, match="stream was cut"):
        anyio.run(run)
