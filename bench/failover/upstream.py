"""``python -m bench.failover.upstream PORT``: the fault-injecting upstream, alone in its own process."""

from __future__ import annotations

import signal
import sys
import threading

from tests.support.fault_upstream import FaultUpstream


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FaultUpstream(int(sys.argv[1])) as up:
        print(f"fault upstream on {up.url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
