"""The study's strategies by label, and the search configuration each label means at a budget.

A label names a strategy with its hyperparameters as they scale with the budget B (the number
of generations a question may cost):

=====================  ==========================================================================
``majority``           B independent samples, majority vote
``best_of_n_weighted`` the same B samples, best-of-N weighted by the PRM
``beam_m4``            beam search, N = B beams, M = 4 (B divisible by 4)
``beam_msqrt``         beam search, N = B, M = sqrt(B) (a power of two dividing B)
``lookahead_k1``       lookahead k = 1 with M = sqrt(N), N = B / 2 beams (it costs N (k + 1))
``lookahead_k3``       lookahead k = 3 with M = sqrt(N), N = B / 4 beams
``dvts_m4``            DVTS, N = B, subtrees of width 4
``revisions_s{S}``     B / S parallel chains of S sequential revisions (every S dividing B)
=====================  ==========================================================================

``majority`` and ``best_of_n_weighted`` at one budget share their samples (one run, selected
two ways), so their comparison is paired. A label that does not fit a budget (``beam_m4`` at
B = 2) is skipped there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import ml_collections

from ttc_jax.search.configs import sqrt_width, strategy_config

BASE_LABELS = (
    "majority",
    "best_of_n_weighted",
    "beam_m4",
    "beam_msqrt",
    "lookahead_k1",
    "lookahead_k3",
    "dvts_m4",
)
_REVISIONS = re.compile(r"revisions_s(\d+)")
# Labels run together: the first is run, the others re-select its candidates.
SHARED_RUNS = {"majority": "best_of_n_weighted"}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One strategy at one budget: what `ttc_jax.search.run` is called with."""

    label: str
    budget: int  # the study's budget B, in generations
    search_budget: int  # the N handed to the search (B / (k + 1) for lookahead)
    config: ml_collections.ConfigDict
    uses_revision_model: bool = False

    @property
    def family(self) -> str:
        """Strategy family of the label (what a table of strategies names)."""
        return "revisions" if self.uses_revision_model else self.config.name


def is_label(label: str) -> bool:
    return label in BASE_LABELS or _REVISIONS.fullmatch(label) is not None


def check_labels(labels) -> list[str]:
    """The labels, each known; an unknown one is an error listing the known ones."""
    labels = list(labels)
    unknown = [label for label in labels if not is_label(label)]
    if unknown:
        raise ValueError(
            f"unknown strategy label(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(BASE_LABELS)}, revisions_s<S> (S sequential revisions per chain)"
        )
    return labels


def sequential_lengths(budget: int) -> list[int]:
    """Revision chain lengths S the study tries at ``budget``: every divisor of it (the
    paper's sequential:parallel ratios from 1:B to B:1; at a power of two, its powers of two,
    at B = 12 also 3 and 6)."""
    return [s for s in range(1, budget + 1) if budget % s == 0]


def labels_of(config: ml_collections.ConfigDict, has_revisions: bool) -> list[str]:
    """A study config's labels: its strategies, then a revision label for every chain
    length of every budget (when it asks for revision ratios and has a revision model)."""
    labels = list(config.strategies)
    if config.revision_ratios and has_revisions:
        lengths = sorted({s for b in config.budgets for s in sequential_lengths(b)})
        labels += [f"revisions_s{s}" for s in lengths]
    return labels


def cell(label: str, budget: int, base: ml_collections.ConfigDict) -> Cell | None:
    """The search configuration of ``label`` at ``budget``, from ``base`` (a strategy config
    holding the shared settings: prompt, temperature, max_new_tokens, ...); None when the
    label does not fit the budget."""
    match = _REVISIONS.fullmatch(label)
    if match:
        length = int(match.group(1))
        if length < 1 or budget % length:
            return None
        config = configured("revisions", base)
        config.sequential = length
        return Cell(label, budget, budget, config, uses_revision_model=True)
    if label in ("majority", "best_of_n_weighted"):
        config = configured("best_of_n", base)
        config.selection = "majority" if label == "majority" else "weighted"
        return Cell(label, budget, budget, config)
    if label in ("beam_m4", "dvts_m4"):
        if budget % 4:
            return None
        config = configured("beam" if label == "beam_m4" else "dvts", base)
        config.beam_width = 4
        return Cell(label, budget, budget, config)
    if label == "beam_msqrt":
        config = configured("beam", base)
        config.beam_width = sqrt_width(budget)
        return Cell(label, budget, budget, config)
    if label in ("lookahead_k1", "lookahead_k3"):
        steps = 1 if label == "lookahead_k1" else 3
        if budget % (steps + 1):
            return None
        beams = budget // (steps + 1)
        config = configured("lookahead", base)
        config.lookahead_steps = steps
        config.beam_width = sqrt_width(beams)
        return Cell(label, budget, beams, config)
    raise ValueError(f"unknown strategy label {label!r}")


def derived_seed(*parts) -> int:
    """A 32-bit seed from any parts (strategy family, budget, study seed, ...)."""
    text = "\x00".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")


def configured(name: str, base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Strategy ``name``'s defaults with every shared field of ``base`` it has."""
    config = strategy_config(name)
    for key, value in base.items():
        if key in config and key != "name":
            config[key] = value
    return config


def grid(labels, budgets, base: ml_collections.ConfigDict) -> list[Cell]:
    """Every (label, budget) cell that fits, in budget then label order."""
    cells = []
    for budget in budgets:
        for label in labels:
            found = cell(label, budget, base)
            if found is not None:
                cells.append(found)
    return cells
