"""``polyroute serve``: start the gateway."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Callable

from polyroute.config import Config


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="start the OpenAI-compatible gateway",
        description=(
            "Start the gateway. Without --config it serves the embedded SmolLM2-135M model "
            "in-process, plus every catalog model whose provider key variable is set "
            "(DEEPSEEK_API_KEY, OPENAI_API_KEY, ...)."
        ),
    )
    p.add_argument("--config", metavar="FILE", default=os.environ.get("POLYROUTE_CONFIG"),
                   help="TOML config file (default: $POLYROUTE_CONFIG, else the embedded default)")
    p.add_argument("--host", help="listen address (overrides gateway.listen)")
    p.add_argument("--port", type=_bounded(0, 65535), help="listen port (overrides gateway.listen)")
    p.add_argument("--workers", type=_bounded(1, 256), default=1, help="worker processes (default 1)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--allow-open", action="store_true",
                   help="serve without [keys] on a non-loopback address (only behind something that authenticates)")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective config with secrets redacted, then exit")
    p.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from polyroute.settings import effective_config

    config: Config = effective_config(args.config)
    if args.print_config:
        print(json.dumps(config.redacted(), indent=2))
        return 0
    host, port = config.gateway.host_port()
    host, port = args.host or host, args.port or port
    from polyroute import logs

    os.environ[logs.LEVEL_ENV] = args.log_level  # for worker processes, which set up their own
    logs.setup(args.log_level)
    log = logging.getLogger("polyroute")
    log.info("config %s: %d backends, %d models, routes: %s", config.source, len(config.backends),
             len(config.models), ", ".join(config.client_names()))
    from polyroute.catalog import load_catalog_for

    catalog = load_catalog_for(config)  # a bad [catalog] file stops here, before any socket is bound
    if config.catalog.files:
        log.info("catalog: %s", catalog.source)
    for key, var in config.unset_secrets():
        if key.startswith("keys."):
            log.warning("%s: %s is not set, so this key cannot be used; export it and restart", key, var)
        elif key == "admin.secret":
            log.warning("%s: %s is not set, so the admin API, /metrics and the console are off, and every client "
                        "still needs a key; export it and restart", key, var)
        elif key == "store.redis":
            log.warning("%s: %s is not set, so budgets and rate limits are counted in this process only, "
                        "not shared with other replicas; export it and restart", key, var)
        else:
            log.warning("%s: %s is not set; export %s=... and restart, or its models will fail over", key, var, var)
    if not config.keys and config.admin.secret is None:  # keys from the store need a key on every request
        if is_loopback(host):
            log.warning("no [keys] configured: the gateway is open to anyone on this machine (loopback only)")
        elif args.allow_open:
            log.warning("no [keys] configured and listening on %s: open to anyone who can reach it (--allow-open)",
                        host)
        else:
            log.error("no [keys] configured and listening on %s: refusing to serve an open gateway beyond "
                      "loopback; add [keys.NAME] to the config, listen on 127.0.0.1, or pass --allow-open", host)
            return 2

    from polyroute.adapters import check_installed
    from polyroute.cli.config_cmd import NO_MODELS
    from polyroute.server import workers

    if not config.models:
        log.warning("%s", NO_MODELS)
    from polyroute.cli.config_cmd import cautions_of

    for caution in cautions_of(config):
        log.warning("%s", caution)

    if args.config and args.workers > 1:
        os.environ["POLYROUTE_CONFIG"] = args.config  # each worker builds its gateway from it
    limited = any(c.limited for c in (*config.keys.values(), *config.teams.values()))
    if args.workers > 1 and config.store.redis is None and (limited or config.admin.secret is not None):
        log.warning("%d workers and no [store] redis: each worker counts budgets and rate limits on its own, "
                    "so a key may get up to %d times its limits; set [store] redis to share them exactly",
                    args.workers, args.workers)

    # What a backend type needs beyond the core package: said now, not by a worker's traceback.
    check_installed(config)
    app = None
    if args.workers == 1:
        from polyroute.gateway import Gateway
        from polyroute.server.app import create_app

        app = create_app(Gateway.from_config(config, catalog))
    try:
        sockets = workers.bind(host, port, args.workers)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        return 2

    def ready() -> None:
        # Only now: every socket listens and every backend has started (weights loaded).
        log.info("ready: accepting requests on %s:%d", host, port)
        print(f"polyroute: serving on http://{host}:{port}/v1 (models: {', '.join(config.client_names())})",
              file=sys.stderr, flush=True)

    if app is None:
        from polyroute.metrics import shared_across_workers

        with shared_across_workers():  # a scrape of any worker counts every worker's requests
            return workers.Supervisor(sockets, ready, config.gateway.shutdown_grace).run()
    from polyroute.server import serving
    from polyroute.server.app import tune_gc

    tune_gc()
    return serving.run(app, sockets, ready)
