"""The study's configuration: defaults, and one check that turns any mistake into one clear
error before any compute.

    config = study_config()           # an ml_collections.ConfigDict, every field commented
    config.budgets = (1, 4, 16)
    summary = ttc_jax.study.run_study(config)

Model paths are Hugging Face folders or GGUF files; ``embedded:<name>`` names a model the
package ships (`ttc_jax.embedded.checkpoint_path`). An empty path leaves that model out (and
the parts of the study that need it: revisions without a revision model, the FLOPs exchange
without the larger policy).
"""

from __future__ import annotations

from pathlib import Path

import ml_collections

from ttc_jax import problem_sources
from ttc_jax.prm.kinds import format_class
from ttc_jax.search.configs import PROMPT_STYLES, check_strategy, prompt_config
from ttc_jax.study.specs import BASE_LABELS, check_labels, grid, labels_of

EMBEDDED_PREFIX = "embedded:"


def study_config() -> ml_collections.ConfigDict:
    """Defaults for a study on the embedded world (configs/embedded.py adapts them)."""
    return ml_collections.ConfigDict(
        {
            "workdir": "ttc_study",
            "seed": 0,
            "data": {
                # A problem source (ttc_jax.problem_sources): "embedded": fresh questions of
                # the embedded world; "math500": the shipped MATH-500 test split; "jsonl":
                # any JSONL of MATH-style problems; or one a task registers.
                "source": "embedded",
                "levels": (1, 2, 3, 4, 5),
                "per_level": 20,  # embedded: questions per level
                "seed": 1,
                "path": "",  # jsonl: the file
                "limit": 0,  # math500, jsonl: the first `limit` problems (0 = all)
            },
            "models": {
                "policy": "embedded:policy",
                # The larger policy for the FLOPs exchange ("" = no exchange).
                "policy_14x": "embedded:policy_14x",
                "prm": "embedded:prm",
                "prm_kind": "ttc_value",
                # The revision model and its verifier ("" = no revisions).
                "revision": "embedded:revision",
                "revision_verifier": "embedded:revision_verifier",
                "revision_verifier_kind": "ttc_value",
                "dtype": "float32",
            },
            # Settings every strategy shares (see ttc_jax.search.configs).
            "search": {
                "max_new_tokens": 128,
                "temperature": 0.8,
                "step_delimiter": "\n",
                "prompt": prompt_config(),
                "max_rounds": 40,
                "max_step_tokens": 64,
            },
            "budgets": (1, 2, 4, 8, 16, 32, 64),
            "strategies": BASE_LABELS,
            # Also every revision ratio (revisions_s<S>, S = 1, 2, 4, ... B) at each budget.
            "revision_ratios": True,
            "difficulty": {
                # K samples per question estimate its pass@1 (oracle) and the PRM's mean
                # final score (predicted); the paper drew 2048.
                "samples": 64,
                "bins": 5,
                # When the estimate is charged to the budget, it is made from this many of
                # the samples, and they are spent before the strategy runs (UNSTATED).
                "charged_samples": 4,
            },
            # FLOPs exchange: R = inference tokens / pretraining tokens (the paper's three).
            "exchange_ratios": (0.16, 0.79, 22.0),
            # 95% intervals: bootstrap over questions (stratified by oracle bin), every
            # figure and every paired effect on the same resamples (ttc_jax.study.intervals).
            "bootstrap": {"replicates": 1000, "seed": 0},
            # Sample rows (questions x samples) a device call holds.
            "max_rows": 1024,
            # A fitted strategy_table.json to deploy (ttc-solve) instead of the config's own.
            "strategy_table_file": "",
            # bin -> budget -> label, for ttc-solve from a config alone (see palm2_math.py).
            "strategy_table": {},
        }
    )


def study_section(config):
    """The study part of a config: ``config.study`` when the file holds more (the embedded
    world's file also configures training), else the config itself."""
    return config.study if "study" in config else config


