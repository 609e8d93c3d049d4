"""The gateway's process asks Linux for a short scheduling slice, for every thread, as configured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from polyroute import config as cfg
from polyroute import sched
from polyroute.errors import ConfigError
from tests.support.live import free_port

pytestmark = pytest.mark.skipif(sched.slice_ns() is None, reason="this kernel or architecture has no sched_getattr")

CONFIG = """
[gateway]
listen = "127.0.0.1:{port}"
sched_slice_us = {slice_us}
[backends.f]
type = "fake"
[models.echo]
backend = "f"
"""


def _serve(tmp_path: Path, slice_us: int) -> tuple[subprocess.Popen[str], Path, int]:
    port = free_port()
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(port=port, slice_us=slice_us))
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "polyroute", "serve", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=out, text=True)
    deadline = time.monotonic() + 60
    while "ready: accepting requests" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return proc, log, port


def _slices(pid: int) -> set[int | None]:
    return {sched.slice_ns(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


def test_every_thread_of_the_gateway_runs_with_the_configured_slice(tmp_path: Path) -> None:
    proc, log, port = _serve(tmp_path, 250)
    try:
        ask = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=ask, timeout=10).status_code == 200
        if "kernel's own" in log.read_text():
            pytest.skip("this kernel keeps its own slice for normal tasks (before EEVDF's custom slices)")
        assert "scheduling slice: 250 us" in log.read_text()
        assert _slices(proc.pid) == {250_000}  # the log writer and the threads started since included
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)


def test_zero_leaves_the_kernels_slice(tmp_path: Path) -> None:
    proc, log, _ = _serve(tmp_path, 0)
    try:
        assert "scheduling slice" not in log.read_text()
        assert _slices(proc.pid) == {sched.slice_ns()}  # what this test's own threads have
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)


def test_a_slice_the_kernel_would_not_give_is_refused_by_the_config() -> None:
    with pytest.raises(ConfigError, match="sched_slice_us"):
        cfg.parse({"gateway": {"sched_slice_us": 50}}, source="<test>", env={})
    assert cfg.parse({"gateway": {"sched_slice_us": 0}}, source="<test>", env={}).gateway.sched_slice_us == 0
