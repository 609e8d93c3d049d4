"""What a Messages request's thinking becomes when every candidate is a thinking Claude (``to_claude``) and when
not: the client's own ``thinking`` for Claude, an effort for the others."""

from __future__ import annotations

from typing import Any

import pytest

from polyroute.errors import InvalidRequest
from polyroute.server.messages_request import effort_of_budget, to_chat

BUDGET = {"type": "enabled", "budget_tokens": 12345}


def chat(to_claude: bool, **fields: Any) -> dict[str, Any]:
    return to_chat({"model": "m", "max_tokens": 20000, "messages": [{"role": "user", "content": "hi"}], **fields},
                   to_claude=to_claude)


@pytest.mark.parametrize("thinking", [BUDGET, {"type": "enabled", "budget_tokens": 2048, "display": "omitted"}])
def test_claude_gets_the_budget_as_written(thinking: dict[str, Any]) -> None:
    out = chat(True, thinking=thinking, metadata={"user_id": "u-1"}, output_config={"effort": "low"})
    assert out["thinking"] == thinking and "reasoning_effort" not in out
    assert out["metadata"] == {"user_id": "u-1"} and out["user"] == "u-1"


@pytest.mark.parametrize("kind", ["disabled", "adaptive"])
def test_thinking_without_a_budget_is_left_to_the_model_as_elsewhere(kind: str) -> None:
    # Adaptive thinking is a 400 before Claude 4.6, turning it off a 400 on the Claudes that always think.
    assert chat(True, thinking={"type": kind}) == chat(False, thinking={"type": kind})
    assert not {"thinking", "reasoning_effort"} & chat(True, thinking={"type": kind}).keys()


def test_adaptive_thinking_at_an_effort_is_the_effort_the_adapter_sends_as_both() -> None:
    out = chat(True, thinking={"type": "adaptive"}, output_config={"effort": "low"})
    assert out["reasoning_effort"] == "low" and "thinking" not in out


def test_elsewhere_thinking_is_an_effort_and_metadata_the_user() -> None:
    out = chat(False, thinking=BUDGET, metadata={"user_id": "u-1"})
    assert out["reasoning_effort"] == effort_of_budget(12345) == "medium"
    assert "thinking" not in out and "metadata" not in out and out["user"] == "u-1"


@pytest.mark.parametrize(("budget", "effort"), [(1, "low"), (4095, "low"), (4096, "medium"), (16383, "medium"),
                                                (16384, "high"), (10**6, "high")])
def test_the_buckets_boundaries(budget: int, effort: str) -> None:
    assert effort_of_budget(budget) == effort


def test_a_bad_thinking_is_refused_even_for_claude() -> None:
    with pytest.raises(InvalidRequest) as caught:
        chat(True, thinking={"type": "enabled"}, output_config={"effort": "high"})
    assert caught.value.param == "thinking.budget_tokens"
