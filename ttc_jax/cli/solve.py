"""``ttc-solve --config configs/palm2_math.py --question '...' --budget 16``: one question,
answered the compute-optimal way (`ttc_jax.solve`).

The strategy table comes from the config (its ``strategy_table``, or the fitted
``strategy_table_file`` of a study when set); the models from its ``models`` fields.

With the joining flags (``--coordinator_address HOST:PORT --num_processes N --process_id K``
or ``--distributed``) every process runs the same command for a model too large for one
host: the models load onto one mesh across every process's devices
(`ttc_jax.sharding.global_mesh`, the ``model`` axis over the hosts), every process answers
the same question with the same host-side steps, and process 0 prints the answer.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from ttc_jax.cli import apps
from ttc_jax.errors import CheckpointError

CONFIG = config_flags.DEFINE_config_file("config", None, "a study config file")
QUESTION = flags.DEFINE_string("question", None, "the question to answer")
BUDGET = flags.DEFINE_integer("budget", 16, "generations to spend (besides the estimate)")
SEED = flags.DEFINE_integer("seed", 0, "sampling seed")
REVISIONS = flags.DEFINE_bool(
    "revisions", False, "use the config's revision_table (needs the revision models)"
)


def table_of(config, revisions: bool = False) -> dict:
    """The config's strategy table: a fitted file when ``strategy_table_file`` is set, its
    ``revision_table`` with ``revisions``."""
    if revisions:
        if "revision_table" not in config:
            raise ValueError("the config has no revision_table")
        return config.revision_table.to_dict()
    if config.strategy_table_file:
        return json.loads(Path(config.strategy_table_file).expanduser().read_text())
    if not config.strategy_table:
        raise ValueError("the config has no strategy_table and no strategy_table_file")
    return config.strategy_table.to_dict()


def with_search(table: dict, search) -> dict:
    """``table`` searching with the config's settings, under those a fitted table carries
    (what its study ran with)."""
    merged = search.to_dict()
    for key, value in (table.get("search") or {}).items():
        if key == "prompt":
            merged["prompt"] = {**merged["prompt"], **value}
        else:
            merged[key] = value
    return {**table, "search": merged}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.exit(f"ttc-solve: unexpected arguments {' '.join(argv[1:])}")
    if CONFIG.value is None or not QUESTION.value or not QUESTION.value.strip():
        sys.exit("ttc-solve: --config and a non-empty --question are required")
    import ttc_jax
    from ttc_jax import distributed
    from ttc_jax.sharding import global_mesh
    from ttc_jax.solver import check_table, needs_revision_model
    from ttc_jax.study.config import (
        check_model_kinds,
        check_model_paths,
        resolve_path,
        study_section,
    )

    config = study_section(CONFIG.value)
    models = config.models
    # Several processes: one mesh over all their devices, the same steps on every process.
    mesh = global_mesh(1, -1) if distributed.process_count() > 1 else None
    try:
        # Everything is checked before any model loads.
        table = with_search(table_of(config, REVISIONS.value), config.search)
        check_table(table)
        check_model_kinds(models)
        check_model_paths(models, needs_revision=needs_revision_model(table))
        distributed.check_same(
            "config or question",
            [config.to_dict(), table, QUESTION.value, BUDGET.value, SEED.value],
        )
        policy = ttc_jax.load_lm(resolve_path(models.policy), models.dtype, mesh)
        prm = ttc_jax.load_prm(resolve_path(models.prm), models.prm_kind, models.dtype, mesh)
        revision = verifier = None
        if models.revision and models.revision_verifier:
            revision = ttc_jax.load_lm(resolve_path(models.revision), models.dtype, mesh)
            verifier = ttc_jax.load_prm(
                resolve_path(models.revision_verifier),
                models.revision_verifier_kind,
                mesh=mesh,
            )
        result = ttc_jax.solve(
            QUESTION.value, BUDGET.value, policy, prm, table, SEED.value, revision, verifier
        )
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        sys.exit(f"ttc-solve: {e}")
    if not distributed.is_primary():
        return
    if result.budget != result.requested_budget:
        print(
            f"ttc-solve: budget {result.requested_budget} rounded down to {result.budget}, the "
            f"largest of the table's budgets for difficulty bin {result.difficulty_bin} within it",
            file=sys.stderr,
        )
    print(json.dumps(dataclasses.asdict(result), indent=2))


def entry() -> None:
    apps.run(main, "ttc-solve", multi_process=True)


if __name__ == "__main__":
    entry()
