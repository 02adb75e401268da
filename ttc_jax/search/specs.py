"""A strategy's settings as the searches read them: typed, frozen specs built once from its
``ml_collections.ConfigDict`` (`ttc_jax.search.configs`) at the edge, in `run`.

The ConfigDict is what users edit and what configs and study records hold; the searches never
see it. A spec says what a search does (``independent_subtrees``, ``lookahead_steps``) instead
of which strategy asked for it, so no search branches on a strategy's name.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from ttc_jax.engine.sampling import SamplingConfig
from ttc_jax.search.configs import STEPWISE, check_strategy


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    """What every strategy reads. ``selection`` picks the final answer over the candidates;
    ``aggregation`` turns a candidate's step scores into its score."""

    max_new_tokens: int
    sampling: SamplingConfig
    step_delimiter: str
    aggregation: str
    selection: str


@dataclasses.dataclass(frozen=True)
class ParallelSpec(SearchSpec):
    """Majority voting and best-of-N: N whole solutions, scored when ``uses_verifier``."""

    uses_verifier: bool


@dataclasses.dataclass(frozen=True)
class TreeSpec(SearchSpec):
    """Beam search, lookahead and DVTS (`ttc_jax.search.tree`)."""

    max_rounds: int
    max_step_tokens: int
    tokens_per_call: int
    beam_width: int  # M
    # Each kept step's greedy rollout, in steps, before it is scored (0: none).
    lookahead_steps: int
    # DVTS: selection within each subtree of M rows instead of across the question's N.
    independent_subtrees: bool


@dataclasses.dataclass(frozen=True)
class RevisionSpec(SearchSpec):
    """Sequential revisions: N / ``sequential`` chains of ``sequential`` attempts."""

    sequential: int
    # "verifier": best-of-N weighted within each chain, then across the chains' picks;
    # "majority": a vote over every attempt.
    revision_selection: str


def strategy_spec(
    config: ml_collections.ConfigDict, budget: int, has_prm: bool
) -> ParallelSpec | TreeSpec | RevisionSpec:
    """The spec of a strategy config, after `check_strategy` (one clear error for bad input)."""
    check_strategy(config, budget, has_prm)
    common = dict(
        max_new_tokens=config.max_new_tokens,
        sampling=SamplingConfig(config.temperature, config.top_p, config.top_k),
        step_delimiter=config.step_delimiter,
        aggregation=config.aggregation,
        selection=config.selection,
    )
    name = config.name
    if name in STEPWISE:
        return TreeSpec(
            **common,
            max_rounds=config.max_rounds,
            max_step_tokens=config.max_step_tokens,
            tokens_per_call=config.tokens_per_call,
            beam_width=config.beam_width,
            lookahead_steps=config.lookahead_steps if name == "lookahead" else 0,
            independent_subtrees=name == "dvts",
        )
    if name == "revisions":
        return RevisionSpec(
            **common, sequential=config.sequential, revision_selection=config.revision_selection
        )
    return ParallelSpec(**common, uses_verifier=config.selection != "majority")
