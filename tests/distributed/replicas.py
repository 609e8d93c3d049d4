"""Several real `polyroute serve` processes sharing one Redis and one store, as replicas behind a balancer.

Every replica reads the same config but for its port. The fleet has a fake backend
(``echo`` answers after ``SLOW_MS``, so requests overlap; ``quick`` at once) and an
OpenAI-compatible backend ``up`` on a fault upstream whose model ``dead`` is
region-blocked (a 403 that opens the backend's breaker at once), before ``quick`` in
the route ``guarded``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.live import free_port
from tests.support.wait import wait_until

SLOW_MS = 300
ADMIN = "sk-admin-0123456789abcdef0123"
ENV = {"ADMIN_KEY": ADMIN, "LIMITED_KEY": "sk-limited-0123456789abcdef", "FREE_KEY": "sk-free-0123456789abcdef"}
START_TIMEOUT = 60.0

CONFIG = """
[gateway]
listen = "127.0.0.1:{port}"

[gateway.breakers]
probe_interval = 60.0

[backends.f]
type = "fake"

[backends.up]
type = "openai"
base_url = "{upstream}"
timeout = 5.0
connect_timeout = 5.0

[models.echo]
backend = "f"
upstream = "slow-{slow_ms}+echo"
input_per_mtok = 1000.0
output_per_mtok = 2000.0

[models.quick]
backend = "f"

[models.dead]
backend = "up"
upstream = "block"

[routes.guarded]
models = ["dead", "quick"]

[keys.limited]
secret = "env:LIMITED_KEY"
rpm = 20

[keys.free]
secret = "env:FREE_KEY"

[admin]
secret = "env:ADMIN_KEY"

[store]
url = "{store_url}"
redis = "{redis_url}"
redis_prefix = "{prefix}"
share_breakers = true
flush_interval = 0.2
"""


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def replica(workdir: Path, index: int, **fields: object) -> Iterator[Replica]:
    port = free_port()
    config = workdir / f"replica{index}.toml"
    config.write_text(CONFIG.format(port=port, slow_ms=SLOW_MS, **fields))
    log_path = workdir / f"replica{index}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "polyroute", "serve", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=out, env={**os.environ, **ENV})
    r = Replica(proc, port, log_path)
    try:
        wait_until(lambda: "ready: accepting requests" in r.log() or proc.poll() is not None, START_TIMEOUT)
        assert proc.poll() is None, r.log()
        yield r
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@contextmanager
def replicas(workdir: Path, count: int, **fields: object) -> Iterator[list[Replica]]:
    """``count`` replicas; ``fields`` fill the config (store_url, redis_url, prefix, upstream)."""
    with ExitStack() as stack:
        yield [stack.enter_context(replica(workdir, i, **fields)) for i in range(count)]
