"""An Anthropic Messages API request (``POST /v1/messages``) as the chat request it asks for.

The turns are translated by ``messages_turns``; the rest here. Fields with a chat
counterpart are renamed to it: ``stop_sequences`` to ``stop``, ``metadata.user_id`` to
``user``, ``tools`` to function tools, ``tool_choice`` to chat's (``any`` is
``required``; ``disable_parallel_tool_use`` is ``parallel_tool_calls: false``),
``output_config.format`` to ``response_format``. A top-level ``cache_control`` marks the
last message, as chat's convention for Claude's cache breakpoints has it.

How hard the model thinks depends on where the request can go. When every model of the
route is a Claude that thinks, over Anthropic's own API (``to_claude``, decided by
polyroute.server.messages.only_claude), a thinking budget (``enabled``) and ``metadata``
go as the client wrote them, which the Claude adapter passes on: Claude gets the client's
budget to the token (the Claudes that take no budget, adaptive thinking instead), and its
``user_id``; the budget then wins over an ``output_config.effort``. Otherwise ``thinking``
and ``output_config.effort`` become ``reasoning_effort``, the chat path's one knob for it,
which every backend takes (a Claude model of a mixed route gets the budget the adapter
gives that effort): a budget is read as low, medium or high by the buckets below.
Everywhere, ``output_config.effort`` is that effort (with adaptive thinking, the adapter
sends Claude adaptive thinking at that effort), and ``disabled`` and ``adaptive`` without
one leave it to the model: not every Claude takes them as written (adaptive thinking only
from 4.6, and some cannot turn thinking off), and a refused field would fail the request
where leaving it out does not.

As for the Responses API, a field that needs something the gateway does not run
(``container``, ``mcp_servers``, server tools) is a 400 naming it; fields that only
shape how Anthropic's own platform serves a request are ignored; a field neither
knows (``top_k`` and others) is passed on as chat passes it, for each backend to carry,
drop or refuse (polyroute.refusals). The result is a chat request's JSON, validated
afterwards exactly as a chat request is.
"""

from __future__ import annotations

from typing import Any

from polyroute.errors import InvalidRequest
from polyroute.server.messages_turns import chat_messages, system_messages

__all__ = ["effort_of_budget", "to_chat"]

# Needs a service the gateway does not run: refused, naming it.
_UNSERVED = {
    "container": "this gateway runs no code-execution containers",
    "mcp_servers": "this gateway connects to no MCP servers; run the tools in the client and send them as 'tools'",
}
# How Anthropic's own platform serves a request (its tiers, regions, speed, server-side context editing): nothing
# to do here, and no upstream of another kind would take them.
_IGNORED = frozenset({"service_tier", "inference_geo", "speed", "diagnostics", "context_management",
                      "user_profile_id", "workspace_id"})
# Translated below, never copied as they are.
_TRANSLATED = frozenset({"system", "messages", "max_tokens", "stop_sequences", "metadata", "tools", "tool_choice",
                         "thinking", "output_config", "cache_control"})
# A thinking budget as an effort, for models that take an effort and no budget:
#   low     budget < 4,096
#   medium  4,096 <= budget < 16,384
#   high    16,384 <= budget
# Anthropic sets no mapping (its OpenAI SDK compatibility layer ignores reasoning_effort, the request fields table
# of https://docs.claude.com/en/api/openai-sdk), so the boundaries sit between the budgets the best-known scales
# give each level, and a budget made from an effort reads back as that effort: Google's OpenAI layer for Gemini
# turns low, medium and high into 1,024, 8,192 and 24,576 thinking tokens (https://ai.google.dev/gemini-api/docs/
# openai); Claude Code asked 4,000 for "think", 10,000 for "think hard" and asks 31,999 with thinking on
# (https://code.claude.com/docs/en/common-workflows), the budgets this gateway's Claude adapter gives the three
# efforts (polyroute.adapters.claude_effort). Anthropic's least budget, 1,024, is low. LiteLLM's scale is smaller
# (1,024 / 2,048 / 4,096, https://docs.litellm.ai/docs/reasoning_content): its medium reads low here, its high
# medium. Past high there is no more: xhigh and max are taken by few models of OpenAI's wire.
_LOW_BELOW = 4096
_MEDIUM_BELOW = 16384
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# Chat's limit on stop sequences (polyroute.types.ChatRequest).
_MOST_STOPS = 4


def to_chat(raw: dict[str, Any], *, counting: bool = False, to_claude: bool = False) -> dict[str, Any]:
    """The chat request's JSON for a Messages request's JSON (``counting``: for ``count_tokens``, which takes no
    ``max_tokens``; ``to_claude``: every candidate is Claude over Anthropic's API); what cannot be served raises
    ``InvalidRequest``."""
    for name, why in _UNSERVED.items():
        if raw.get(name):
            raise InvalidRequest(f"'{name}' is not supported: {why}.", param=name)
    chat: dict[str, Any] = {k: v for k, v in raw.items() if k not in _IGNORED and k not in _TRANSLATED}
    messages = system_messages(raw.get("system")) + chat_messages(raw.get("messages"))
    if isinstance(mark := raw.get("cache_control"), dict) and messages:  # none: chat's 400 for empty messages
        messages[-1]["cache_control"] = mark
    chat["messages"] = messages
    if not counting:
        chat["max_tokens"] = _max_tokens(raw.get("max_tokens"))
    if (stops := raw.get("stop_sequences")) is not None:
        chat["stop"] = _stops(stops)
    if (user := _user(raw.get("metadata"))) is not None:
        chat["user"] = user
        if to_claude:
            chat["metadata"] = {"user_id": user}
    tools = _tools(raw.get("tools"))
    if tools:
        chat["tools"] = tools
    _tool_choice(raw.get("tool_choice"), chat, bool(tools))
    _reasoning(raw.get("thinking"), raw.get("output_config"), chat, to_claude)
    if (fmt := _format(raw.get("output_config"))) is not None:
        chat["response_format"] = fmt
    return chat


