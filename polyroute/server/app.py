"""The gateway's app: its routes, and what runs before serving and after."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import orjson

from polyroute import logs
from polyroute.catalog import load_catalog_for
from polyroute.config import Config
from polyroute.console import Console, Recent
from polyroute.errors import PolyrouteError, UnknownModel
from polyroute.gateway import Gateway
from polyroute.logs import AccessLog
from polyroute.metrics import Metrics
from polyroute.server.admin import PREFIX as ADMIN_PREFIX
from polyroute.server.admin import Admin, require_admin
from polyroute.server.answers import Reply
from polyroute.server.bounds import Bounds
from polyroute.server.chat import ChatEndpoint
from polyroute.server.completions import CompletionsEndpoint
from polyroute.server.conversations import ConversationsEndpoint
from polyroute.server.dispatch import App, Handler, request_key
from polyroute.server.door import Door
from polyroute.server.embeddings import EmbeddingsEndpoint
from polyroute.server.errors import error_response
from polyroute.server.feedback import FeedbackEndpoint
from polyroute.server.http11 import Request
from polyroute.server.messages import CountTokensEndpoint, MessagesEndpoint
from polyroute.server.messages_errors import OnMessagesPaths
from polyroute.server.metrics import MetricsEndpoint, metrics_guard
from polyroute.server.models_anthropic import anthropic_error_reply, asks_anthropic, model_info, page
from polyroute.server.responses import ResponsesEndpoint
from polyroute.server.responses_kept import StoredResponsesEndpoint
from polyroute.server.usage import AdminUsageEndpoint, UsageEndpoint
from polyroute.tracing import tracing_from_env

log = logging.getLogger("polyroute.server")

CONFIG_ENV = "POLYROUTE_CONFIG"
MODEL_PREFIX = "/v1/models/"
# Allocations between young collections (CPython's default: 700).
GC_THRESHOLD = 20_000


def _json(doc: Any, status: int = 200) -> Reply:
    return Reply(orjson.dumps(doc), status)


def create_app(gateway: Gateway) -> App:
    config = gateway.fleet.config
    gateway.observers.add(AccessLog())
    metrics = Metrics(gateway)
    gateway.observers.add(metrics)
    spans = tracing_from_env(gateway.fleet)
    if spans is not None:
        gateway.observers.add(spans)
    limits = config.gateway
    bounds = Bounds(limits.max_messages, limits.max_content_parts, limits.max_json_depth)
    chat = ChatEndpoint(gateway, config.gateway.debug_headers, bounds)
    responses = ResponsesEndpoint(gateway, config.gateway.debug_headers, bounds)
    messages = MessagesEndpoint(gateway, config.gateway.debug_headers, bounds)
    embeddings = EmbeddingsEndpoint(gateway, config.gateway.debug_headers, bounds)
    completions = CompletionsEndpoint(gateway, config.gateway.debug_headers, bounds)
    count_tokens = CountTokensEndpoint(gateway, bounds)
    redact = gateway.fleet.guard.redact
    logs.guard(redact)

    async def models(request: Request) -> Reply:
        # Same door as chat: with keys configured, only a valid key sees the fleet, and only its routes. An Anthropic
        # client gets the same models in its own shape, paged (polyroute.server.models_anthropic).
        anthropic_client = asks_anthropic(request)
        try:
            principal = gateway.keys.operator(request_key(request))
            visible = list_models(gateway)
            if principal.routes is not None:
                visible = [m for m in visible if m["id"] in principal.routes]
            if anthropic_client:
                return _json(page(visible, request.params()))
        except PolyrouteError as exc:
            return anthropic_error_reply(exc) if anthropic_client else error_response(exc)
        return _json({"object": "list", "data": visible})

    async def model(request: Request) -> Reply:
        # OpenAI's "retrieve model": one entry of the list, or the 404 chat gives for that name.
        try:
            principal = gateway.keys.operator(request_key(request))
            name = unquote(request.path.removeprefix(MODEL_PREFIX))
            if principal.routes is not None and name not in principal.routes:
                raise UnknownModel(f"The model '{name}' does not exist", param="model")
            gateway.fleet.resolve(name)
        except PolyrouteError as exc:
            return anthropic_error_reply(exc) if asks_anthropic(request) else error_response(exc)
        found = next(m for m in list_models(gateway) if m["id"] == name)
        return _json(model_info(found) if asks_anthropic(request) else found)

    async def healthz(request: Request) -> Reply:
        return _json({"status": "ok"})

    async def readyz(request: Request) -> Reply:
        ready = [name for name, a in gateway.fleet.adapters.items() if a.ready()]
        status = 200 if ready else 503
        return _json({"status": "ready" if ready else "not ready", "backends_ready": ready}, status)

    async def backends_health(request: Request) -> Reply:
        # Breaker details quote upstream errors: with keys configured, only a valid key reads them.
        try:
            gateway.keys.operator(request_key(request))
        except PolyrouteError as exc:
            return error_response(exc)
        report = orjson.dumps(await gateway.failover.health.report(gateway.fleet))
        return Reply(redact.data(report) if redact else report, 200)

    routes: dict[str, dict[str, Handler]] = {}
    prefixes: dict[str, dict[str, Handler]] = {}
    admin_digest = config.admin.secret.seal() if config.admin.secret is not None else None
    if admin_digest is not None and gateway.tenancy.store is not None:
        store = gateway.tenancy.store
        admin_api = Admin(gateway, store, admin_digest)
        admin: Handler = admin_api.handle
        every: dict[str, Handler] = {"GET": admin, "POST": admin, "PATCH": admin, "DELETE": admin}
        usage = AdminUsageEndpoint(store.summary, lambda request: require_admin(request, admin_digest))
        routes.update({"/admin/keys": every, "/admin/teams": every, "/admin/usage": {"GET": usage.handle}})
        prefixes[ADMIN_PREFIX] = every
        console = Console(gateway, admin_api, admin_digest, Recent())
        routes.update(console.routes())
        prefixes.update(console.prefixes())
    elif config.admin.secret is not None:
        log.warning("admin.secret: %s is not set, so the admin API is off", config.admin.secret.ref)

    admin_on = admin_digest is not None and gateway.tenancy.store is not None
    door = Door(gateway, chat_paths=frozenset(("/v1/chat/completions", "/chat/completions", "/v1/responses",
                                               "/responses", "/v1/messages", "/v1/embeddings", "/embeddings",
                                               "/v1/completions", "/completions")),
                client_paths=frozenset(("/v1/feedback", "/v1/conversations", "/conversations",
                                        "/v1/messages/count_tokens")),
                client_prefixes=("/v1/conversations/", "/conversations/"),
                admin_digest=admin_digest if admin_on else None)
    for prefix in ("/v1/responses/", "/responses/"):
        kept = StoredResponsesEndpoint(gateway, prefix).handle
        prefixes[prefix] = {"GET": kept, "DELETE": kept}
    for root in ("/v1/conversations", "/conversations"):
        conversations = ConversationsEndpoint(gateway, root + "/", bounds)
        routes[root] = {"POST": conversations.root}
        prefixes[root + "/"] = dict.fromkeys(("GET", "POST", "DELETE"), conversations.handle)
    build: Callable[..., App] = App
    if config.gateway.cors_origins:
        from polyroute.server.cors import Cors, CorsApp

        build = functools.partial(CorsApp, cors=Cors(config.gateway.cors_origins))
    return build(
        prefixes={MODEL_PREFIX: {"GET": model}, **prefixes},
        routes={
            **routes,
            "/v1/usage": {"GET": UsageEndpoint(gateway).handle},
            "/v1/feedback": {"POST": FeedbackEndpoint(gateway).handle},
            "/v1/chat/completions": {"POST": chat.handle},
            "/v1/embeddings": {"POST": embeddings.handle},
            "/embeddings": {"POST": embeddings.handle},
            "/v1/completions": {"POST": completions.handle},
            "/completions": {"POST": completions.handle},
            "/chat/completions": {"POST": chat.handle},
            "/v1/responses": {"POST": responses.handle},
            "/responses": {"POST": responses.handle},
            "/v1/messages": {"POST": messages.handle},
            "/v1/messages/count_tokens": {"POST": count_tokens.handle},
            "/v1/models": {"GET": models},
            "/healthz": {"GET": healthz},
            "/readyz": {"GET": readyz},
            "/v1/health/backends": {"GET": backends_health},
            "/metrics": {"GET": MetricsEndpoint(metrics, metrics_guard(config.metrics.public, admin_digest)).handle},
        },
        max_body=config.gateway.max_body_bytes,
        sched_slice_us=config.gateway.sched_slice_us,
        header_timeout=config.gateway.header_timeout,
        body_timeout=config.gateway.body_timeout,
        send_timeout=config.gateway.send_timeout,
        shutdown_grace=config.gateway.shutdown_grace,
        startup=gateway.start,
        shutdown=gateway.aclose if spans is None else _then(gateway.aclose, spans.shutdown),
        reload=gateway.reload,
        before_body=door,
        error_shape=OnMessagesPaths(),
        closes=metrics.closes,
        on_server=metrics.watch_server,
    )


def _then(first: Callable[[], Awaitable[None]], last: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    """``first``, then ``last`` (in a thread: it may block on a network), whatever ``first`` did."""
    async def both() -> None:
        try:
            await first()
        finally:
            await asyncio.to_thread(last)
    return both


def tune_gc() -> None:
    """Keep the collector off the tail latency of a long-running server process.

    Called by the process that owns the server (``polyroute serve``, each worker), not
    by the app, so an app embedded elsewhere leaves its host's collector alone.

    Everything built at start (config, catalog, adapters, imported modules) lives as
    long as the process: frozen, no collection walks it again. The young generation's
    threshold is raised so collections come less often; a request makes few cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


# When this process began serving: each model's ``created`` (the config has no date for a name it gives).
STARTED = int(time.time())


def list_models(gateway: Gateway) -> list[dict[str, Any]]:
    fleet = gateway.fleet
    out: list[dict[str, Any]] = []
    for name, route in fleet.routes.items():
        if name in fleet.models:
            entry = fleet.models[name]
            out.append({
                "id": name, "object": "model", "created": STARTED,
                "owned_by": entry.organisation or "polyroute", "polyroute": entry.describe(),
            })
        else:
            out.append({
                "id": name, "object": "model", "created": STARTED, "owned_by": "polyroute",
                "polyroute": {"route": [m.name for m in route.models], "strategy": route.config.strategy,
                              "policy": route.config.policy},
            })
    return out


def app_from_env() -> App:
    """For worker processes: each builds its own gateway from the config."""
    from polyroute.settings import effective_config

    logs.setup()

    config: Config = effective_config(os.environ.get(CONFIG_ENV) or None)
    app = create_app(Gateway.from_config(config, load_catalog_for(config)))
    tune_gc()
    return app
