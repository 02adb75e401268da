"""What a checkpoint path holds: a Hugging Face folder or a GGUF file.

Decided by the file system and the file's first bytes, never by the name: ``model.GGUF`` or a
GGUF file saved without a suffix is still a GGUF file, and a folder is a Hugging Face folder
whatever it is called. ``~`` is expanded.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path

from ttc_jax.errors import CheckpointError

GGUF_MAGIC = b"GGUF"


class CheckpointKind(enum.Enum):
    HF_FOLDER = "Hugging Face folder"
    GGUF = "GGUF file"


def is_gguf_file(path: Path) -> bool:
    """Whether `path` is a regular file that starts with GGUF's magic bytes."""
    if not path.is_file():
        return False
    with path.open("rb") as file:
        return file.read(len(GGUF_MAGIC)) == GGUF_MAGIC


def locate_checkpoint(path: str | os.PathLike) -> tuple[Path, CheckpointKind]:
    """The checkpoint's path (``~`` expanded) and its kind; an error naming what is wrong else.

    A folder must hold ``config.json``; a file must be a GGUF file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path, CheckpointKind.HF_FOLDER
        gguf_files = sorted(child.name for child in path.iterdir() if is_gguf_file(child))
        hint = (
            f"; it holds the GGUF file(s) {', '.join(gguf_files)}: pass one" if gguf_files else ""
        )
        raise FileNotFoundError(
            f"{path} is a folder without config.json, so not a Hugging Face model folder{hint}"
        )
    if is_gguf_file(path):
        return path, CheckpointKind.GGUF
    if path.exists():
        raise CheckpointError(
            f"{path} is neither a GGUF file (it does not start with the bytes {GGUF_MAGIC!r}) "
            "nor a Hugging Face model folder (a folder with config.json and safetensors files)"
        )
    raise FileNotFoundError(
        f"{path} does not exist (expected a Hugging Face model folder with config.json, "
        "or a GGUF file)"
    )
