"""Read tensors from a Hugging Face folder: ``model.safetensors`` or a sharded index.

The header of every file is validated with the safetensors library before anything is read (a
truncated or corrupt file fails here, naming the file); tensor data is then memory-mapped, which
also covers bfloat16, a dtype numpy cannot name.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import safetensors

from ttc_jax.errors import CheckpointError, CorruptCheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

_NUMPY_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
}


class SafetensorsSource:
    """Tensor names, shapes and data of a safetensors checkpoint, in transformers' layout."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.name = str(folder)
        self._entries: dict[str, tuple[Path, str, tuple[int, ...], int]] = {}
        for file in _checkpoint_files(folder):
            for key, entry in _read_header(file).items():
                if key in self._entries:
                    raise CheckpointError(
                        f"tensor {key!r} appears in both {self._entries[key][0].name} "
                        f"and {file.name}"
                    )
                self._entries[key] = entry

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {key: entry[2] for key, entry in self._entries.items()}

    def read(self, key: str) -> np.ndarray:
        file, dtype, shape, offset = self._entries[key]
        if dtype not in _NUMPY_DTYPES:
            raise CheckpointError(
                f"tensor {key!r} in {file.name} has dtype {dtype}; "
                f"expected one of {sorted(_NUMPY_DTYPES)}"
            )
        return np.memmap(file, dtype=_NUMPY_DTYPES[dtype], mode="r", offset=offset, shape=shape)


def _checkpoint_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    index = folder / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CorruptCheckpointError(f"{index} is not a valid safetensors index: {e}") from e
        files = sorted({folder / name for name in weight_map.values()})
        for file in files:
            if not file.exists():
                raise CheckpointError(f"{index.name} names shard {file.name}, which is missing")
        return files
    single = folder / SINGLE_FILE
    if single.exists():
        return [single]
    raise CheckpointError(f"{folder} has neither {SINGLE_FILE} nor {INDEX_FILE}")


def _read_header(file: Path) -> dict[str, tuple[Path, str, tuple[int, ...], int]]:
    """key -> (file, dtype, shape, absolute byte offset) for every tensor of one file."""
    try:
        with safetensors.safe_open(file, framework="numpy") as handle:
            keys = list(handle.keys())
    except Exception as e:  # the Rust SafetensorError is not importable by a stable name
        raise CorruptCheckpointError(f"{file} is not a readable safetensors file: {e}") from e
    with open(file, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    data_start = 8 + header_len
    return {
        key: (
            file,
            header[key]["dtype"],
            tuple(header[key]["shape"]),
            data_start + header[key]["data_offsets"][0],
        )
        for key in keys
    }
