"""Run a real polyroute gateway (uvicorn + the ASGI app) on a free localhost port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.gateway import Gateway
from polyroute.server.app import create_app
from polyroute.server.protocol import Protocol


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    base_url: str  # http://127.0.0.1:PORT/v1
    gateway: Gateway

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")


@contextmanager
def serve_app(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve any ASGI app in a background thread; yield its root URL."""
    port = port or free_port()
    # The HTTP protocol `polyroute serve` runs.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           loop="asyncio", lifespan="on", http=Protocol))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def live_gateway(raw: dict[str, Any] | cfg.Config, env: dict[str, str] | None = None) -> Iterator[Live]:
    config = raw if isinstance(raw, cfg.Config) else cfg.parse(raw, source="<test>", env=env or {})
    gateway = Gateway.from_config(config, load_catalog())
    with serve_app(create_app(gateway)) as root:
        yield Live(base_url=f"{root}/v1", gateway=gateway)
