"""The native load generator and instant upstream (``loadgen.c``, ``upstream.c`` and their
headers here), built on demand.

On a two-core machine the Python load generator and upstream cost enough CPU per
request, at the rates a saturated gateway reaches, to take a good part of a core
from the gateway they measure; these C twins cost a few microseconds per request.
``build()`` compiles them with the machine's C compiler into ``bench/.build/``
(git-ignored) when a source is newer than its binary. It returns None when there
is no C compiler and raises BuildError when compiling fails; either way the
runner falls back to the Python tools and says so in the results.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCES = Path(__file__).resolve().parent
BUILD_DIR = SOURCES.parent / ".build"
FLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")
PROGRAMS = ("loadgen", "upstream")


class BuildError(RuntimeError):
    """A C compiler is there but did not build a program; the message carries its output."""


@dataclass(frozen=True)
class Tools:
    loadgen: Path
    upstream: Path


def compiler() -> str | None:
    """$CC when set, else the first of cc, gcc, clang on PATH."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def build(out: Path = BUILD_DIR) -> Tools | None:
    """Both programs, compiled if needed; None when there is no C compiler."""
    cc = compiler()
    if cc is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    loadgen, upstream = (_build_one(cc, name, out) for name in PROGRAMS)
    return Tools(loadgen=loadgen, upstream=upstream)


def _build_one(cc: str, name: str, out: Path) -> Path:
    source, exe = SOURCES / f"{name}.c", out / name
    newest = max(p.stat().st_mtime for p in (source, *SOURCES.glob("*.h")))
    if exe.exists() and exe.stat().st_mtime >= newest:
        return exe
    tmp = out / f".{name}.{os.getpid()}.tmp"  # renamed into place: a concurrent build never sees half a binary
    argv = [cc, *FLAGS, "-o", str(tmp), str(source), "-lm"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{' '.join(argv)}: {exc}") from exc
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"{' '.join(argv)} exited with {proc.returncode}:\n{proc.stderr.strip()}")
    tmp.replace(exe)
    return exe
