"""Own-core scenarios: the gateway's threads pinned to one CPU, the tools to the others."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench import procs
from bench.plan import CHAT, OWN_CORE, STREAM, Plan, Scenario

_TWO_THREADS = "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); time.sleep(30)"


def _allowed(pid: int) -> list[set[int]]:
    """The CPUs each thread of ``pid`` may run on."""
    return [os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


def test_own_core_scenarios_are_named_apart_from_the_shared_ones() -> None:
    names = [s.name for s in Plan().scenarios()]
    assert "chat-c64" in names and "chat-c64-own-core" in names and "stream-c64-own-core" in names
    assert Scenario(CHAT, 64, OWN_CORE).profile == Scenario(CHAT, 64).profile
    assert Scenario(STREAM, 64, OWN_CORE).stream
    assert not any(s.placement == OWN_CORE for s in Plan().scenarios(saturation_only=True))


@pytest.mark.skipif(procs.placement_cpus() is None, reason="pinning needs at least 2 CPUs")
def test_pin_moves_every_thread_of_a_process_and_back() -> None:
    cpus = procs.placement_cpus()
    assert cpus is not None
    tools, gateway = cpus
    assert tools and gateway and not tools & gateway
    proc = subprocess.Popen([sys.executable, "-c", _TWO_THREADS])
    try:
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{proc.pid}/task")) < 2:
            assert time.monotonic() < deadline, "the child never started its second thread"
            time.sleep(0.02)
        procs.pin(proc.pid, gateway)
        assert _allowed(proc.pid) == [gateway, gateway]
        every = set(os.sched_getaffinity(0))
        procs.pin(proc.pid, every)
        assert _allowed(proc.pid) == [every, every]
    finally:
        proc.kill()
        proc.wait()
