"""Strategy configurations: each strategy's defaults as an ``ml_collections.ConfigDict``, and
their checks.

    strategy = strategy_config("beam")       # a fresh, unlocked copy of the defaults
    strategy.beam_width = 2
    results = ttc_jax.search.run(strategy, lm, prm, problems, budget=16)

Every strategy has ``max_new_tokens`` (per candidate), the sampling settings, the step
delimiter and the prompt; step-wise strategies add ``max_rounds`` and ``max_step_tokens``.
Values the paper leaves open (UNSTATED in ../PAPER.md terms) are marked so below.
`check_strategy` turns a bad configuration into one clear error before any compute.
"""

from __future__ import annotations

import math
from pathlib import Path

import ml_collections

from ttc_jax.engine.sampling import SamplingConfig
from ttc_jax.search.aggregation import SELECTIONS, STEP_AGGREGATIONS, check_choice

STRATEGIES = ("majority", "best_of_n", "beam", "lookahead", "dvts", "revisions")
STEPWISE = ("beam", "lookahead", "dvts")
PROMPT_STYLES = ("plain", "chat")
REVISION_SELECTIONS = ("verifier", "majority")


def prompt_config() -> ml_collections.ConfigDict:
    """How a `ttc_jax.math.Problem` becomes the policy's prompt (`ttc_jax.search.prompting`)."""
    return ml_collections.ConfigDict(
        {
            # "plain": "Problem:\n...\n\nSolution:\n" after optional solved examples (base models,
            # this project's embedded models); "chat": the tokenizer's chat template with an
            # instruction asking for steps and a boxed answer (instruct models).
            "style": "plain",
            "num_shots": 0,
            # JSONL of solved problems to draw the shots from (fields as MATH-500's).
            "shots_file": "",
            "shot_seed": 0,
            "instruction": "",  # "" = the default naming the step delimiter
            "system_prompt": "",
            "problem_header": "Problem:",
            "solution_header": "Solution:",
            # Revision prompts: earlier attempts before the problem (`PromptConfig`).
            "attempts_first": False,
        }
    )


def strategy_config(name: str) -> ml_collections.ConfigDict:
    """The defaults of strategy ``name`` (one of `STRATEGIES`), a fresh copy each call."""
    check_choice(name, STRATEGIES, "strategy")
    config = ml_collections.ConfigDict(
        {
            "name": name,
            "max_new_tokens": 512,  # per candidate
            # UNSTATED in the paper; 0.8 is what open reproductions sample at.
            "temperature": 0.8,
            "top_p": 1.0,
            "top_k": 0,
            "step_delimiter": "\n",
            "prompt": prompt_config(),
            # Step scores to a candidate score: "last" is the paper's choice.
            "aggregation": "last",
            # Final answer over the candidates: "weighted" is best-of-N weighted.
            "selection": "majority" if name == "majority" else "weighted",
        }
    )
    if name in STEPWISE:
        config.max_rounds = 40
        # A step longer than this is cut and continued in the next round (UNSTATED).
        config.max_step_tokens = 256
        # Most tokens one device call decodes. A call also returns as soon as some question's
        # (or DVTS subtree's) slots have all finished their step; it is scored and selects
        # while the others go on. A step is cut at exactly max_step_tokens, whenever the
        # calls that decode it return.
        config.tokens_per_call = 64
        # M: each kept beam is expanded M times; beam search keeps N / M beams, DVTS runs
        # N / M independent subtrees of width M.
        config.beam_width = 4
    if name == "lookahead":
        # k: each candidate step is scored at the end of a k-step greedy rollout.
        config.lookahead_steps = 1
    if name == "revisions":
        # Budget N = parallel chains x sequential revisions per chain.
        config.sequential = 4
        # "verifier": best-of-N weighted within each chain, then across chains' picks;
        # "majority": a vote over every answer of every chain.
        config.revision_selection = "verifier"
    return config


