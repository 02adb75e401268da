"""`run_study`: the paper's experiment end to end, resumable and deterministic.

Stages, each skipped where its rows are already in the work directory:

1. difficulty: K samples per question (their own seed) give each question's pass@1 (oracle
   difficulty) and the PRM's mean final score (predicted difficulty), stored in
   ``difficulty.jsonl``;
2. the sweep: every strategy label at every budget it fits, over every question, appended to
   ``results.jsonl`` one chunk of questions at a time (chunks are fixed by the question order
   and the batch size, so a rerun recomputes exactly the chunks it lacks, with the same
   shapes, hence the same rows);
3. the larger policy's greedy answers (the FLOPs exchange);
4. analysis and outputs (`ttc_jax.study.analysis`, `ttc_jax.study.report`).

Seeds derive from (strategy family, budget, study seed) and the question itself (through its
prompt), so a row does not depend on which other rows were computed, or when.

On several JAX processes (`ttc_jax.distributed`) each stage's chunks - the same chunks one
process would run - are dealt round-robin: in round r, process p runs chunk r * P + p on its
own devices (no collective inside a search), then every process gathers the round's rows in
chunk order. Process 0 alone reads and writes the work directory: it sends the rows already
there to the others at the start, so every process skips the same chunks and ends with the
same rows, summary and strategy table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import ml_collections
from tqdm import tqdm

import ttc_jax
from ttc_jax import distributed, problem_sources
from ttc_jax.lm import LanguageModel
from ttc_jax.math.datasets import Problem
from ttc_jax.prm import PRM
from ttc_jax.search import run
from ttc_jax.search.candidates import choose
from ttc_jax.search.results import SearchResult
from ttc_jax.sharding import make_mesh
from ttc_jax.study import analysis, provenance
from ttc_jax.study.config import check_study_config, resolve_path
from ttc_jax.study.difficulty import mean_final_score, pass_rate
from ttc_jax.study.specs import (
    SHARED_RUNS,
    Cell,
    configured,
    derived_seed,
    grid,
    labels_of,
)
from ttc_jax.study.store import RowStore

log = logging.getLogger(__name__)

RESULT_KEY = ("question_id", "strategy", "budget", "seed")
DIFFICULTY_KEY = ("question_id", "seed")
LARGER = "larger_greedy"


@dataclasses.dataclass
class StudyModels:
    policy: LanguageModel
    prm: PRM
    policy_14x: LanguageModel | None = None
    revision: LanguageModel | None = None
    revision_verifier: PRM | None = None


def load_models(config: ml_collections.ConfigDict) -> StudyModels:
    models = config.models
    # This process's own first device: with several processes, jax.devices() starts with
    # process 0's.
    mesh = make_mesh(1, 1, jax.local_devices())

    def lm(field):
        if not models[field]:
            return None
        return ttc_jax.load_lm(resolve_path(models[field]), models.dtype, mesh)

    def prm(field, kind):
        path = models[field]
        return ttc_jax.load_prm(resolve_path(path), kind, models.dtype, mesh) if path else None

    return StudyModels(
        policy=lm("policy"),
        prm=prm("prm", models.prm_kind),
        policy_14x=lm("policy_14x"),
        revision=lm("revision"),
        revision_verifier=prm("revision_verifier", models.revision_verifier_kind),
    )


def load_problems(config: ml_collections.ConfigDict) -> list[Problem]:
    data = config.data
    problems = problem_sources.get(data.source).load(data)
    if data.limit:
        problems = problems[: data.limit]
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise ValueError("the study's problems must have distinct ids")
    return problems


def _base_search(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(config.search.to_dict())


def _chunks(problems: Sequence[Problem], size: int) -> list[list[Problem]]:
    return [list(problems[i : i + size]) for i in range(0, len(problems), size)]


class HeldRows(RowStore):
    """The rows of a process other than 0: process 0's, kept in memory (its disk is not
    necessarily process 0's), and extended as process 0's are."""

    def __init__(self, key_fields: Sequence[str], rows: list[dict]):
        self.path = None
        self.key_fields = tuple(key_fields)
        self.rows = {}
        self.append(rows)

    def append(self, rows) -> None:
        for row in rows:
            self.rows.setdefault(self.key(row), row)


def shared_store(path: Path, key_fields: Sequence[str]) -> RowStore:
    """Process 0's rows at ``path``, on every process."""
    store = RowStore(path, key_fields) if distributed.is_primary() else None
    rows = distributed.broadcast(store.values() if store is not None else None)
    return store if store is not None else HeldRows(key_fields, rows)


