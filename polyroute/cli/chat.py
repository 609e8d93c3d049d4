"""``polyroute chat "..."``: ask the fleet and stream the answer to the terminal.

Runs the gateway in-process (embedded default or --config), or talks to a running
gateway with --url.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import httpx
import orjson

from polyroute.types import ChatRequest, chunk_text


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("chat", help="ask a question and stream the answer",
                       description="Ask a question and stream the answer to the terminal.")
    p.add_argument("prompt", help="what to ask")
    p.add_argument("--model", "-m", default="default", help="model or route name (default: 'default')")
    p.add_argument("--system", "-s", help="a system prompt")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float)
    p.add_argument("--config", metavar="FILE", default=os.environ.get("POLYROUTE_CONFIG"),
                   help="TOML config for the in-process gateway")
    p.add_argument("--url", help="a running gateway, e.g. http://127.0.0.1:8080/v1 (default: in-process)")
    p.add_argument("--api-key", default=os.environ.get("POLYROUTE_API_KEY"),
                   help="key for --url (default: $POLYROUTE_API_KEY)")
    p.set_defaults(func=run)


def _body(args: argparse.Namespace) -> dict[str, object]:
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.prompt}]
    body: dict[str, object] = {"model": args.model, "messages": messages, "stream": True,
                               "max_tokens": args.max_tokens}
    if args.temperature is not None:
        body["temperature"] = args.temperature
    return body


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_remote(args) if args.url else _local(args))


async def _local(args: argparse.Namespace) -> int:
    from polyroute.catalog import load_catalog_for
    from polyroute.gateway import Gateway, RequestContext
    from polyroute.settings import effective_config

    config = effective_config(args.config)
    gateway = Gateway.from_config(config, load_catalog_for(config))
    await gateway.start()
    try:
        chunks, report = gateway.stream(ChatRequest.from_json(_body(args)), RequestContext())
        async for chunk in chunks:
            sys.stdout.write(chunk_text(chunk))
            sys.stdout.flush()
        who = report.model.name if report.model else "?"
        print()
        print(f"[{who} via {report.model.backend if report.model else '?'}, "
              f"{report.usage['total_tokens']} tokens, ${report.cost_usd:.6f}]", file=sys.stderr)
    finally:
        await gateway.aclose()
    return 0


async def _remote(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + "/chat/completions"
    try:
        return await _ask(args, url)
    except httpx.HTTPError as exc:
        print(f"\npolyroute: cannot reach {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1


async def _ask(args: argparse.Namespace, url: str) -> int:
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    timeout = httpx.Timeout(600, connect=5)
    async with httpx.AsyncClient(timeout=timeout) as client, client.stream(
        "POST", url, json=_body(args), headers=headers
    ) as resp:
        if resp.status_code >= 400:
            body = await resp.aread()
            try:
                message = orjson.loads(body)["error"]["message"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                message = body[:200].decode("utf-8", "replace") or resp.reason_phrase
            print(f"polyroute: HTTP {resp.status_code}: {message}", file=sys.stderr)
            return 1
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            doc = orjson.loads(line[6:])
            if "error" in doc:
                print(f"\npolyroute: stream error: {doc['error'].get('message')}", file=sys.stderr)
                return 1
            sys.stdout.write(chunk_text(doc))
            sys.stdout.flush()
        print()
        print(f"[{resp.headers.get('x-polyroute-model')} via {resp.headers.get('x-polyroute-backend')}]",
              file=sys.stderr)
    return 0
