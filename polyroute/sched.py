"""A short scheduling slice for the gateway's process (Linux's EEVDF scheduler, kernel 6.12 and later).

A gateway mostly waits: for a request, then for the upstream's answer. When one
comes, how soon it runs decides its added latency, and on a machine whose CPUs it
shares with busy processes the kernel's default slice lets a process it has just
woken, or one that woke it, keep the CPU first. A task that asks for a shorter
slice gets earlier deadlines: it runs sooner when woken and gives the CPU back
sooner when others wait, which shortens the gateway's added latency on a busy
machine (bench/README.md has the measurements).

The slice is asked for every thread of the process with ``sched_setattr(2)``
(``sched_runtime`` of a ``SCHED_OTHER`` task); threads started later inherit it.
Where the kernel or the architecture does not know the call, nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger("polyroute.sched")

# sched_setattr, sched_getattr
_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}
_SCHED_OTHER = 0


class _Attr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32),
        ("sched_util_max", ctypes.c_uint32),
    ]


def _get(libc: ctypes.CDLL, getattr_call: int, tid: int) -> _Attr | None:
    attr = _Attr()
    if libc.syscall(getattr_call, tid, ctypes.byref(attr), ctypes.sizeof(attr), 0) != 0:
        return None
    return attr


def slice_ns(tid: int = 0) -> int | None:
    """The slice the kernel gives thread ``tid`` (0: the caller), or None where it cannot say."""
    calls = _SYSCALLS.get(platform.machine())
    attr = _get(ctypes.CDLL(None, use_errno=True), calls[1], tid) if calls else None
    return int(attr.sched_runtime) if attr is not None and attr.sched_policy == _SCHED_OTHER else None


def request_slice(microseconds: int) -> bool:
    """Ask for a slice of ``microseconds`` for every thread of this process; whether the kernel took it."""
    calls = _SYSCALLS.get(platform.machine())
    if microseconds <= 0 or calls is None or not os.path.isdir("/proc/self/task"):
        return False
    setattr_call, getattr_call = calls
    libc = ctypes.CDLL(None, use_errno=True)
    wanted = microseconds * 1000
    took = True
    for tid in (int(t) for t in os.listdir("/proc/self/task")):
        attr = _get(libc, getattr_call, tid)
        if attr is None or attr.sched_policy != _SCHED_OTHER:
            return False  # no answer, or a real-time or batch policy set by the operator: theirs to keep
        attr.size, attr.sched_flags, attr.sched_runtime = ctypes.sizeof(attr), 0, wanted
        if libc.syscall(setattr_call, tid, ctypes.byref(attr), 0) != 0:
            log.info("scheduling slice of %d us not set: %s", microseconds, os.strerror(ctypes.get_errno()))
            return False
        after = _get(libc, getattr_call, tid)
        took = took and after is not None and after.sched_runtime == wanted
    return took
