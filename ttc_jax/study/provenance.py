"""What produced a study's rows, recorded beside them, so that a rerun never mixes settings.

A study's rows are keyed by (question, strategy, budget, seed); the key does not say which
models, prompt, sampling settings or difficulty settings made them. So the first run writes
``study.json`` into the work directory: every setting a row depends on, and a digest of each
model. A later run into the same directory compares its own settings with that record before
any model loads or any row is computed:

* budgets, strategies, revision ratios and the questions (levels, per_level, limit) are not
  recorded: adding some extends the study, since their rows are keyed;
* a model that was absent (no revisions, no larger policy) may be added: no row depended on
  it. Once recorded, a model may be left out of a later run but not replaced;
* any other difference is a `StudyMismatchError` naming every field that differs.

Analysis-only settings (difficulty bins, exchange ratios, ``max_rows``) are not recorded
either: they change no row's meaning, only how rows are read or grouped into calls.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from ttc_jax import distributed, problem_sources

RECORD = "study.json"
ROW_FILES = ("results.jsonl", "difficulty.jsonl")
MODEL_FIELDS = ("policy", "prm", "policy_14x", "revision", "revision_verifier")
# Files of a model folder whose bytes make the model (weights, configs, tokenizer).
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".gguf", ".model", ".txt")


class StudyMismatchError(ValueError):
    """A work directory holds rows made with other settings than the run's."""


def row_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The settings a row depends on, flattened to ``field.path -> value``."""
    data = config.data
    settings = {
        "seed": config.seed,
        "data.source": data.source,
        **problem_sources.get(data.source).identity(data),
        "difficulty.samples": config.difficulty.samples,
        "difficulty.charged_samples": config.difficulty.charged_samples,
        "models.prm_kind": config.models.prm_kind,
        "models.revision_verifier_kind": config.models.revision_verifier_kind,
        "models.dtype": config.models.dtype,
    }
    settings.update(_flatten("search", config.search.to_dict()))
    return _jsonable(settings)


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            out.update(_flatten(f"{prefix}.{key}", item))
        return out
    return {prefix: value}


def _jsonable(value: Any) -> Any:
    """Tuples as lists, as they come back from JSON, so a record compares equal to itself."""
    return json.loads(json.dumps(value))


def file_digest(path: Path) -> str:
    """sha256 of a file, or of a folder's model files (names and bytes, in name order)."""
    digest = hashlib.sha256()
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES)
    )
    for file in files:
        digest.update(file.name.encode() + b"\x00")
        with file.open("rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def params_digest(*trees: Any) -> str:
    """sha256 of models given already loaded (a notebook's): their parameters' bytes."""
    digest = hashlib.sha256()
    for tree in trees:
        for leaf in jax.tree.leaves(tree):
            array = np.asarray(leaf)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def model_digests_from_paths(models: ml_collections.ConfigDict, resolve) -> dict[str, str | None]:
    """Each configured model's file digest (None for a model left out)."""
    return {
        field: file_digest(resolve(models[field])) if models[field] else None
        for field in MODEL_FIELDS
    }


def model_digests_of(models) -> dict[str, str | None]:
    """Each loaded model's parameter digest (`ttc_jax.study.StudyModels`)."""
    out = {}
    for field in MODEL_FIELDS:
        model = getattr(models, field)
        if model is None:
            out[field] = None
        elif hasattr(model, "head_params"):  # a PRM: its backbone and its head
            out[field] = params_digest(model.backbone.params, model.head_params)
        else:
            out[field] = params_digest(model.params)
    return out


def differences(recorded: Mapping, current: Mapping) -> list[str]:
    """Fields whose values differ, each as ``field: recorded -> current``."""
    out = []
    for field in sorted(set(recorded) | set(current)):
        before, after = recorded.get(field, "(unset)"), current.get(field, "(unset)")
        if before != after:
            out.append(f"{field}: {before!r} -> {after!r}")
    return out


def check_or_record(workdir: Path, settings: dict, digests: Mapping[str, str | None]) -> None:
    """Records the settings and model digests of a new study in ``workdir``; for a study
    already there, raises `StudyMismatchError` unless the run only extends it (see the
    module docstring), and records models it adds.

    With several processes (`ttc_jax.distributed`) the work directory is process 0's: it
    reads the record and sends it to the others, every process checks its own settings
    against it (so all reach the same decision) and process 0 alone writes."""
    distributed.check_same("settings or models", [settings, dict(digests)])
    path = workdir / RECORD
    on_disk = None
    if distributed.is_primary():
        on_disk = {
            "record": json.loads(path.read_text()) if path.exists() else None,
            "unrecorded": [name for name in ROW_FILES if (workdir / name).exists()],
        }
    on_disk = distributed.broadcast(on_disk)
    record = _checked(workdir, on_disk["record"], on_disk["unrecorded"], settings, digests)
    if record is not None and distributed.is_primary():
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _checked(
    workdir: Path,
    record: dict | None,
    unrecorded: list[str],
    settings: dict,
    digests: Mapping[str, str | None],
) -> dict | None:
    """The record to write (None when the one there stands), or `StudyMismatchError`."""
    current_models = {field: digests.get(field) for field in MODEL_FIELDS}
    if unrecorded and record is None:
        raise StudyMismatchError(
            f"{workdir} holds {' and '.join(unrecorded)} but no {RECORD}, so what made its "
            "rows cannot be checked: choose another work directory (or delete that one)"
        )
    if record is not None:
        recorded_models = record["models"]
        changed = differences(record["settings"], settings)
        for field in MODEL_FIELDS:
            before, after = recorded_models.get(field), current_models[field]
            if before is not None and after is not None and before != after:
                changed.append(
                    f"models.{field}: another model (digest {before[:12]} -> {after[:12]})"
                )
        if changed:
            raise StudyMismatchError(
                f"{workdir} holds a study made with other settings; rerun with the same "
                "settings (adding budgets, strategies or questions is fine) or choose another "
                "work directory. Differences:\n  " + "\n  ".join(changed)
            )
        added = {
            f: d
            for f, d in current_models.items()
            if d is not None and recorded_models.get(f) is None
        }
        if not added:
            return None
        current_models = {**recorded_models, **added}
    return {"settings": settings, "models": current_models}
