"""Two gateways sharing a PostgreSQL store share its conversations: one begun through one replica goes on through
the other (an item added through one is named by an ``item_reference`` through the other), and stays its key's
alone. Skipped when there is no server at 127.0.0.1:5432."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.live import live_gateway

ENV = {"A_KEY": "sk-a-0123456789abcdef", "B_KEY": "sk-b-0123456789abcdef"}


def config(url: str, spool: Path) -> dict[str, Any]:
    return {
        "backends": {"f": {"type": "fake"}},
        "models": {"echo": {"backend": "f"}},
        "keys": {"a": {"secret": "env:A_KEY"}, "b": {"secret": "env:B_KEY"}},
        "store": {"url": url, "flush_interval": 0.05, "ledger_writer": "thread", "spool": str(spool)},
    }


def test_replicas_sharing_postgresql_share_the_conversation(tmp_path: Path) -> None:
    from tests.support.postgres import database, shared_or_skip

    shared_or_skip()
    with (database() as url, live_gateway(config(url, tmp_path / "one.jsonl"), env=ENV) as first,
          live_gateway(config(url, tmp_path / "two.jsonl"), env=ENV) as second):
        a1 = openai.OpenAI(base_url=first.base_url, api_key=ENV["A_KEY"], max_retries=0)
        a2 = openai.OpenAI(base_url=second.base_url, api_key=ENV["A_KEY"], max_retries=0)
        b2 = openai.OpenAI(base_url=second.base_url, api_key=ENV["B_KEY"], max_retries=0)
        conv = a1.conversations.create(metadata={"where": "one"})
        a1.responses.create(model="echo", input="begun on one", conversation=conv.id)
        went_on = a2.responses.create(model="echo", input="went on", conversation=conv.id)
        assert went_on.usage is not None and went_on.usage.input_tokens == (3 + 3) + (5 + 3) + (2 + 3)
        listed = a2.conversations.items.list(conv.id, order="asc")
        assert [item.type for item in listed.data] == ["message"] * 4 and listed.has_more is False
        with pytest.raises(openai.NotFoundError):
            b2.conversations.retrieve(conv.id)
        with pytest.raises(openai.NotFoundError):
            b2.responses.create(model="echo", input="x", conversation=conv.id)
        [added] = a1.conversations.items.create(conv.id, items=[{"role": "user", "content": "added on one"}]).data
        reference: Any = [{"type": "item_reference", "id": added.id}]
        named = a2.responses.create(model="echo", input=reference)
        assert named.output_text == "You said: added on one"
        with pytest.raises(openai.BadRequestError) as caught:
            b2.responses.create(model="echo", input=reference)
        assert caught.value.param == "input[0].id"
        a2.conversations.delete(conv.id)
        with pytest.raises(openai.NotFoundError):
            a1.conversations.retrieve(conv.id)
