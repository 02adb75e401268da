"""The pipeline's working folder: where each stage keeps its outputs, and how they are read.

Layout (under ``config.workdir``)::

    data/tokenizer/             the world's tokenizer (tokenizer.json, tokenizer_config.json)
    <stage>/done.json           written last: the stage is complete (with its wall time)
    <stage>/checkpoints/        orbax checkpoints of a training stage (resumable)
    <stage>/model/              a trained model in Hugging Face layout, read by load_lm/load_prm
    <stage>/training.json       what trained it: command, config, seed, tokens, time, machine
    <stage>/chunks/NNNNN.jsonl  a sampling stage's results, one file per chunk of questions
    export/                     the five finished models and evaluation.json (by default:
                                ``output_dir`` may name another folder)

With several JAX processes (`ttc_jax.distributed`) only process 0 writes this folder; the
others keep what they need of it (the models a sampling stage reads) in a scratch folder of
their own, and the rows of a sampling stage reach process 0 through JAX collectives.

Every file is written to a temporary name and renamed, so a run killed at any moment leaves
either the whole file or none, and a restart redoes only what is missing.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ttc_jax import distributed
from ttc_jax.embedded.tokenizer import save_tokenizer
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.export import save_causal_lm, save_value_prm
from ttc_jax.models.params import Params


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def machine_description() -> str:
    """E.g. "2-core CPU (x86_64), 24 GiB, jax backend cpu"."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()}-core CPU ({platform.machine()}), {memory:.0f} GiB, "
        f"jax backend {jax.default_backend()}"
    )


