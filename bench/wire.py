"""The OpenAI chat-completions wire format, as bytes: what the load generator sends
and what the fake upstream answers. Shapes follow OpenAI's documented responses."""

from __future__ import annotations

import orjson

MODEL_SLOW = "bench-model"
MODEL_INSTANT = "bench-instant"
PROMPT = "Say hello in a few words."
CREATED = 1_700_000_000
TOKEN_TEXT = "tok "


def request_body(model: str, *, stream: bool, max_tokens: int) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def http_request(host: str, port: int, path: str, body: bytes, api_key: str) -> bytes:
    """One complete HTTP/1.1 keep-alive POST, ready to write as is, again and again."""
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "User-Agent: polyroute-bench\r\n"
        "Accept: */*\r\n"
        "Content-Type: application/json\r\n"
        f"Authorization: Bearer {api_key}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


def _usage(completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": 12, "completion_tokens": completion_tokens, "total_tokens": 12 + completion_tokens}


def completion(model: str, ident: int, tokens: int) -> bytes:
    return orjson.dumps(
        {
            "id": f"chatcmpl-bench{ident}",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": TOKEN_TEXT * tokens, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(tokens),
        }
    )


def _chunk(model: str, ident: int, delta: dict[str, str], finish: str | None) -> dict[str, object]:
    return {
        "id": f"chatcmpl-bench{ident}",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _event(payload: dict[str, object], include_usage: bool) -> bytes:
    if include_usage and "usage" not in payload:
        payload["usage"] = None
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class StreamEvents:
    """The SSE events of one streamed answer, in order, each as ``data: ...\\n\\n``."""

    def __init__(self, model: str, ident: int, tokens: int, include_usage: bool) -> None:
        self.first = _event(_chunk(model, ident, {"role": "assistant", "content": ""}, None), include_usage)
        self.token = _event(_chunk(model, ident, {"content": TOKEN_TEXT}, None), include_usage)
        tail = _event(_chunk(model, ident, {}, "stop"), include_usage)
        if include_usage:
            usage: dict[str, object] = {**_chunk(model, ident, {}, None), "choices": [], "usage": _usage(tokens)}
            tail += _event(usage, include_usage)
        self.last = tail + b"data: [DONE]\n\n"


def chunked(data: bytes) -> bytes:
    """HTTP/1.1 chunked transfer-encoding framing for one piece of a body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED_END = b"0\r\n\r\n"