def generations(config: ml_collections.ConfigDict, budget: int) -> int:
    """Generations a strategy is charged at ``budget`` (PAPER.md): N, and N * (k + 1) for
    lookahead, whose rollouts are generations too."""
    if config.name == "lookahead":
        return budget * (config.lookahead_steps + 1)
    return budget


def sqrt_width(budget: int) -> int:
    """The paper's M = sqrt(N) rounded down to a power of two that divides N (>= 1)."""
    width = 1
    while width * 2 <= math.isqrt(budget) and budget % (width * 2) == 0:
        width *= 2
    return width


def check_strategy(config, budget: int, has_prm: bool) -> ml_collections.ConfigDict:
    """``config`` if it is a valid strategy for ``budget``; otherwise one clear ValueError."""
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(
            f"strategy must be an ml_collections.ConfigDict (see strategy_config), "
            f"got {type(config).__name__}"
        )
    name = config.get("name")
    check_choice(name, STRATEGIES, "strategy")
    defaults = strategy_config(name)
    unknown = sorted(set(config.keys()) - set(defaults.keys()))
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)} for strategy {name!r}; "
            f"its fields: {', '.join(sorted(defaults.keys()))}"
        )
    missing = sorted(set(defaults.keys()) - set(config.keys()))
    if missing:
        raise ValueError(f"strategy {name!r} lacks field(s) {', '.join(missing)}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an integer >= 1, got {budget!r}")
    _positive(config, "max_new_tokens")
    _check_sampling(config)
    if not config.step_delimiter or not isinstance(config.step_delimiter, str):
        raise ValueError("step_delimiter must be a non-empty string")
    check_choice(config.aggregation, tuple(STEP_AGGREGATIONS), "step aggregation")
    check_choice(config.selection, SELECTIONS, "answer selection")
    check_choice(config.prompt.style, PROMPT_STYLES, "prompt style")
    check_shots_file(config.prompt)
    needs_prm = name in STEPWISE or (name == "best_of_n" and config.selection != "majority")
    if name in STEPWISE:
        _positive(config, "max_rounds")
        _positive(config, "max_step_tokens")
        _positive(config, "tokens_per_call")
        _positive(config, "beam_width")
        if budget % config.beam_width:
            raise ValueError(
                f"beam_width M={config.beam_width} does not divide the budget N={budget}"
            )
    if name == "lookahead" and (
        not isinstance(config.lookahead_steps, int) or config.lookahead_steps < 0
    ):
        raise ValueError(f"lookahead_steps must be an integer >= 0, got {config.lookahead_steps}")
    if name == "revisions":
        _positive(config, "sequential")
        if budget % config.sequential:
            raise ValueError(
                f"sequential={config.sequential} does not divide the budget N={budget} "
                "(N = parallel chains x sequential revisions)"
            )
        check_choice(config.revision_selection, REVISION_SELECTIONS, "revision selection")
        needs_prm = config.revision_selection == "verifier"
        if config.prompt.style != "plain":
            raise ValueError("revisions need the plain prompt style (the revision prompt)")
    if needs_prm and not has_prm:
        raise ValueError(f"strategy {name!r} as configured needs a PRM (verifier); got None")
    return config


def check_shots_file(prompt) -> None:
    """A few-shot prompt's examples file exists (it is read when the search starts)."""
    if prompt.num_shots and not prompt.shots_file:
        raise ValueError(
            f"prompt.num_shots={prompt.num_shots} needs prompt.shots_file, a JSONL of solved "
            "problems to draw the examples from"
        )
    if prompt.shots_file and not Path(prompt.shots_file).expanduser().is_file():
        raise ValueError(f"prompt.shots_file {prompt.shots_file} does not exist")


def _check_sampling(config) -> None:
    """The sampling settings, checked where the sampler checks them (`SamplingConfig`)."""
    SamplingConfig(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k)


def _positive(config, field: str) -> None:
    value = config[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field} must be an integer >= 1, got {value!r}")
