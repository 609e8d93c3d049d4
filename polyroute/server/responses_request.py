"""A Responses API request (``POST /v1/responses``) as the chat request it asks for.

What a request names of stored responses (``previous_response_id``, ``item_reference``
items, a ``conversation``'s items) has been put into its ``input`` before (``responses_references``,
``conversations_turn``); what would need a stored prompt, or a response computed in the background, is refused
with a 400 naming the field, as are tools the gateway cannot run (only ``function``
tools pass). Fields with a chat counterpart are renamed to it; a field of chat's own
and a field neither knows are passed on as chat passes them, for each backend to
carry, drop or refuse. The result is a chat request's JSON, validated afterwards
exactly as a chat request is.

A ``reasoning`` item joins the assistant turn that the items after it build
(``responses_reasoning``): its sealed entries become the turn's ``reasoning_details``,
which the chat path gives back to the upstreams that take them, and its text becomes
the turn's ``reasoning_content`` when the turn called tools, where DeepSeek's and Kimi's
thinking modes want it (polyroute.adapters.own_fields); a finished turn's text is
dropped, as those models' templates drop it.
"""

from __future__ import annotations

from typing import Any

from polyroute.errors import InvalidRequest
from polyroute.server.conversations_metadata import checked_metadata
from polyroute.server.responses_include import INCLUDE_LOGPROBS, INCLUDE_SEALED, include_of
from polyroute.server.responses_reasoning import join_recalled, recalled

# Needs a prompt kept by the server: the gateway keeps responses and conversations only, and refuses these.
_STATEFUL = ("prompt",)
# Responses fields that shape only what a server keeps or includes, never copied (``include`` and ``top_logprobs``
# are read by ``_logprobs``; ``store``, ``previous_response_id`` and ``conversation`` are the endpoint's:
# ``polyroute.server.responses``).
_IGNORED = frozenset({"include", "truncation", "max_tool_calls", "stream_options", "top_logprobs", "background",
                      "store", "previous_response_id", "conversation"})
# Responses fields translated into chat's below, never copied as they are.
_TRANSLATED = frozenset({"input", "instructions", "tools", "tool_choice", "text", "reasoning", "max_output_tokens"})
_MESSAGE_ROLES = frozenset({"user", "system", "developer", "assistant"})


def to_chat(raw: dict[str, Any]) -> dict[str, Any]:
    """The chat request's JSON for a Responses request's JSON; what cannot be served raises ``InvalidRequest``."""
    for name in _STATEFUL:
        if raw.get(name) is not None:
            raise InvalidRequest(
                f"'{name}' is not supported: this gateway keeps no prompts; send the prompt's text as "
                "'instructions' and 'input'.", param=name)
    if raw.get("background"):
        raise InvalidRequest("'background' is not supported: this gateway computes no responses to poll.",
                             param="background")
    chat: dict[str, Any] = {k: v for k, v in raw.items() if k not in _IGNORED and k not in _TRANSLATED}
    checked_metadata(raw.get("metadata"))  # echoed by the response: OpenAI's limits, as a conversation's
    messages: list[dict[str, Any]] = []
    instructions = raw.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("Invalid value for 'instructions': expected a string.", param="instructions")
        messages.append({"role": "system", "content": instructions})
    messages.extend(_messages(raw.get("input")))
    chat["messages"] = messages
    if "tools" in raw:
        chat["tools"] = _tools(raw["tools"])
    if raw.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(raw["tool_choice"])
    if (limit := raw.get("max_output_tokens")) is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidRequest("Invalid value for 'max_output_tokens': expected a whole number of at least 1.",
                                 param="max_output_tokens")
        chat["max_completion_tokens"] = limit
    _text(raw.get("text"), chat)
    _logprobs(raw, chat)
    reasoning = raw.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    return chat


def _messages(given: Any) -> list[dict[str, Any]]:
    if given is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    if not isinstance(given, list):
        raise InvalidRequest("Invalid value for 'input': expected a string or a list of items.", param="input")
    out: list[dict[str, Any]] = []
    thought: dict[str, Any] = {}  # the reasoning items read since the last other item, for the turn they open
    for i, item in enumerate(given):
        if not isinstance(item, dict):
            raise InvalidRequest(f"Invalid value for 'input[{i}]': expected an object.", param=f"input[{i}]")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "reasoning":
            join_recalled(thought, recalled(item, i))
            continue
        if kind == "message":
            out.append(_message(item, i))
        elif kind == "function_call":
            _function_call(item, i, out)
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": _string(item, "call_id", i),
                        "content": _tool_output(item.get("output"), i)})
        elif kind == "item_reference":  # the endpoint puts in what these name (responses_references) before this
            raise InvalidRequest(f"Invalid value for 'input[{i}]': the stored item it names was not read.",
                                 param=f"input[{i}].type")
        else:
            raise InvalidRequest(f"Invalid value for 'input[{i}]': this gateway does not accept items of type "
                                 f"{kind!r}; it takes message, function_call, function_call_output, reasoning and "
                                 "item_reference items.",
                                 param=f"input[{i}].type")
        if thought and out[-1]["role"] == "assistant":
            join_recalled(out[-1], thought)
        thought = {}  # reasoning no assistant turn follows: nothing to give it to
    for m in out:
        if m["role"] == "assistant" and not m.get("tool_calls"):
            m.pop("reasoning_content", None)
    return out


