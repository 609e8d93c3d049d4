"""What Claude Code sends, through a real gateway to an OpenAI-compatible model.

The request is the second turn of a tool loop as Claude Code 2.1 sent it to a gateway at ``ANTHROPIC_BASE_URL``
(``claude -p "run echo polyroute-ok" --allowedTools "Bash(echo:*)"``), trimmed: its system prompt and tool
descriptions cut short, two of its tools kept. Its shape is Claude Code's own: a system prompt whose first block is
its accounting header, a system message in the middle of ``messages``, the model's unsigned thinking sent back,
``thinking: adaptive``, ``output_config.effort``, ``context_management``, and its session in ``metadata.user_id``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.live import live_gateway
from tests.support.upstreams import FakeUpstream

EPHEMERAL = {"type": "ephemeral"}
BASH = {"name": "Bash", "description": "Executes a bash command and returns its output.", "input_schema": {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
    "properties": {"command": {"description": "The command to execute", "type": "string"},
                   "description": {"description": "What this command does", "type": "string"}},
    "required": ["command"], "additionalProperties": False}}
READ = {"name": "Read", "description": "Reads a file from the local filesystem.", "input_schema": {
    "type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}}
USER_ID = '{"device_id":"b31cb064","account_uuid":"","session_id":"5008b610-0c24-43a0-b57c-9ca4d3d4ca5e"}'
REQUEST: dict[str, Any] = {
    "model": "agent",
    "max_tokens": 32000,
    "stream": True,
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.159; cc_entrypoint=sdk-cli;"},
        {"type": "text", "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
         "cache_control": EPHEMERAL},
        {"type": "text", "text": "\nYou are an interactive agent that helps users with software engineering tasks.",
         "cache_control": EPHEMERAL},
    ],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>\nToday's date is 2026-12-07.\n</system-reminder>\n"},
            {"type": "text", "text": "run echo polyroute-ok"}]},
        {"role": "system", "content": "Available agent types for the Agent tool:\n- claude: Catch-all."},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should run echo.", "signature": ""},
            {"type": "tool_use", "id": "call_1", "name": "Bash",
             "input": {"command": "echo polyroute-ok", "description": "Say ok"}}]},
        {"role": "user", "content": [
            {"tool_use_id": "call_1", "type": "tool_result", "content": "polyroute-ok", "is_error": False,
             "cache_control": EPHEMERAL}]},
    ],
    "tools": [BASH, READ],
    "metadata": {"user_id": USER_ID},
    "thinking": {"type": "adaptive"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_claude_codes_tool_loop_reaches_an_openai_compatible_model_and_its_answer_streams_back(
        first: FakeUpstream) -> None:
    first.stream([chunk({"role": "assistant", "content": "The command printed "}), chunk({"content": "polyroute-ok."}),
                  chunk({}, "stop"), {**chunk({}), "choices": [],
                                      "usage": {"prompt_tokens": 120, "completion_tokens": 6, "total_tokens": 126}}])
    config = {"backends": {"o": {"type": "openai", "base_url": first.url + "/v1", "api_key": "env:K"}},
              "models": {"gpt": {"backend": "o", "upstream": "gpt-x"}}, "routes": {"agent": {"models": ["gpt"]}}}
    with live_gateway(config, env={"K": "sk-up"}) as g, httpx.stream(
            "POST", f"{g.root}/v1/messages", json=REQUEST, timeout=20,
            headers={"authorization": "Bearer sk-any", "anthropic-version": "2023-06-01"}) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in answer.read().decode().split("\n\n") if f]
    events = [(f.split("\n")[0].removeprefix("event: "), json.loads(f.split("\n")[1].removeprefix("data: ")))
              for f in frames]
    assert [name for name, _ in events] == ["message_start", "content_block_start", "content_block_delta",
                                            "content_block_delta", "content_block_stop", "message_delta",
                                            "message_stop"]
    assert "".join(e["delta"]["text"] for n, e in events if n == "content_block_delta") == \
        "The command printed polyroute-ok."
    assert events[-2][1]["usage"]["output_tokens"] == 6

    sent = first.received[0].json()
    assert sent["model"] == "gpt-x" and sent["stream"] is True and sent["reasoning_effort"] == "high"
    assert sent["user"] == USER_ID and sent.get("max_tokens", sent.get("max_completion_tokens")) == 32000
    assert not {"thinking", "context_management", "output_config", "metadata", "system"} & sent.keys()
    assert [t["function"]["name"] for t in sent["tools"]] == ["Bash", "Read"]
    assert sent["tools"][0]["function"]["parameters"] == BASH["input_schema"]
    assert sent["messages"] == [
        # The accounting header is not the model's to read.
        {"role": "system", "content": [
            {"type": "text", "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
             "cache_control": EPHEMERAL},
            {"type": "text", "text": "\nYou are an interactive agent that helps users with software engineering "
                                     "tasks.", "cache_control": EPHEMERAL}]},
        {"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>\nToday's date is 2026-12-07.\n</system-reminder>\n"},
            {"type": "text", "text": "run echo polyroute-ok"}]},
        {"role": "system", "content": "Available agent types for the Agent tool:\n- claude: Catch-all."},
        {"role": "assistant", "content": None, "reasoning_content": "I should run echo.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "Bash", "arguments": '{"command":"echo polyroute-ok","description":"Say ok"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "polyroute-ok", "cache_control": EPHEMERAL},
    ]
