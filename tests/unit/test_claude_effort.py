"""OpenAI's reasoning_effort as each Claude model is asked to think: adaptive with an effort level, a budget on top
of the answer's room, or dropped and named where the model does not think; the client's own thinking wins, and
what Claude refuses while it thinks is not sent."""

from __future__ import annotations

from typing import Any

import pytest

from polyroute.adapters import build_adapter
from polyroute.adapters.anthropic import AnthropicAdapter
from polyroute.adapters.base import Call
from polyroute.adapters.error_body import refusal_of
from polyroute.errors import UpstreamParamRefused
from polyroute.types import ChatRequest
from tests.conformance.providers import ANTHROPIC_PROVIDER

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def adapter() -> AnthropicAdapter:
    built = build_adapter("claude", ANTHROPIC_PROVIDER.config("http://127.0.0.1:9"))  # type: ignore[arg-type]
    assert isinstance(built, AnthropicAdapter)
    return built


def sent(model: str, drop: frozenset[str] = frozenset(), **fields: Any) -> dict[str, Any]:
    raw = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return adapter().payload(Call(ChatRequest.from_json(raw), model, drop), False)


def refused(model: str, **fields: Any) -> UpstreamParamRefused:
    with pytest.raises(UpstreamParamRefused) as raised:
        sent(model, **fields)
    assert raised.value.may_fall_over
    return raised.value


@pytest.mark.parametrize(("model", "asked", "effort"), [
    # 5.x: adaptive only, all five levels.
    ("claude-opus-5-5", "high", "high"), ("claude-sonnet-5-5", "xhigh", "xhigh"), ("claude-haiku-5-5", "low", "low"),
    ("claude-fable-5-1", "minimal", "low"), ("claude-sonnet-5", "medium", "medium"),
    # Opus and Sonnet 4.6: adaptive with effort, max but no xhigh (the nearest level below is asked).
    ("claude-opus-4-6", "xhigh", "high"), ("claude-sonnet-4-6-20260217", "max", "max"),
    ("claude-opus-4-7", "xhigh", "xhigh"),
])
def test_adaptive_models_are_asked_adaptive_thinking_at_a_level_they_have(model: str, asked: str, effort: str) -> None:
    body = sent(model, reasoning_effort=asked, max_tokens=1000)
    assert body["thinking"]["type"] == "adaptive"
    assert body["output_config"] == {"effort": effort}
    assert body["max_tokens"] == 1000  # adaptive thinking shares max_tokens with the answer, as the client set it
    assert "reasoning_effort" not in body


@pytest.mark.parametrize(("model", "asked", "budget", "max_tokens"), [
    ("claude-sonnet-4-5-20250929", "low", 4000, 5000),
    ("claude-sonnet-4-5", "medium", 10000, 11000),
    ("claude-haiku-4-5-20251001", "high", 31999, 32999),
    ("claude-3-7-sonnet-20250219", "minimal", 1024, 2024),
    # The model's ceiling (64K; 32K for Opus 4.1) bounds what is added.
    ("claude-sonnet-4-5", "xhigh", 63000, 64000),
    ("claude-opus-4-1-20250805", "high", 31000, 32000),
])
def test_budget_models_get_a_budget_on_top_of_the_answer(model: str, asked: str, budget: int, max_tokens: int) -> None:
    body = sent(model, reasoning_effort=asked, max_tokens=1000)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == max_tokens and budget < max_tokens
    assert "output_config" not in body


def test_a_budget_without_max_tokens_leaves_the_default_answer_room() -> None:
    body = sent("claude-sonnet-4-5", reasoning_effort="low")
    assert body["max_tokens"] == 4096 + 4000


def test_an_answer_at_the_ceiling_still_gets_the_least_budget_below_max_tokens() -> None:
    body = sent("claude-sonnet-4-5", reasoning_effort="high", max_tokens=64000)
    assert body["thinking"]["budget_tokens"] == 1024 and body["max_tokens"] == 64000


@pytest.mark.parametrize("model", ["claude-3-5-haiku-20241022", "claude-3-5-sonnet-20241022", "claude-3-opus-latest",
                                   "some-relay-model"])
def test_a_model_without_thinking_has_reasoning_effort_dropped_and_remembered(model: str) -> None:
    err = refused(model, reasoning_effort="high")
    assert err.param == "reasoning_effort" and err.always
    body = sent(model, frozenset({"reasoning_effort"}), reasoning_effort="high")  # what the walk sends next
    assert "thinking" not in body and "output_config" not in body


