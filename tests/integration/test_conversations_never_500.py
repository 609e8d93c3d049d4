"""Whatever a client sends to the Conversations API, or as a Responses request's ``conversation``, the answer is
a success or an OpenAI-shaped 4xx: never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyroute.server.responses_include import KNOWN
from tests.integration.test_never_500 import check, json_values
from tests.support.live import Live, live_gateway

items = st.lists(st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning", "item_reference"])
    | json_values,
    "role": st.sampled_from(["user", "assistant", "developer"]) | json_values,
    "content": json_values | st.text(max_size=20), "id": json_values | st.text(max_size=10),
    "call_id": json_values, "name": json_values, "arguments": json_values, "output": json_values,
    "summary": json_values, "encrypted_content": json_values}), max_size=4) | json_values
bodies = st.fixed_dictionaries({}, optional={"items": items, "metadata": json_values})
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    db = tmp_path_factory.mktemp("never500") / "store.db"
    raw = {"backends": {"f": {"type": "fake"}}, "models": {"echo": {"backend": "f"}},
           "store": {"url": f"sqlite:///{db}", "flush_interval": 0.05, "ledger_writer": "thread"}}
    with live_gateway(raw) as g:
        yield g


@pytest.fixture(scope="module")
def conversation(live: Live) -> str:
    made = httpx.post(f"{live.base_url}/conversations", json={"items": [{"role": "user", "content": "hi"}]})
    assert made.status_code == 200
    return str(made.json()["id"])


@SETTINGS
@given(body=bodies)
def test_made_or_added_never_500(live: Live, conversation: str, body: dict[str, Any]) -> None:
    with httpx.Client(timeout=10) as client:
        check(client.post(f"{live.base_url}/conversations", content=json.dumps(body)))
        check(client.post(f"{live.base_url}/conversations/{conversation}/items", content=json.dumps(body)))
        check(client.post(f"{live.base_url}/conversations/{conversation}", content=json.dumps(body)))


@SETTINGS
@given(value=json_values | st.just("CONV") | st.just({"id": "CONV"}), given_input=items | st.text(max_size=10),
       include=st.none() | json_values | st.lists(st.sampled_from([*KNOWN, "x"]) | json_values, max_size=3),
       metadata=st.none() | json_values)
def test_a_turn_never_500(live: Live, conversation: str, value: Any, given_input: Any, include: Any,
                          metadata: Any) -> None:
    value = conversation if value == "CONV" else {"id": conversation} if value == {"id": "CONV"} else value
    body = {"model": "echo", "input": given_input, "conversation": value, "include": include, "metadata": metadata}
    with httpx.Client(timeout=10) as client:
        check(client.post(f"{live.base_url}/responses", content=json.dumps(body)))


@SETTINGS
@given(params=st.dictionaries(st.sampled_from(["after", "limit", "order", "include", "include[]"]),
                              st.text(max_size=8), max_size=4),
       tail=st.sampled_from(["", "/items", "/items/msg_x", "/nope", "/items/a/b"]))
def test_reads_never_500(live: Live, conversation: str, params: dict[str, str], tail: str) -> None:
    with httpx.Client(timeout=10) as client:
        for method in ("GET", "DELETE"):
            if method == "DELETE" and tail in ("", "/items"):
                continue  # deleting the conversation would end the other cases' fixture
            check(client.request(method, f"{live.base_url}/conversations/{conversation}{tail}", params=params))
