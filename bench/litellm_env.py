"""LiteLLM's proxy in its own virtualenv (bench/.venv-litellm), created on first use.

LiteLLM is pinned; it never enters polyroute's environment. When the pinned
release's metadata asks for packages the index does not serve yet,
a plain ``pip install`` fails and litellm-overrides.txt says which close
releases stand in (installed with uv's ``--override``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LITELLM_VERSION = "1.109.1"
BENCH_DIR = Path(__file__).resolve().parent
VENV = BENCH_DIR / ".venv-litellm"
OVERRIDES = BENCH_DIR / "litellm-overrides.txt"
_INSTALL_TIMEOUT = 900.0


def python() -> Path:
    return VENV / "bin" / "python"


def executable() -> Path:
    return VENV / "bin" / "litellm"


def installed_version() -> str | None:
    if not python().exists():
        return None
    proc = subprocess.run(
        [str(python()), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def package_versions(names: list[str]) -> dict[str, str]:
    """Versions of packages inside the LiteLLM venv (those not installed are left out)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([str(python()), "-c", code, *names], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        return {}
    return {str(k): str(v) for k, v in json.loads(proc.stdout).items()}


def _run(argv: list[str], log: Path) -> bool:
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=_INSTALL_TIMEOUT, check=False)
    return proc.returncode == 0


def ensure(log: Path) -> str | None:
    """Make sure the pinned LiteLLM proxy is installed; return why not, or None when it is."""
    if installed_version() == LITELLM_VERSION and executable().exists():
        return None
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"bench: installing litellm[proxy]=={LITELLM_VERSION} into {VENV} (log: {log})", file=sys.stderr)
    if not python().exists() and not _run([sys.executable, "-m", "venv", str(VENV)], log):
        return f"could not create {VENV} (see {log})"
    pip = [str(python()), "-m", "pip", "install", "--quiet"]
    requirement = f"litellm[proxy]=={LITELLM_VERSION}"
    installed = _run([*pip, requirement], log)
    if not installed:
        installed = _run([*pip, "uv"], log) and _run(
            [
                str(VENV / "bin" / "uv"),
                "pip",
                "install",
                "--python",
                str(python()),
                "--system-certs",
                "--override",
                str(OVERRIDES),
                requirement,
            ],
            log,
        )
    if not installed or installed_version() != LITELLM_VERSION:
        return f"could not install {requirement} (see {log})"
    return None