def effort_of_budget(budget: int) -> str:
    return "low" if budget < _LOW_BELOW else "medium" if budget < _MEDIUM_BELOW else "high"


def _max_tokens(value: Any) -> Any:
    if value is None:
        raise InvalidRequest("Missing required parameter: 'max_tokens'.", param="max_tokens")
    return value  # its type and range: chat's validation, which names it alike


def _stops(stops: Any) -> list[str]:
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise InvalidRequest("Invalid value for 'stop_sequences': expected a list of non-empty strings.",
                             param="stop_sequences")
    if len(stops) > _MOST_STOPS:
        raise InvalidRequest(f"Invalid value for 'stop_sequences': this gateway takes at most {_MOST_STOPS} (what "
                             "OpenAI-compatible upstreams take).", param="stop_sequences")
    return stops


def _user(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidRequest("Invalid value for 'metadata': expected an object such as {'user_id': ...}.",
                             param="metadata")
    user = metadata.get("user_id")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("Invalid value for 'metadata.user_id': expected a string.", param="metadata.user_id")
    return user or None


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("Invalid value for 'tools': expected a list of tools.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"Invalid value for '{where}': expected an object.", param=where)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise InvalidRequest(f"Unsupported tool type in '{where}': {kind!r}. This gateway serves tools defined "
                                 "by 'name', 'description' and 'input_schema'; it runs no server tools and has no "
                                 "schema for Anthropic-defined ones.", param=f"{where}.type")
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"Missing required parameter: '{where}.name'.", param=f"{where}.name")
        if not isinstance(schema, dict):
            raise InvalidRequest(f"Missing required parameter: '{where}.input_schema' (an object).",
                                 param=f"{where}.input_schema")
        fn: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str) and tool["description"]:
            fn["description"] = tool["description"]
        if isinstance(tool.get("strict"), bool):
            fn["strict"] = tool["strict"]
        out.append({"type": "function", "function": fn, **({"cache_control": tool["cache_control"]}
                                                          if isinstance(tool.get("cache_control"), dict) else {})})
    return out


def _tool_choice(choice: Any, chat: dict[str, Any], has_tools: bool) -> None:
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or kind not in (*_CHOICES, "tool"):
        raise InvalidRequest("Invalid value for 'tool_choice': expected {'type': 'auto'}, {'type': 'any'}, "
                             "{'type': 'none'} or {'type': 'tool', 'name': ...}.", param="tool_choice")
    if kind == "tool":
        if not isinstance(choice.get("name"), str) or not choice["name"]:
            raise InvalidRequest("Missing required parameter: 'tool_choice.name'.", param="tool_choice.name")
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif has_tools or kind == "any":  # without tools, 'auto' and 'none' ask nothing ('any' is chat's 400)
        chat["tool_choice"] = _CHOICES[kind]
    if choice.get("disable_parallel_tool_use") is True and has_tools:
        chat["parallel_tool_calls"] = False


def _reasoning(thinking: Any, config: Any, chat: dict[str, Any], to_claude: bool) -> None:
    kind, budget = _thinking(thinking)
    effort = _effort(config)
    if to_claude and kind == "enabled":
        chat["thinking"] = thinking  # as the client wrote it: its budget to the token
    elif effort is not None:
        chat["reasoning_effort"] = effort
    elif budget is not None:
        chat["reasoning_effort"] = effort_of_budget(budget)


def _thinking(thinking: Any) -> tuple[str | None, int | None]:
    """A checked ``thinking``'s type and budget."""
    if thinking is None:
        return None, None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled":
        budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise InvalidRequest("Invalid value for 'thinking.budget_tokens': expected a whole number of at least 1.",
                                 param="thinking.budget_tokens")
        return kind, budget
    if kind in ("disabled", "adaptive", "between_tools"):
        return kind, None  # the model's own default, where it cannot be sent as it is
    raise InvalidRequest("Invalid value for 'thinking': expected {'type': 'enabled', 'budget_tokens': ...}, "
                         "{'type': 'adaptive'} or {'type': 'disabled'}.", param="thinking")


def _effort(config: Any) -> str | None:
    effort = config.get("effort") if isinstance(config, dict) else None
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in _EFFORTS:
        raise InvalidRequest(f"Invalid value for 'output_config.effort': {effort!r}; expected one of "
                             f"{', '.join(_EFFORTS)}.", param="output_config.effort")
    return _EFFORTS[effort]


def _format(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if not isinstance(config, dict):
        raise InvalidRequest("Invalid value for 'output_config': expected an object.", param="output_config")
    fmt = config.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise InvalidRequest("Invalid value for 'output_config.format': expected {'type': 'json_schema', "
                             "'schema': {...}}.", param="output_config.format")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
