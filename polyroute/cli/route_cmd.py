"""``polyroute route explain``: the routing decision for a prompt, without sending anything."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from polyroute.errors import InvalidRequest

_DESCRIPTION = """\
Show how the gateway would route a request: the candidates of the route that
qualify, in the order failover would try them with the score each was ranked by,
the estimated cost of the request on every candidate, and every candidate the
policy or the request's needs exclude, with the reason. Nothing is sent.

The effective policy is the key's, the route's and --policy's together, each
constraint at its strictest, exactly as for a request carrying that key and an
'x-polyroute-policy' header. The exit status is 0 when some candidate
qualifies, 1 when the request would be refused (422).
"""

_EPILOG = """\
examples:
  polyroute route explain --route support "Summarise this ticket"
  polyroute route explain --config prod.toml --route support --key acme --policy local-only "hi"
  polyroute route explain --route support --tools --max-tokens 2000 --json "Plan a trip"
"""

_TOOL = {"type": "function", "function": {"name": "example", "parameters": {"type": "object", "properties": {}}}}
_IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,"}}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("route", help="explain routing decisions", description="Explain routing decisions.")
    inner = p.add_subparsers(dest="route_command", metavar="ACTION", required=True)
    ex = inner.add_parser(
        "explain",
        help="show candidates, exclusions with reasons, order with scores and cost per candidate",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("prompt", help="the user message ('-' reads it from standard input)")
    ex.add_argument("--route", required=True, metavar="R", help="a route or model name, as a client sends in 'model'")
    ex.add_argument("--config", metavar="FILE", default=os.environ.get("POLYROUTE_CONFIG"),
                    help="TOML config file (default: $POLYROUTE_CONFIG, else the embedded default)")
    ex.add_argument("--key", metavar="NAME",
                    help="decide as the configured key [keys.NAME] would (its name, never its secret)")
    ex.add_argument("--policy", metavar="P", help="narrow with this policy, as the x-polyroute-policy header does")
    ex.add_argument("--max-tokens", type=int, metavar="N", help="the request's max_tokens")
    ex.add_argument("--tools", action="store_true", help="the request sends a tool (needs capability 'tools')")
    ex.add_argument("--json-mode", action="store_true", help="the request asks for JSON mode (prefers 'json_mode')")
    ex.add_argument("--image", action="store_true", help="the request contains an image (needs 'vision')")
    ex.add_argument("--json", action="store_true", help="print the decision as JSON")
    ex.set_defaults(func=run_explain)


def request_body(args: argparse.Namespace, prompt: str) -> dict[str, Any]:
    content: Any = [{"type": "text", "text": prompt}, _IMAGE] if args.image else prompt
    body: dict[str, Any] = {"model": args.route, "messages": [{"role": "user", "content": content}]}
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    if args.tools:
        body["tools"] = [_TOOL]
    if args.json_mode:
        body["response_format"] = {"type": "json_object"}
    return body


def run_explain(args: argparse.Namespace) -> int:
    from polyroute.auth import principal_named
    from polyroute.catalog import load_catalog_for
    from polyroute.fleet import Fleet
    from polyroute.routing import Principal, Router
    from polyroute.routing.explain import explain, render
    from polyroute.settings import effective_config
    from polyroute.types import ChatRequest

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    config = effective_config(args.config)
    fleet = Fleet.build(config, load_catalog_for(config))
    if args.policy is not None and args.policy not in config.policies:
        known = ", ".join(sorted(config.policies)) or "none defined"
        raise InvalidRequest(f"--policy: {args.policy!r} is not a policy of {config.source} (known: {known})")
    principal = principal_named(config, args.key) if args.key else Principal()
    req = ChatRequest.from_json(request_body(args, prompt))
    plan = Router(fleet).decide(fleet.resolve(args.route), req, principal, args.policy)
    if args.json:
        print(json.dumps(explain(plan), indent=2))
    else:
        sys.stdout.write(render(plan))
        if not plan.candidates:
            print(f"refusal: {plan.refusal().message}")
    return 0 if plan.candidates else 1