def stores(raw: dict[str, Any]) -> bool:
    """Whether a Responses request's response is to be stored (OpenAI's default: yes)."""
    store = raw.get("store")
    if store is not None and not isinstance(store, bool):
        raise InvalidRequest("Invalid value for 'store': expected true or false.", param="store")
    return store is not False


def seals_reasoning(raw: dict[str, Any]) -> bool:
    """Whether a Responses request asks for its reasoning items' ``encrypted_content``."""
    return INCLUDE_SEALED in include_of(raw.get("include"))


def _logprobs(raw: dict[str, Any], chat: dict[str, Any]) -> None:
    """``include`` checked (``responses_include``); logprobs asked of the upstream when it or ``top_logprobs``
    wants them."""
    top = raw.get("top_logprobs")
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20):
        raise InvalidRequest("Invalid value for 'top_logprobs': expected a whole number from 0 to 20.",
                             param="top_logprobs")
    if INCLUDE_LOGPROBS in include_of(raw.get("include")) or top:
        chat["logprobs"] = True
        if top is not None:
            chat["top_logprobs"] = top


def _message(item: dict[str, Any], i: int) -> dict[str, Any]:
    role = item.get("role")
    if not isinstance(role, str) or role not in _MESSAGE_ROLES:
        raise InvalidRequest(f"Invalid value for 'input[{i}].role': must be 'user', 'system', 'developer' or "
                             "'assistant'.", param=f"input[{i}].role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(f"Invalid value for 'input[{i}].content': expected a string or a list of parts.",
                             param=f"input[{i}].content")
    parts = [_part(part, f"input[{i}].content[{j}]") for j, part in enumerate(content)]
    if role == "assistant":  # a past answer: its text, as chat sends assistant turns
        return {"role": role, "content": "".join(p.get("text", "") for p in parts)}
    return {"role": role, "content": parts}


def _part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return {"type": "text", "text": part["refusal"]}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_image":
        raise InvalidRequest(f"Invalid value for '{where}': an image must be given as 'image_url' (a URL or a data "
                             "URL); this gateway keeps no files.", param=f"{where}.image_url")
    raise InvalidRequest(f"Invalid value for '{where}': parts of type {kind!r} are not supported; send "
                         "input_text, input_image (image_url) or output_text.", param=f"{where}.type")


def _function_call(item: dict[str, Any], i: int, out: list[dict[str, Any]]) -> None:
    arguments = item.get("arguments", "")
    call = {"id": _string(item, "call_id", i), "type": "function",
            "function": {"name": _string(item, "name", i), "arguments": arguments if isinstance(arguments, str)
                         else ""}}
    last = out[-1] if out else None
    # Calls in a row, or right after the text of the same turn, are one assistant message in chat.
    if last is not None and last["role"] == "assistant" and isinstance(last.get("content"), str | None):
        last.setdefault("tool_calls", []).append(call)
    else:
        out.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_output(output: Any, i: int) -> str | list[dict[str, Any]]:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return [_part(part, f"input[{i}].output[{j}]") for j, part in enumerate(output)]
    raise InvalidRequest(f"Invalid value for 'input[{i}].output': expected a string or a list of parts.",
                         param=f"input[{i}].output")


def _string(item: dict[str, Any], key: str, i: int) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"Missing required parameter: 'input[{i}].{key}'.", param=f"input[{i}].{key}")
    return value


def _tools(tools: Any) -> Any:
    if not isinstance(tools, list):
        return tools  # chat's validation words the error
    others = sorted({str(t.get("type")) if isinstance(t, dict) else "?" for t in tools} - {"function"})
    if others:
        raise InvalidRequest(f"Unsupported tool type(s) in 'tools': {', '.join(others)}. This gateway serves "
                             "function tools only; it runs no built-in tools.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequest(f"Missing required parameter: 'tools[{i}].name'.", param=f"tools[{i}].name")
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if not isinstance(choice, dict):
        return choice
    if choice.get("type") == "function":
        if not isinstance(choice.get("name"), str) or not choice["name"]:
            raise InvalidRequest("Missing required parameter: 'tool_choice.name'.", param="tool_choice.name")
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest(f"Invalid value for 'tool_choice': {choice.get('type')!r} is not supported; use 'auto', "
                         "'none', 'required' or {'type': 'function', 'name': ...}.", param="tool_choice")


def _text(text: Any, chat: dict[str, Any]) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise InvalidRequest("Invalid value for 'text': expected an object such as {'format': {'type': 'text'}}.",
                             param="text")
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]
    fmt = text.get("format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return
    if fmt["type"] == "json_schema":
        for key in ("name", "schema"):
            if fmt.get(key) is None:
                raise InvalidRequest(f"Missing required parameter: 'text.format.{key}'.", param=f"text.format.{key}")
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    else:
        chat["response_format"] = {"type": fmt["type"]}  # chat's validation refuses a type it does not know
