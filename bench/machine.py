"""What a result was measured on: the machine and the versions of everything involved."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import litellm_env

REPO = Path(__file__).resolve().parent.parent
_GATEWAY_PACKAGES = ["httptools", "uvloop", "orjson", "pydantic", "httpx"]
_LITELLM_PACKAGES = ["litellm", "uvicorn", "fastapi", "starlette", "httpx", "openai", "uvloop", "aiohttp", "pydantic"]


def _first(path: str, pattern: str) -> str | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    m = re.search(pattern, text, re.MULTILINE)
    return m.group(1).strip() if m else None


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def jitter(seconds: float = 2.0, nap: float = 0.001) -> dict[str, Any]:
    """How late an idle process wakes from 1 ms naps: a host that takes the CPUs away shows here.

    A virtual machine's CPUs are now and then given to others for milliseconds at a
    time; every process on it, gateway or not, then answers that much later, which
    is what a p99 here mostly measures. Read with the load average.
    """
    late: list[float] = []
    naps = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        time.sleep(nap)
        late.append(time.perf_counter() - t - nap)
        naps += 1
    late.sort()
    return {
        "naps": naps,
        "late_over_3ms": sum(1 for x in late if x > 0.003),
        "p50_late_ms": round(late[len(late) // 2] * 1e3, 3) if late else None,
        "worst_late_ms": round(late[-1] * 1e3, 1) if late else None,
    }


def machine(jitter_s: float = 2.0) -> dict[str, Any]:
    mem_kb = _first("/proc/meminfo", r"^MemTotal:\s+(\d+)")
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _first("/proc/cpuinfo", r"^model name\s*:\s*(.+)$") or platform.processor(),
        "memory_gib": round(int(mem_kb) / 2**20, 1) if mem_kb else None,
        "kernel": platform.release(),
        "loadavg_at_start": load(),
        "jitter_at_start": jitter(jitter_s),
    }


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    sha = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--", "polyroute")
    out: dict[str, Any] = {
        "python": sys.version.split()[0],
        "polyroute_git_sha": sha,
        "polyroute_tree_dirty": bool(dirty) if dirty is not None else None,
        "polyroute": _first(str(REPO / "polyroute" / "__init__.py"), r"__version__\s*=\s*['\"]([^'\"]+)"),
        "gateway_env": {n: v for n in _GATEWAY_PACKAGES if (v := _version(n))},
    }
    if litellm_env.installed_version():
        out["litellm_env"] = litellm_env.package_versions(_LITELLM_PACKAGES)
        out["litellm"] = out["litellm_env"].get("litellm")
    return out
