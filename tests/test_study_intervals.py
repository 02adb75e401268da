"""Uncertainty on a study's figures: the bootstrap's intervals cover what they should, verdicts
follow them (an effect of zero is inconclusive, a large one reproduces), the compute-optimal
curve's interval repeats its selection, and the exchange gives no verdict away from its
matched budget; problems come through a registry of sources."""

import subprocess
import sys

import numpy as np
import pytest

from ttc_jax import problem_sources
from ttc_jax.math import Problem
from ttc_jax.study.config import check_study_config, study_config
from ttc_jax.study.exchange import exchange
from ttc_jax.study.intervals import Bootstrap, origin, side
from ttc_jax.study.selection import select

QUESTIONS = [f"q{i:03d}" for i in range(100)]
BINS = {q: 1 + i // 20 for i, q in enumerate(QUESTIONS)}


def coin(rng, p: float) -> dict[str, bool]:
    return {q: bool(rng.random() < p) for q in QUESTIONS}


def test_an_effect_of_zero_is_inconclusive_in_nearly_every_seed():
    """Two strategies right with the same probability: the interval of their difference
    holds zero in at least 90% of seeds (95% expected)."""
    verdicts = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        boot = Bootstrap(BINS, 400, seed)
        verdicts.append(side(boot.difference(coin(rng, 0.5), coin(rng, 0.5)), +1))
    assert verdicts.count("inconclusive") >= 0.9 * len(verdicts)
    assert set(verdicts) <= {"inconclusive", "reproduces", "does not reproduce"}


def test_a_large_effect_reproduces_on_its_side_and_contradicts_the_other():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        boot = Bootstrap(BINS, 400, seed)
        found = boot.difference(coin(rng, 0.9), coin(rng, 0.2))
        assert 0.55 < found["effect"] < 0.85
        low, high = found["interval"]
        assert low <= found["effect"] <= high
        assert side(found, +1) == "reproduces" and side(found, -1) == "does not reproduce"


def test_intervals_are_paired_and_narrow_for_identical_strategies():
    rng = np.random.default_rng(0)
    same = coin(rng, 0.5)
    boot = Bootstrap(BINS, 200, 0)
    assert boot.difference(same, dict(same)) == {"effect": 0.0, "interval": [0.0, 0.0]}
    low, high = boot.interval(same)
    assert low < sum(same.values()) / 100 < high and high - low > 0.1


def test_resamples_keep_bin_sizes_and_the_seed_fixes_them():
    boot = Bootstrap(BINS, 50, 7)
    for replicate in range(50):
        drawn = [BINS[origin(q)] for q in boot.resampled(replicate)]
        assert sorted(drawn) == sorted(BINS.values())
    assert np.array_equal(boot.index, Bootstrap(BINS, 50, 7).index)
    assert not np.array_equal(boot.index, Bootstrap(BINS, 50, 8).index)
    with pytest.raises(ValueError, match="replicates must be >= 10"):
        Bootstrap(BINS, 5, 0)


def test_the_compute_optimal_interval_repeats_the_selection():
    """One strategy is right on every question of bin 1, the other on every question of the
    other bins: every replicate's cross-validated selection picks right, so the interval is
    [1, 1]; with a third strategy right at random the point estimate still lies inside."""
    correct = {
        "a": {4: {q: BINS[q] == 1 for q in QUESTIONS}},
        "b": {4: {q: BINS[q] != 1 for q in QUESTIONS}},
    }
    boot = Bootstrap(BINS, 100, 0)
    overall, by_bin = boot.selected_replicates(correct, BINS, 4, ["a", "b"], "s")
    assert np.all(overall == 1.0) and all(np.all(v == 1.0) for v in by_bin.values())
    rng = np.random.default_rng(1)
    correct["c"] = {4: coin(rng, 0.6)}
    labels = ["c", "a"]
    point = select(correct, BINS, 4, labels, "s").accuracy
    overall, _ = boot.selected_replicates(correct, BINS, 4, labels, "s")
    low, high = np.percentile(overall, [2.5, 97.5])
    assert low <= point <= high and high > low
    assert boot.selected_replicates(correct, BINS, 16, labels, "s") is None


def test_the_exchange_takes_only_a_budget_near_the_matched_compute():
    by_bin = {b: {1: 0.5} for b in (1, 4, 16)}
    overall = {b: 0.5 for b in (1, 4, 16)}
    points = exchange((0.16, 0.79, 22.0), 15.1, [1, 4, 16], by_bin, overall, {1: 0.9}, 0.9)
    # 279.5, 68.7 and 17.0 samples: only 16 lies within [matched / 2, matched].
    assert [p.budget for p in points] == [None, None, 16]
    assert points[0].small == {} and points[0].small_overall is None


def test_problem_sources_are_a_registry_the_study_reads_without_importing_tasks():
    # Loading the study touches no task: the embedded world registers itself on first use.
    probe = (
        "import sys, ttc_jax.study, ttc_jax.study.runner; "
        "print(any(m.startswith('ttc_jax.embedded') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
    config = study_config()
    config.data.source = "no_such_source"
    with pytest.raises(ValueError, match=r"data\.source 'no_such_source' is not one of embedded"):
        check_study_config(config, check_models=False)
    problems = [Problem("a", "What is 1 + 1?", "2")]
    problem_sources.register(problem_sources.ProblemSource("two_plus", load=lambda data: problems))
    config.data.source = "two_plus"
    check_study_config(config, check_models=False)
    assert problem_sources.get("two_plus").load(config.data) == problems
    assert "two_plus" in problem_sources.names()
    assert len(problem_sources.get("embedded").load(study_config().data)) == 100
