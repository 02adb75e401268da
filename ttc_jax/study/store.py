"""An append-only JSONL table of results that survives being killed at any moment.

Rows are appended in groups (a chunk of questions of one strategy at one budget), each group
one write, flushed and synced to disk before the next begins. Reading back keeps every
complete line, drops a torn last line (no newline: the write it belonged to never finished)
and keeps the first row of any key written twice, so a run killed mid-write and run again
loses no finished row and counts none twice. Rows are keyed by a tuple of their fields.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path


class RowStore:
    """Rows of one JSONL file, keyed by ``key_fields``."""

    def __init__(self, path: str | Path, key_fields: Sequence[str]):
        self.path = Path(path)
        self.key_fields = tuple(key_fields)
        self.rows: dict[tuple, dict] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            # A torn last line: cut it off, so the next append starts on a line of its own.
            with self.path.open("r+b") as file:
                file.truncate(len(complete))
        for number, line in enumerate(complete.decode().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.path}:{number}: not a JSON row ({e})") from e
            self.rows.setdefault(self.key(row), row)

    def key(self, row: dict) -> tuple:
        return tuple(row[field] for field in self.key_fields)

    def __contains__(self, key: tuple) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, key: tuple) -> dict | None:
        return self.rows.get(key)

    def append(self, rows: Iterable[dict]) -> None:
        """Writes the rows not already stored, in one write, synced before returning."""
        new = []
        for row in rows:
            key = self.key(row)
            if key not in self.rows:
                self.rows[key] = row
                new.append(row)
        if not new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in new)
        with self.path.open("a") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())

    def values(self) -> list[dict]:
        return list(self.rows.values())
