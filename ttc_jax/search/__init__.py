"""Search and revisions over the step-wise engine, batched across questions, with exact
compute accounting.

    from ttc_jax.search import run, strategy_config
    results = run(strategy_config("beam"), lm, prm, problems, budget=16, seed=0)
    results[0].answer, results[0].correct, results[0].accounting.policy_flops
"""

from ttc_jax.search.aggregation import SELECTIONS, STEP_AGGREGATIONS, candidate_score, select
from ttc_jax.search.configs import STRATEGIES, check_strategy, sqrt_width, strategy_config
from ttc_jax.search.results import Accounting, Candidate, SearchResult
from ttc_jax.search.run import run

__all__ = [
    "SELECTIONS",
    "STEP_AGGREGATIONS",
    "STRATEGIES",
    "Accounting",
    "Candidate",
    "SearchResult",
    "candidate_score",
    "check_strategy",
    "run",
    "select",
    "sqrt_width",
    "strategy_config",
]