def resolve_path(path: str) -> Path:
    """A model path: ``embedded:<name>`` is a model the package ships."""
    if path.startswith(EMBEDDED_PREFIX):
        from ttc_jax.embedded import checkpoint_path

        return checkpoint_path(path[len(EMBEDDED_PREFIX) :])
    return Path(path).expanduser()


def check_study_config(
    config: ml_collections.ConfigDict,
    check_models: bool = True,
    has_revisions: bool | None = None,
) -> ml_collections.ConfigDict:
    """``config`` if it describes a study that can run; otherwise one ValueError naming the
    field. Model paths must exist (unless ``check_models`` is False: models given loaded).
    ``has_revisions``: whether a revision model is at hand (default: one is configured)."""
    problem_sources.get(config.data.source).check(config.data)
    budgets = list(config.budgets)
    if not budgets or any(not isinstance(b, int) or b < 1 for b in budgets):
        raise ValueError(f"budgets must be integers >= 1, got {budgets}")
    if budgets != sorted(set(budgets)):
        raise ValueError(f"budgets must be increasing without repeats, got {budgets}")
    check_labels(config.strategies)
    prompt = config.search.prompt
    if prompt.style not in PROMPT_STYLES:
        raise ValueError(f"search.prompt.style must be one of {', '.join(PROMPT_STYLES)}")
    difficulty = config.difficulty
    if difficulty.samples < 2 or difficulty.bins < 1:
        raise ValueError("difficulty.samples must be >= 2 and difficulty.bins >= 1")
    if not 1 <= difficulty.charged_samples <= difficulty.samples:
        raise ValueError("difficulty.charged_samples must be in [1, difficulty.samples]")
    if config.bootstrap.replicates < 10:
        raise ValueError(f"bootstrap.replicates must be >= 10, got {config.bootstrap.replicates}")
    if any(r <= 0 for r in config.exchange_ratios):
        raise ValueError("exchange_ratios must be positive")
    if config.strategy_table_file and not Path(config.strategy_table_file).is_file():
        raise ValueError(f"strategy_table_file {config.strategy_table_file!r} is not a file")
    max_rows = config.max_rows
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be an integer >= 1 (sample rows a call), got {max_rows!r}")
    if has_revisions is None:
        has_revisions = bool(config.models.revision)
    check_search(config, has_revisions)
    check_model_kinds(config.models)
    if check_models:
        check_model_paths(config.models)
    return config


def check_search(config: ml_collections.ConfigDict, has_revisions: bool) -> None:
    """Every search the study would run is valid (``search.*`` settings at every budget),
    so a bad setting fails here, not after the models load."""
    labels = labels_of(config, has_revisions)
    for cell in grid(labels, config.budgets, ml_collections.ConfigDict(config.search.to_dict())):
        try:
            check_strategy(cell.config, cell.search_budget, has_prm=True)
        except ValueError as e:
            raise ValueError(f"search: {e} ({cell.label} at budget {cell.budget})") from e


def check_model_kinds(models) -> None:
    """The PRM kinds name known formats (checked before any model loads)."""
    for field in ("prm_kind", "revision_verifier_kind"):
        try:
            format_class(models[field])
        except ValueError as e:
            raise ValueError(f"models.{field}: {e}") from e


def check_model_paths(models, needs_revision: bool = False) -> None:
    """The policy and PRM are set, every set path exists, and a revision model comes with
    its verifier (and is set when ``needs_revision``)."""
    if needs_revision and not models.revision:
        raise ValueError("revisions need models.revision and models.revision_verifier")
    if not models.policy:
        raise ValueError("models.policy is required")
    if not models.prm:
        raise ValueError(
            "models.prm is required (every PRM-guided strategy and the predicted "
            "difficulty need it)"
        )
    for field in ("policy", "policy_14x", "prm", "revision", "revision_verifier"):
        path = models[field]
        if path and not resolve_path(path).exists():
            raise ValueError(f"models.{field}: {path} does not exist")
    if models.revision and not models.revision_verifier:
        raise ValueError("models.revision needs models.revision_verifier")