def to_builtin(value: Any) -> Any:
    """ConfigDicts, dataclass-free containers and numpy scalars as plain JSON values."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return {str(k): to_builtin(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_builtin(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class Workspace:
    """Paths and shared resources of one pipeline run."""

    def __init__(self, config, command: str, scratch: Path | None = None):
        """``scratch``: on a process other than 0, its own folder standing in for the work
        directory (which only process 0 writes)."""
        self.config = config
        self.command = command
        self.root = Path(config.workdir) if scratch is None else Path(scratch)
        self.scratch = scratch is not None
        # Whether `run_chunks` deals its chunks over the processes (`distributed.deal`).
        self.split = False
        if not config.output_dir:
            raise ValueError(
                "output_dir must name the export folder (relative: under workdir); the "
                "package's checkpoints are replaced by `python -m ttc_jax.embedded.ship`"
            )
        self._tokenizer = None

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    @property
    def export_dir(self) -> Path:
        """Where `export` writes the finished models and `evaluate` reads them: ``output_dir``
        under the work directory, or as given if absolute."""
        if self.scratch:
            return self.root / "export"
        return self.root / self.config.output_dir

    # -- completion markers ---------------------------------------------------------------

    def is_done(self, stage: str) -> bool:
        return (self.stage_dir(stage) / "done.json").exists()

    def mark_done(self, stage: str, seconds: float) -> None:
        record = {"stage": stage, "seconds": round(seconds, 1), "finished": _now()}
        write_atomically(self.stage_dir(stage) / "done.json", json.dumps(record) + "\n")

    def stage_seconds(self, stage: str) -> float:
        return json.loads((self.stage_dir(stage) / "done.json").read_text())["seconds"]

    # -- tokenizer and model configs ------------------------------------------------------

    @property
    def tokenizer_dir(self) -> Path:
        return self.stage_dir("data") / "tokenizer"

    def write_tokenizer(self) -> None:
        save_tokenizer(self.tokenizer_dir)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer_dir))
        return self._tokenizer

    def model_config(self, model) -> ModelConfig:
        """The decoder of a config section's ``model`` fields, for this world's tokenizer."""
        tokenizer = self.tokenizer
        return ModelConfig(
            vocab_size=len(tokenizer),
            hidden_size=model.hidden_size,
            num_layers=model.num_layers,
            num_heads=model.num_heads,
            num_kv_heads=model.num_heads,
            head_dim=model.hidden_size // model.num_heads,
            intermediate_size=model.intermediate_size,
            max_position_embeddings=self.config.max_position_embeddings,
            rope_theta=10000.0,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_ids=(tokenizer.eos_token_id,),
        )

    # -- trained models -------------------------------------------------------------------

    def model_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / "model"

    def save_model(
        self,
        stage: str,
        cfg: ModelConfig,
        params: Params,
        record: dict,
        value_head: dict | None = None,
    ) -> Path:
        """Exports a causal LM (or, with ``value_head``, a ttc_value PRM) with the tokenizer
        and its training record; replaces an earlier export of the stage."""
        folder = self.model_dir(stage)
        staging = folder.with_name("model.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        if value_head is None:
            save_causal_lm(staging, cfg, params)
        else:
            save_value_prm(staging, cfg, params, value_head)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(self.tokenizer_dir / name, staging / name)
        full_record = {
            "stage": stage,
            "command": self.command,
            "seed": self.config.seed,
            "machine": machine_description(),
            "date": _now(),
            **record,
            "config": to_builtin(self.config),
        }
        (staging / "training.json").write_text(json.dumps(full_record, indent=2) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
        return folder

    # -- chunked results ------------------------------------------------------------------

    def chunk_path(self, stage: str, index: int) -> Path:
        return self.stage_dir(stage) / "chunks" / f"{index:05d}.jsonl"

    def run_chunks(
        self,
        stage: str,
        items: list,
        chunk_size: int,
        work: Callable[[int, list], Iterable[dict]],
        log: Callable[[str], None],
    ) -> list[dict]:
        """Runs ``work(chunk_index, items)`` on each chunk of ``items`` not yet written, then
        returns every chunk's rows in order.

        With ``split`` and several processes, process 0's written chunks are sent to the
        others and the chunks still to run dealt round-robin over the processes; each round's
        rows are gathered to every process, and process 0 writes them. A chunk's rows depend
        on its index and items alone, so they are what one process would write."""
        starts = range(0, len(items), chunk_size)
        if self.split and distributed.process_count() > 1:
            return self._run_chunks_split(stage, items, chunk_size, work, log)
        rows = []
        for index, start in enumerate(starts):
            path = self.chunk_path(stage, index)
            if not path.exists():
                chunk_rows = list(work(index, items[start : start + chunk_size]))
                write_atomically(path, "".join(json.dumps(r) + "\n" for r in chunk_rows))
                log(f"{stage}: chunk {index + 1}/{len(starts)} written ({len(chunk_rows)} rows)")
            rows.extend(_read_rows(path))
        return rows

    def _run_chunks_split(self, stage, items, chunk_size, work, log) -> list[dict]:
        starts = range(0, len(items), chunk_size)
        written = None
        if distributed.is_primary():
            written = [
                [index, _read_rows(self.chunk_path(stage, index))]
                for index in range(len(starts))
                if self.chunk_path(stage, index).exists()
            ]
        by_index = {index: rows for index, rows in distributed.broadcast(written)}
        missing = [index for index in range(len(starts)) if index not in by_index]

        def run(index: int) -> list[dict]:
            start = starts[index]
            return list(work(index, items[start : start + chunk_size]))

        for index, chunk_rows in distributed.deal(missing, run):
            if distributed.is_primary():
                text = "".join(json.dumps(r) + "\n" for r in chunk_rows)
                write_atomically(self.chunk_path(stage, index), text)
                log(f"{stage}: chunk {index + 1}/{len(starts)} written ({len(chunk_rows)} rows)")
            by_index[index] = chunk_rows
        return [row for index in range(len(starts)) for row in by_index[index]]

    def read_chunks(self, stage: str) -> list[dict]:
        """Every row a finished sampling stage wrote, in order."""
        paths = sorted((self.stage_dir(stage) / "chunks").glob("*.jsonl"))
        if not paths:
            raise FileNotFoundError(f"{self.stage_dir(stage)} holds no chunks; run {stage!r}")
        return [row for path in paths for row in _read_rows(path)]


def _read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