@pytest.mark.parametrize(("model", "thinking"), [
    ("claude-sonnet-4-5", None), ("claude-opus-4-6", None), ("claude-opus-4-7", None), ("claude-sonnet-5", None),
    ("claude-opus-5", {"type": "disabled"}), ("claude-haiku-5-5", {"type": "disabled"}),
    ("claude-sonnet-5-5", {"type": "between_tools"}),
    # Cannot turn it off: nothing changes.
    ("claude-opus-5-5", None), ("claude-fable-5", None),
    # No thinking to turn off: nothing sent, nothing dropped.
    ("claude-3-5-haiku-20241022", None),
])
def test_none_turns_thinking_off_where_it_is_on(model: str, thinking: dict[str, Any] | None) -> None:
    body = sent(model, reasoning_effort="none")
    assert body.get("thinking") == thinking and "output_config" not in body


def test_the_clients_own_thinking_wins() -> None:
    own = {"type": "enabled", "budget_tokens": 2048}
    body = sent("claude-sonnet-4-5", reasoning_effort="high", thinking=own, max_tokens=4000)
    assert body["thinking"] == own and body["max_tokens"] == 4000 and "output_config" not in body
    body = sent("claude-opus-4-6", reasoning_effort="low", thinking={"type": "disabled"})
    assert body["thinking"] == {"type": "disabled"} and "output_config" not in body


def test_a_budget_goes_adaptive_from_claude_4_7_on() -> None:
    """A budget is a 400 from Claude 4.7 on (the extended thinking page): the client's own budget too."""
    for model in ("claude-opus-4-7", "claude-opus-4-8", "claude-opus-5", "claude-fable-5"):
        assert sent(model, thinking={"type": "enabled", "budget_tokens": 2048})["thinking"] == {"type": "adaptive"}


@pytest.mark.parametrize(("fields", "param"), [
    ({"temperature": 0.2}, "temperature"), ({"top_k": 5}, "top_k"), ({"top_p": 0.5}, "top_p"),
])
def test_samplers_claude_refuses_while_it_thinks_are_dropped_and_named(fields: dict[str, Any], param: str) -> None:
    err = refused("claude-sonnet-4-5", reasoning_effort="medium", **fields)
    assert err.param == param and not err.always
    body = sent("claude-sonnet-4-5", frozenset({param}), reasoning_effort="medium", **fields)
    assert param not in body and body["thinking"]["type"] == "enabled"


def test_samplers_thinking_takes_are_kept() -> None:
    body = sent("claude-sonnet-4-5", reasoning_effort="low", temperature=1, top_p=0.97)
    assert body["temperature"] == 1 and body["top_p"] == 0.97
    assert sent("claude-sonnet-4-5", temperature=0.2, top_k=5)["temperature"] == 0.2  # no thinking: all sent


def test_a_forced_tool_call_is_made_without_thinking() -> None:
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        err = refused("claude-sonnet-4-5", reasoning_effort="high", tools=[WEATHER], tool_choice=choice)
        assert err.param == "reasoning_effort" and not err.always
    body = sent("claude-sonnet-4-5", frozenset({"reasoning_effort"}), reasoning_effort="high", tools=[WEATHER],
                tool_choice="required")
    assert body["tool_choice"] == {"type": "any"} and "thinking" not in body


def test_an_unknown_effort_is_dropped_for_the_request() -> None:
    err = refused("claude-opus-4-6", reasoning_effort="turbo")
    assert err.param == "reasoning_effort" and not err.always


@pytest.mark.parametrize(("message", "param"), [
    ('"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" and '
     '"output_config.effort" to control thinking behavior.', "reasoning_effort"),
    ("output_config.effort 'xhigh' is not supported when thinking is disabled on this model. Use effort 'high' "
     "or below, or enable thinking.", "reasoning_effort"),
    ("Thinking may not be enabled when tool_choice forces tool use.", "reasoning_effort"),
    ("`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at "
     "https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking", "temperature"),
])
def test_claudes_words_about_thinking_are_read_as_a_parameter_to_drop(message: str, param: str) -> None:
    found = refusal_of(None, None, message)
    assert found is not None and found.param == param
