"""An OpenAI-compatible upstream that obliges every request, for frameworks that drive several turns.

Scripted replies (``FakeUpstream``) suit one request; an agent framework sends as many as its loop needs, and
a client library may retry. This upstream answers from the request alone, as a compliant model would:

- tools offered (``tool_choice`` not ``"none"``): it calls the first one not yet called in the conversation;
  when the last user message says ``parallel``, every uncalled tool at once. A function ``tool_choice`` names
  is called whatever was called before, and ``"required"`` with every tool called calls the last one, as a
  model must call one.
  Arguments are an instance of the tool's parameter schema (see ``instance``).
- every tool called already, or none offered: with ``response_format`` ``json_schema``, an instance of that
  schema; with ``json_object``, ``{"answer": "ok"}``; else ``You said: <last user text>``.

Streams are framed as OpenAI frames them, text a word a chunk, each call's arguments in two pieces, and end
with a usage chunk. ``seen`` keeps every request body, for a test to read what the gateway sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from polyroute.server.answers import Reply
from polyroute.server.dispatch import App
from polyroute.server.http11 import Request
from tests.support.live import Live, live_gateway, serve_app

Json = dict[str, Any]


def instance(schema: Json, defs: Json | None = None) -> Any:
    """A small value that satisfies ``schema``: the first enum value or anyOf branch, strings ``"x"`` (or the
    property's name), numbers 1, one item an array, every property of an object."""
    defs = schema.get("$defs", defs or {})
    if "$ref" in schema:
        return instance(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            branch = next((s for s in schema[key] if s.get("type") != "null"), schema[key][0])
            return instance(branch, defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "object":
        props: Json = schema.get("properties", {})
        return {name: _named(name, sub, defs) for name, sub in props.items()}
    if kind == "array":
        return [instance(schema.get("items", {"type": "string"}), defs)]
    return {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "null": None}[kind]


def _named(name: str, schema: Json, defs: Json) -> Any:
    return name if schema.get("type") == "string" and "enum" not in schema else instance(schema, defs)


def _called(messages: list[Json]) -> set[str]:
    return {tc["function"]["name"] for m in messages for tc in m.get("tool_calls") or ()}


def _last_user_text(messages: list[Json]) -> str:
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    content = last.get("content") or ""
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def decide(body: Json) -> tuple[str | None, list[Json]]:
    """The answer to a request: its text, or the tool calls it makes (name and arguments)."""
    messages: list[Json] = body.get("messages", [])
    tools = [t["function"] for t in body.get("tools") or () if t.get("type") == "function"]
    choice = body.get("tool_choice")
    if tools and choice != "none":
        if isinstance(choice, dict):
            tools = [t for t in tools if t["name"] == choice["function"]["name"]]
        todo = [t for t in tools if t["name"] not in _called(messages)]
        if isinstance(choice, dict):
            todo = tools
        elif choice == "required" and not todo:
            todo = tools[-1:]
        if todo:
            picked = todo if "parallel" in _last_user_text(messages) else todo[:1]
            return None, [{"name": t["name"], "arguments": orjson.dumps(instance(t.get("parameters") or {})).decode()}
                          for t in picked]
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return orjson.dumps(instance(fmt["json_schema"]["schema"])).decode(), []
    if fmt.get("type") == "json_object":
        return '{"answer": "ok"}', []
    return "You said: " + _last_user_text(messages), []


def _usage(body: Json, completion: int) -> Json:
    prompt = sum(len(str(m.get("content") or "").split()) + 3 for m in body.get("messages", []))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _whole(body: Json, text: str | None, calls: list[Json]) -> Json:
    message: Json = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [{"id": f"call_{i}_{c['name']}", "type": "function", "function": c}
                                 for i, c in enumerate(calls)]
    return {"id": "chatcmpl-obliging", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": _usage(body, len((text or "").split()) + 5 * len(calls))}


def _events(body: Json, text: str | None, calls: list[Json]) -> Iterator[Json]:
    head = {"id": "chatcmpl-obliging", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}

    def chunk(delta: Json, finish: str | None = None) -> Json:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    words = (text or "").split(" ") if text else []
    for i, word in enumerate(words):
        yield chunk({"content": word if i == 0 else " " + word})
    for i, call in enumerate(calls):
        args = call["arguments"]
        yield chunk({"tool_calls": [{"index": i, "id": f"call_{i}_{call['name']}", "type": "function",
                                     "function": {"name": call["name"], "arguments": args[: len(args) // 2]}}]})
        yield chunk({"tool_calls": [{"index": i, "function": {"arguments": args[len(args) // 2 :]}}]})
    yield chunk({}, "tool_calls" if calls else "stop")
    yield {**head, "choices": [], "usage": _usage(body, len(words) + 5 * len(calls))}


@contextmanager
def obliging_upstream() -> Iterator[tuple[str, list[Json]]]:
    """Serve it on loopback; yield its ``/v1`` URL and the list of request bodies it receives."""
    seen: list[Json] = []

    async def chat(request: Request) -> Reply:
        body = orjson.loads(request.body)
        seen.append(body)
        text, calls = decide(body)
        if not body.get("stream"):
            return Reply(orjson.dumps(_whole(body, text, calls)))
        frames = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in _events(body, text, calls))
        return Reply(frames + b"data: [DONE]\n\n", content_type="text/event-stream")

    with serve_app(App({"/v1/chat/completions": {"POST": chat}}, max_body=8 << 20)) as root:
        yield f"{root}/v1", seen


KEYS = {"FREE_KEY": "sk-free-0123456789abcdef", "TIGHT_KEY": "sk-tight-0123456789abcdef", "UP_KEY": "sk-up"}


@contextmanager
def client_fleet() -> Iterator[tuple[Live, list[Json]]]:
    """A gateway for client libraries: route ``main`` over the obliging upstream (billed, so usage carries
    ``cost_usd``), ``cut`` (a stream that breaks after two tokens), and two keys, ``FREE_KEY`` and ``TIGHT_KEY``
    (one request a minute). Yields the gateway and the bodies the upstream received."""
    with obliging_upstream() as (url, seen):
        raw = {
            "backends": {"up": {"type": "openai", "base_url": url, "api_key": "env:UP_KEY"}, "f": {"type": "fake"}},
            "models": {"smart": {"backend": "up", "upstream": "gpt-4o-mini", "input_per_mtok": 1.0,
                                 "output_per_mtok": 2.0},
                       "cut": {"backend": "f", "upstream": "cut-2"}},
            "routes": {"main": {"models": ["smart"]}},
            "keys": {"free": {"secret": "env:FREE_KEY"}, "tight": {"secret": "env:TIGHT_KEY", "rpm": 1}},
        }
        with live_gateway(raw, env=KEYS) as live:
            yield live, seen
