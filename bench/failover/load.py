"""A fixed load of streamed requests against one route, and what each client read."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx
import orjson

from tests.support.fault_upstream import ANSWER


@dataclass
class Read:
    """One streamed request as the client saw it."""

    ok: bool = False  # 200, the whole answer, one id, ending in [DONE]
    status: int = 0
    ttft: float | None = None  # seconds to the first content token
    total: float = 0.0
    max_gap: float = 0.0  # the longest wait between two content tokens
    attempts: int = 0  # x-polyroute-attempts
    model: str = ""  # x-polyroute-model: the candidate that answered
    estimated: bool = False  # usage says a cut attempt was estimated: the stream was rescued
    error: str = ""


@dataclass
class Load:
    requests: int
    concurrency: int
    time_limit: float
    reads: list[Read] = field(default_factory=list)
    seconds: float = 0.0


BODY = {"stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Spell the NATO alphabet"}]}


async def one(client: httpx.AsyncClient, url: str, route: str) -> Read:
    read = Read()
    started = time.monotonic()
    last_token: float | None = None
    text: list[str] = []
    ids: set[str] = set()
    done = False
    try:
        async with client.stream("POST", url, json={**BODY, "model": route}) as resp:
            read.status = resp.status_code
            read.attempts = int(resp.headers.get("x-polyroute-attempts", "0"))
            read.model = resp.headers.get("x-polyroute-model", "")
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    continue
                event = orjson.loads(data)
                if "error" in event:
                    read.error = str(event["error"].get("code") or event["error"].get("message"))
                    continue
                if event.get("usage"):
                    read.estimated = bool(event["usage"].get("estimated"))
                for choice in event.get("choices") or ():
                    ids.add(event["id"])
                    if content := choice["delta"].get("content"):
                        now = time.monotonic()
                        if read.ttft is None:
                            read.ttft = now - started
                        elif last_token is not None:
                            read.max_gap = max(read.max_gap, now - last_token)
                        last_token = now
                        text.append(content)
    except httpx.HTTPError as exc:
        read.error = type(exc).__name__
    read.total = time.monotonic() - started
    read.ok = read.status == 200 and done and "".join(text) == ANSWER and len(ids) == 1 and not read.error
    return read


async def whole(client: httpx.AsyncClient, url: str, route: str) -> Read:
    """A non-streamed request: its first token arrives with the whole answer."""
    read = Read()
    started = time.monotonic()
    body = {k: v for k, v in BODY.items() if k not in ("stream", "stream_options")}
    try:
        resp = await client.post(url, json={**body, "model": route})
        read.status = resp.status_code
        read.attempts = int(resp.headers.get("x-polyroute-attempts", "0"))
        doc = orjson.loads(resp.content)
        if "error" in doc:
            read.error = str(doc["error"].get("code") or doc["error"].get("message"))
        text = doc["choices"][0]["message"]["content"] if doc.get("choices") else None
    except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
        read.error, text = type(exc).__name__, None
    read.total = time.monotonic() - started
    read.ttft = read.total if text else None
    read.ok = read.status == 200 and text == ANSWER and not read.error
    return read


async def run(base_url: str, route: str, requests: int, concurrency: int, time_limit: float,
              stream: bool = True) -> Load:
    """``requests`` requests, ``concurrency`` at a time, none started after ``time_limit`` seconds."""
    load = Load(requests, concurrency, time_limit)
    url = f"{base_url}/chat/completions"
    queue = iter(range(requests))
    started = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in queue:
            if time.monotonic() - started > time_limit:
                return
            load.reads.append(await (one if stream else whole)(client, url, route))

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    load.seconds = time.monotonic() - started
    return load
