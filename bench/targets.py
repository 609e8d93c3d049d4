"""What the load generator talks to: the upstream itself, polyroute, or LiteLLM's proxy.

Every target serves two models against the same two fake upstreams: one that
answers after the fixed latency ("slow") and one that answers at once
("instant"). A target is prepared (may it run here?), then started inside the
runner's ExitStack so that its processes are stopped whatever happens.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench import litellm_env, procs, wire

REPO = Path(__file__).resolve().parent.parent
API_KEY = "sk-bench-0000"  # what clients send; LiteLLM checks it as its master key
UPSTREAM_KEY = "sk-bench-upstream"  # what gateways send upstream, read from env:BENCH_UPSTREAM_KEY
SLOW, INSTANT = "slow", "instant"
_MODELS = {SLOW: wire.MODEL_SLOW, INSTANT: wire.MODEL_INSTANT}


@dataclass(frozen=True)
class Upstreams:
    ports: dict[str, int]  # profile -> port of the fake upstream serving it


@dataclass(frozen=True)
class Route:
    port: int
    model: str


@dataclass
class Running:
    routes: dict[str, Route]  # profile -> where to send requests for it
    service: procs.Service | None = None  # the gateway process; None when direct
    notes: list[str] = field(default_factory=list)


class Target(Protocol):
    name: str
    workers: int

    def prepare(self, logs: Path) -> str | None:
        """None when the target can run here, else why it cannot."""

    def start(self, stack: ExitStack, upstreams: Upstreams, workdir: Path) -> Running: ...


class Direct:
    """The generator talks to the fake upstream itself: the baseline."""

    name = "direct"
    workers = 0

    def prepare(self, logs: Path) -> str | None:
        return None

    def start(self, stack: ExitStack, upstreams: Upstreams, workdir: Path) -> Running:
        return Running({p: Route(port, _MODELS[p]) for p, port in upstreams.ports.items()})


def _gateway_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LITELLM_", "DATABASE_URL"))}
    env.update(BENCH_UPSTREAM_KEY=UPSTREAM_KEY, NO_PROXY="127.0.0.1,localhost", **extra)
    return env


def _launch(
    stack: ExitStack, name: str, argv: list[str], workdir: Path, env: dict[str, str], port: int, cwd: Path
) -> procs.Service:
    service = procs.Service(name, argv, workdir / f"{name}.log", env=env, cwd=cwd)
    stack.callback(service.stop)
    procs.wait_for_chat(port, wire.MODEL_INSTANT, service, timeout=120.0, api_key=API_KEY)
    return service


class Polyroute:
    """``polyroute serve`` with N workers, configured by TOML for the two upstreams."""

    def __init__(self, workers: int = 1, client: str = "builtin", tenancy: str = "") -> None:
        self.workers = workers
        self.client = client  # [gateway] upstream_client: the home-made upstream client or aiohttp's
        # TOML appended to the config: keys, budgets, rate limits and their stores (bench.tenancy).
        self.tenancy = tenancy
        self.name = "polyroute" if workers == 1 else f"polyroute-w{workers}"
        if client != "builtin":
            self.name += f"-{client}"
        if tenancy:
            self.name += "-tenancy"

    def command(self) -> list[str] | None:
        script = REPO / ".venv" / "bin" / "polyroute"
        if script.exists():
            return [str(script)]
        if (REPO / "polyroute" / "cli" / "serve.py").exists():
            python = REPO / ".venv" / "bin" / "python"
            return [str(python if python.exists() else sys.executable), "-m", "polyroute"]
        return None

    def prepare(self, logs: Path) -> str | None:
        command = self.command()
        if command is None:
            return "polyroute serve is not available yet (no .venv/bin/polyroute, no polyroute/cli/serve.py)"
        if self.client == "aiohttp" and not _has_aiohttp(command):
            return "aiohttp is not installed: pip install 'polyroute[aiohttp]'"
        return None

    def config(self, port: int, upstreams: Upstreams) -> str:
        # The scheduling slice is opt-in (off by default): the benchmark asks for it, as measured so far.
        lines = ["[gateway]", f'listen = "127.0.0.1:{port}"', "sched_slice_us = 100"]
        if self.client != "builtin":
            lines.append(f'upstream_client = "{self.client}"')
        lines.append("")
        for profile, up_port in upstreams.ports.items():
            lines += [
                f"[backends.up-{profile}]",
                'type = "openai"',
                f'base_url = "http://127.0.0.1:{up_port}/v1"',
                'api_key = "env:BENCH_UPSTREAM_KEY"',
                # The fake upstream answers a whole request after its first-token latency alone, sooner
                # than it streams the same 20 tokens; streamed and assembled (the default) the gateway
                # would wait for the last token, and be compared with a direct call that does not.
                "assemble_from_stream = false",
                "",
                f"[models.{_MODELS[profile]}]",
                f'backend = "up-{profile}"',
                f'upstream = "{_MODELS[profile]}"',
                "",
            ]
        if self.tenancy:
            lines.append(self.tenancy)
        return "\n".join(lines)

    def start(self, stack: ExitStack, upstreams: Upstreams, workdir: Path) -> Running:
        command = self.command()
        assert command is not None
        port = procs.free_port()
        cfg = workdir / f"{self.name}.toml"
        cfg.write_text(self.config(port, upstreams))
        argv = [*command, "serve", "--config", str(cfg), "--port", str(port), "--workers", str(self.workers)]
        keys = {"BENCH_CLIENT_KEY": API_KEY, "BENCH_ADMIN_KEY": "sk-bench-admin"} if self.tenancy else {}
        env = _gateway_env(**keys)
        service = _launch(stack, self.name, argv, workdir, env, port, cwd=REPO)
        return Running({p: Route(port, _MODELS[p]) for p in upstreams.ports}, service)


def _has_aiohttp(command: list[str]) -> bool:
    """Whether the Python that runs polyroute can import aiohttp (the ``aiohttp`` extra)."""
    python = str(Path(command[0]).parent / "python") if len(command) == 1 else command[0]
    if not Path(python).exists():
        python = sys.executable
    return subprocess.run([python, "-c", "import aiohttp"], capture_output=True, check=False).returncode == 0


class LiteLLM:
    """LiteLLM's proxy, one worker, configured as its production guide says, without a database."""

    name = "litellm"

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers

    def prepare(self, logs: Path) -> str | None:
        return litellm_env.ensure(logs / "litellm-install.log")

    def config(self, upstreams: Upstreams) -> str:
        lines = ["model_list:"]
        for profile, up_port in upstreams.ports.items():
            lines += [
                f"  - model_name: {_MODELS[profile]}",
                "    litellm_params:",
                f"      model: openai/{_MODELS[profile]}",
                f"      api_base: http://127.0.0.1:{up_port}/v1",
                "      api_key: os.environ/BENCH_UPSTREAM_KEY",
            ]
        # docs/proxy/prod.md: a master key, debug logging off, spend/error logs off (no database here).
        lines += [
            "litellm_settings:",
            "  request_timeout: 600",
            "  set_verbose: false",
            "  json_logs: true",
            "general_settings:",
            "  master_key: os.environ/LITELLM_MASTER_KEY",
            "  disable_spend_logs: true",
            "  disable_error_logs: true",
            "",
        ]
        return "\n".join(lines)

    def start(self, stack: ExitStack, upstreams: Upstreams, workdir: Path) -> Running:
        port = procs.free_port()
        cfg = workdir / "litellm.yaml"
        cfg.write_text(self.config(upstreams))
        argv = [str(litellm_env.executable()), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--num_workers", str(self.workers)]
        env = _gateway_env(
            LITELLM_MASTER_KEY=API_KEY,
            LITELLM_LOCAL_MODEL_COST_MAP="True",  # no internet: use the bundled cost map
            LITELLM_LOG="ERROR",  # prod.md: turn off FastAPI's info logs
            LITELLM_MODE="PRODUCTION",  # prod.md: no load_dotenv()
        )
        service = _launch(stack, self.name, argv, workdir, env, port, cwd=workdir)
        return Running({p: Route(port, _MODELS[p]) for p in upstreams.ports}, service)
