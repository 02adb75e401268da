"""The paper's setup (Snell et al. 2024, PaLM 2-S* on MATH) for any checkpoint.

    ttc-study --config configs/palm2_math.py \
        --config.models.policy=PATH --config.models.prm=PATH --config.models.prm_kind=KIND \
        --config.search.prompt.shots_file=SOLVED_PROBLEMS.jsonl

4-shot prompt with newline-separated steps, budgets 1..256 in powers of two, the full sweep
(majority, best-of-N weighted, beam M=4 and M=sqrt N, lookahead k=1 and 3, DVTS, every
revision ratio), 40 rounds, 2048 samples for difficulty, 2-fold cross-validated selection on
the MATH-500 test split. No MATH train split ships here, so the 4 shots come from a JSONL of
solved problems the user gives (MATH's train split in the original). The model paths have no
default: a study needs them (`ttc-study` says so before any compute).

It also carries the paper's PaLM 2 difficulty-conditioned strategy tables, so evaluation and
`ttc-solve` can run from this config alone:

* ``strategy_table`` (search with a PRM): best-of-N weighted on the easy bins 1-2, beam search
  (M = sqrt N) on the medium and hard bins 3-5 (the paper: beam search wins on harder
  questions and low budgets, best-of-N on easy ones, where beam search over-optimises);
* ``revision_table`` (with a revision model): fully sequential revisions on the easy bins,
  an intermediate ratio (S = sqrt N sequential) on the harder ones.

The search settings (prompt, delimiter, token budgets) are the config's own ``search``. At
budget 1 every strategy is one sample. The paper gives no numbers for the difficulty bins'
edges on the PRM score (UNSTATED): the defaults cut [0, 1] evenly; fit real ones with a study
(its strategy_table.json) and pass it as ``strategy_table_file``.
"""

import math

from ttc_jax.study import study_config

BUDGETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _table(easy, hard):
    """bin -> budget -> label (keys as strings, as in a study's strategy_table.json)."""
    table = {}
    for b in range(1, 6):
        choose = easy if b <= 2 else hard
        table[str(b)] = {str(n): ("majority" if n == 1 else choose(n)) for n in BUDGETS}
    return table


def _sqrt_length(n):
    return 2 ** (int(math.log2(n)) // 2)


def get_config():
    config = study_config()
    config.workdir = "ttc_study_palm2_math"
    config.data.source = "math500"
    config.models.policy = ""
    config.models.policy_14x = ""
    config.models.prm = ""
    config.models.revision = ""
    config.models.revision_verifier = ""
    config.search.prompt.style = "plain"
    config.search.prompt.num_shots = 4
    config.search.step_delimiter = "\n"
    config.search.max_new_tokens = 1024
    config.search.max_rounds = 40
    config.search.max_step_tokens = 256
    config.budgets = BUDGETS
    config.difficulty.samples = 2048
    config.difficulty.charged_samples = 16  # UNSTATED: the paper does not charge the estimate
    config.strategy_table = {
        "difficulty": {"samples": 16, "edges": [0.8, 0.6, 0.4, 0.2]},
        "budgets": list(BUDGETS),
        "table": _table(lambda n: "best_of_n_weighted", lambda n: "beam_msqrt"),
    }
    config.revision_table = {
        "difficulty": {"samples": 16, "edges": [0.8, 0.6, 0.4, 0.2]},
        "budgets": list(BUDGETS),
        "table": _table(lambda n: f"revisions_s{n}", lambda n: f"revisions_s{_sqrt_length(n)}"),
    }
    return config
