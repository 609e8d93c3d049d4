"""The OpenAI Agents SDK keeping an agent's memory in the gateway's conversations: ``OpenAIConversationsSession``
(the history read from and added to ``/v1/conversations``), and ``conversation_id`` (each turn answered with
``conversation``). Offline: the agent's model is the gateway's fake backend, and tracing is off."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest

from tests.support.live import Live, live_gateway

agents = pytest.importorskip("agents", reason="openai-agents is not installed (pip install 'polyroute[test]')")

KEY = "sk-a-0123456789abcdef"


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    raw = {"backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}},
           "keys": {"a": {"secret": "env:A_KEY"}}}
    with live_gateway(raw, env={"A_KEY": KEY}) as g:
        yield g


def agent_on(client: openai.AsyncOpenAI) -> agents.Agent[None]:
    return agents.Agent(name="echo", instructions="Repeat.",
                        model=agents.OpenAIResponsesModel(model="echo", openai_client=client))


def texts(items: list[dict[str, object]]) -> list[str]:
    out = []
    for item in items:
        content = item.get("content")
        assert isinstance(content, list)
        out.append("".join(str(part.get("text", "")) for part in content))
    return out


def test_an_agent_remembers_through_a_conversations_session(live: Live) -> None:
    async def scenario() -> None:
        client = openai.AsyncOpenAI(base_url=live.base_url, api_key=KEY, max_retries=0)
        session = agents.OpenAIConversationsSession(openai_client=client)
        agent, quiet = agent_on(client), agents.RunConfig(tracing_disabled=True)
        first = await agents.Runner.run(agent, "my name is Ann", session=session, run_config=quiet)
        assert first.final_output == "You said: my name is Ann"
        second = await agents.Runner.run(agent, "what is my name", session=session, run_config=quiet)
        assert second.final_output == "You said: what is my name"
        held = await session.get_items()
        assert texts(held) == ["my name is Ann", "You said: my name is Ann", "what is my name",
                               "You said: what is my name"]
        # The history was sent with the second turn: the instructions, and each of the four messages.
        [answer] = second.raw_responses
        assert answer.usage.input_tokens == sum(len(t.split()) + 3 for t in ["Repeat.", *texts(held)[:3]])
        assert session.session_id.startswith("conv_")
        popped = await session.pop_item()
        assert popped is not None and texts([popped]) == ["You said: what is my name"]
        await session.clear_session()
        await client.close()
    asyncio.run(scenario())


def test_an_agent_goes_on_with_conversation_id(live: Live) -> None:
    async def scenario() -> None:
        client = openai.AsyncOpenAI(base_url=live.base_url, api_key=KEY, max_retries=0)
        conv = await client.conversations.create()
        agent, quiet = agent_on(client), agents.RunConfig(tracing_disabled=True)
        await agents.Runner.run(agent, "my name is Ann", conversation_id=conv.id, run_config=quiet)
        second = await agents.Runner.run(agent, "what is my name", conversation_id=conv.id, run_config=quiet)
        assert second.final_output == "You said: what is my name"
        listed = [item async for item in client.conversations.items.list(conv.id, order="asc")]
        assert [item.type for item in listed] == ["message"] * 4
        await client.close()
    asyncio.run(scenario())