class Study:
    """One study's data, models and stores; `run` does every stage."""

    def __init__(
        self,
        config,
        models: StudyModels,
        problems,
        progress: bool = True,
        model_digests: dict[str, str | None] | None = None,
    ):
        """``model_digests``: each model's digest (`ttc_jax.study.provenance`), by default
        from the loaded parameters. A work directory holding rows of other settings is a
        `StudyMismatchError` here, before any compute."""
        self.config = config
        self.models = models
        self.problems = problems
        self.workdir = Path(config.workdir).expanduser()
        digests = provenance.model_digests_of(models) if model_digests is None else model_digests
        # Where a process would write is its own: only process 0's work directory is used.
        shared = {k: v for k, v in config.to_dict().items() if k != "workdir"}
        distributed.check_same("config or questions", [shared, [p.id for p in problems]])
        provenance.check_or_record(self.workdir, provenance.row_settings(config), digests)
        self.results = shared_store(self.workdir / "results.jsonl", RESULT_KEY)
        self.difficulty = shared_store(self.workdir / "difficulty.jsonl", DIFFICULTY_KEY)
        self.progress = progress and distributed.is_primary()

    # -- stages -------------------------------------------------------------------------------

    def run_difficulty(self) -> None:
        """K samples per question: pass@1 and the PRM's mean final score (all K, and the
        first ``charged_samples`` for the charged estimate)."""
        k = self.config.difficulty.samples
        charged = self.config.difficulty.charged_samples
        strategy = configured("best_of_n", _base_search(self.config))
        seed = derived_seed("difficulty", k, self.config.seed)
        todo = [p for p in self.problems if (p.id, self.config.seed) not in self.difficulty]

        def compute(chunk: list[Problem]) -> list[dict]:
            results = run(
                strategy,
                self.models.policy,
                self.models.prm,
                chunk,
                k,
                seed,
                max_rows=self.config.max_rows,
            )
            rows = []
            for problem, result in zip(chunk, results, strict=True):
                scores = [c.score for c in result.candidates]
                fraction = charged / k
                rows.append(
                    {
                        "question_id": problem.id,
                        "seed": self.config.seed,
                        "level": problem.level,
                        "samples": k,
                        "oracle": pass_rate(result.candidates, problem.answer),
                        "predicted": mean_final_score(scores),
                        "predicted_charged": mean_final_score(scores[:charged]),
                        "charged_samples": charged,
                        # The charged estimate's share of the K samples' compute.
                        "charged_flops": fraction * result.accounting.flops,
                    }
                )
            return rows

        chunks = _chunks(todo, max(1, self.config.max_rows // k))
        self._run_chunks(chunks, compute, self.difficulty, "difficulty")

    def labels(self) -> list[str]:
        """Every strategy label this study measures, cheaper and simpler ones first."""
        return labels_of(self.config, self.models.revision is not None)

    def cells(self) -> list[Cell]:
        labels = self.labels()
        # Labels computed from another label's run, when that label runs too.
        shared = {label for label, source in SHARED_RUNS.items() if source in labels}
        return [
            c
            for c in grid(labels, self.config.budgets, _base_search(self.config))
            if c.label not in shared
        ]

    def run_sweep(self) -> None:
        cells = self.cells()
        with self._bar(len(cells), "sweep", "cell") as bar:
            for cell in cells:
                self._run_cell(cell)
                bar.update()

    def _run_cell(self, cell: Cell) -> None:
        config = self.config
        lm, prm = self.models.policy, self.models.prm
        if cell.uses_revision_model:
            lm, prm = self.models.revision, self.models.revision_verifier
        also = [
            label
            for label, source in SHARED_RUNS.items()
            if source == cell.label and label in self.labels()
        ]
        family = "parallel" if cell.config.name == "best_of_n" else cell.label
        seed = derived_seed(family, cell.budget, config.seed)
        per_call = max(1, config.max_rows // cell.search_budget)

        def done(chunk: list[Problem]) -> bool:
            keys = [
                (p.id, label, cell.budget, config.seed)
                for p in chunk
                for label in [cell.label, *also]
            ]
            return all(key in self.results for key in keys)

        def compute(chunk: list[Problem]) -> list[dict]:
            results = run(
                cell.config, lm, prm, chunk, cell.search_budget, seed, max_rows=config.max_rows
            )
            rows = [self._row(p, cell.label, cell, r) for p, r in zip(chunk, results, strict=True)]
            for label in also:
                rows += [
                    self._row(p, label, cell, _reselected(r, label, p))
                    for p, r in zip(chunk, results, strict=True)
                ]
            return rows

        todo = [chunk for chunk in _chunks(self.problems, per_call) if not done(chunk)]
        self._run_chunks(todo, compute, self.results)

    def run_larger(self) -> None:
        """The larger policy's greedy answer to each question (one sample, no verifier)."""
        if self.models.policy_14x is None:
            return
        strategy = configured("majority", _base_search(self.config))
        strategy.temperature = 0.0
        todo = [p for p in self.problems if (p.id, LARGER, 1, self.config.seed) not in self.results]
        cell = Cell(LARGER, 1, 1, strategy)

        def compute(chunk: list[Problem]) -> list[dict]:
            results = run(
                strategy, self.models.policy_14x, None, chunk, 1, 0, max_rows=self.config.max_rows
            )
            return [self._row(p, LARGER, cell, r) for p, r in zip(chunk, results, strict=True)]

        chunks = _chunks(todo, self.config.max_rows)
        self._run_chunks(chunks, compute, self.results, "larger policy")

    def _row(self, problem: Problem, label: str, cell: Cell, result: SearchResult) -> dict:
        accounting = dataclasses.asdict(result.accounting)
        return {
            "question_id": problem.id,
            "level": problem.level,
            "strategy": label,
            "budget": cell.budget,
            "search_budget": cell.search_budget,
            "seed": self.config.seed,
            "answer": result.answer,
            "correct": bool(result.correct),
            "candidates": len(result.candidates),
            **accounting,
        }

    def _run_chunks(
        self,
        chunks: list[list[Problem]],
        compute: Callable[[list[Problem]], list[dict]],
        store: RowStore,
        stage: str | None = None,
    ) -> None:
        """``compute``s each chunk's rows and appends them to ``store``, the chunks dealt
        round-robin over the processes (see the module docstring); ``stage`` names a
        progress bar of every process's calls."""
        count, index = distributed.process_count(), distributed.process_index()
        with self._bar(len(chunks) if stage else 0, stage, "call") as bar:
            for start in range(0, len(chunks), count):
                mine = chunks[start + index] if start + index < len(chunks) else None
                gathered = distributed.allgather(compute(mine) if mine else [])
                store.append([row for rows in gathered for row in rows])
                bar.update(min(count, len(chunks) - start))

    def _bar(self, total: int, stage: str | None, unit: str) -> tqdm:
        """A progress bar on process 0 (a silent one elsewhere, or for no stage); used as a
        context manager, so an interrupt closes it before the command's last line."""
        return tqdm(total=total, desc=stage, unit=unit, disable=not (self.progress and stage))

    # -- everything ---------------------------------------------------------------------------

    def run(self) -> dict:
        self.run_difficulty()
        self.run_sweep()
        self.run_larger()
        summary = analysis.analyse(self)
        if distributed.is_primary():
            from ttc_jax.study import report

            report.write_outputs(self, summary)
        return summary


def _reselected(result: SearchResult, label: str, problem: Problem) -> SearchResult:
    """The same candidates chosen another way (majority from a best-of-N run): the verifier
    was not needed, so its compute is not charged."""
    from ttc_jax.math.grading import is_equiv

    chosen = choose(result.candidates, "majority")
    answer = None if chosen is None else result.candidates[chosen].answer
    accounting = dataclasses.replace(result.accounting, verifier_tokens=0, verifier_flops=0.0)
    correct = None if not problem.answer else is_equiv(answer, problem.answer)
    return dataclasses.replace(
        result, strategy=label, answer=answer, correct=correct, accounting=accounting
    )


def run_study(
    config: ml_collections.ConfigDict,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    models: StudyModels | None = None,
) -> dict:
    """Runs (or resumes) the study ``config`` describes; returns its summary. ``models``
    (already loaded, e.g. in a notebook) replace the config's model paths."""
    check_study_config(
        config,
        check_models=models is None,
        has_revisions=None if models is None else models.revision is not None,
    )
    problems = load_problems(config)
    digests = None
    if models is None:
        # Checked against the work directory's record before the models load.
        digests = provenance.model_digests_from_paths(config.models, resolve_path)
        provenance.check_or_record(
            Path(config.workdir).expanduser(), provenance.row_settings(config), digests
        )
        if distributed.is_primary():
            echo(f"{len(problems)} questions; loading models")
        models = load_models(config)
    study = Study(config, models, problems, progress, model_digests=digests)
    if distributed.is_primary():
        (study.workdir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    summary = study.run()
    if distributed.is_primary():
        echo(f"wrote {study.workdir / 'report.md'}")
    return summary
