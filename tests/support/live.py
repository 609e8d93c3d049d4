"""Run a real polyroute gateway (the server `polyroute serve` runs) on a free localhost port."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.gateway import Gateway
from polyroute.server.app import create_app
from polyroute.server.dispatch import App
from polyroute.server.serving import Server
from tests.support.clients import with_client


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
def serve_app(app: App, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` in a background thread with its own event loop; yield its root URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port or 0))
    sock.listen(1024)
    bound = sock.getsockname()[1]
    server = Server(app)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve([sock]))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while not server.started.wait(0.05):
        if not thread.is_alive():
            sock.close()
            raise RuntimeError(f"test server did not start: {failed!r}")
    try:
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.stop()
        thread.join(timeout=15)
        sock.close()


@contextmanager
def live_gateway(raw: dict[str, Any] | cfg.Config, env: dict[str, str] | None = None) -> Iterator[Live]:
    config = raw if isinstance(raw, cfg.Config) else cfg.parse(with_client(raw), source="<test>", env=env or {})
    gateway = Gateway.from_config(config, load_catalog())
    with serve_app(create_app(gateway)) as root:
        yield Live(base_url=f"{root}/v1", gateway=gateway)
