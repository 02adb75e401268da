"""The compute-optimal study: cross-validated selection finds a known optimum, cells mean what
their labels say, the results store survives torn writes, a tiny study runs end to end and
resumes after a real SIGKILL to the same rows, and configs fail clearly before any compute."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests import study_helpers
from ttc_jax.study import specs
from ttc_jax.study.analysis import bin_edges, bin_of
from ttc_jax.study.config import check_study_config, study_config
from ttc_jax.study.difficulty import balanced_folds, quantile_bins
from ttc_jax.study.exchange import matched_multiplier
from ttc_jax.study.report import load_summary
from ttc_jax.study.selection import efficiency, select
from ttc_jax.study.store import RowStore

ROOT = Path(__file__).parent.parent


def test_cross_validated_selection_finds_the_known_optimum():
    """Three strategies, two bins: "a" is right on every easy question and "b" on every hard
    one; "c" is right on a random half of each. Per bin the optimum is known."""
    rng = np.random.default_rng(0)
    questions = [f"q{i}" for i in range(40)]
    bins = {q: 1 if i < 20 else 2 for i, q in enumerate(questions)}
    correct = {
        "a": {8: {q: bins[q] == 1 for q in questions}},
        "b": {8: {q: bins[q] == 2 for q in questions}},
        "c": {8: {q: bool(rng.integers(2)) for q in questions}},
    }
    chosen = select(correct, bins, 8, ["c", "a", "b"])
    assert chosen.table == {1: "a", 2: "b"}
    assert chosen.folds == {1: ("a", "a"), 2: ("b", "b")}
    assert chosen.accuracy == 1.0 and chosen.by_bin == {1: 1.0, 2: 1.0}
    # With one strategy for everything the compute-optimal accuracy is that strategy's.
    assert select({"a": correct["a"]}, bins, 8, ["a"]).accuracy == 0.5
    assert select(correct, bins, 16, ["a"]) is None  # no results at that budget


def test_cross_validation_does_not_select_on_the_fold_it_scores():
    """A strategy right exactly on fold 0 looks perfect there and useless on fold 1: picked on
    fold 0 it scores nothing on fold 1, and fold 1 picks the steady one for fold 0."""
    questions = [f"q{i}" for i in range(20)]
    bins = dict.fromkeys(questions, 1)
    folds = balanced_folds(questions, "0:1:8")  # the folds `select` draws with salt "0"
    steady = {q: i % 4 == 0 for i, q in enumerate(questions)}
    correct = {
        "lucky": {8: {q: folds[q] == 0 for q in questions}},
        "steady": {8: steady},
    }
    chosen = select(correct, bins, 8, ["lucky", "steady"], salt="0")
    assert chosen.folds == {1: ("lucky", "steady")}
    assert chosen.accuracy == sum(steady[q] for q in questions if folds[q] == 0) / 20
    assert chosen.accuracy < 0.5  # what selecting "lucky" in-sample would claim
    assert sum(folds.values()) == 10


def test_efficiency_finds_the_smallest_budget_that_matches():
    optimal = {1: 0.2, 4: 0.5, 16: 0.6, 64: 0.62}
    baseline = {1: 0.2, 4: 0.4, 16: 0.55, 64: 0.6}
    assert efficiency(optimal, baseline) == {1: 1, 4: 4, 16: 16, 64: 16}
    assert efficiency({1: 0.1}, {1: 0.5}) == {1: None}


def test_quantile_bins_are_balanced_ordered_and_order_free():
    values = {f"q{i}": v for i, v in enumerate([0.9, 0.1, 0.5, 0.5, 0.7, 0.3, 0.2, 0.8, 0.6, 0.4])}
    bins = quantile_bins(values, 5)
    assert sorted(bins.values()) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert bins["q0"] == 1 and bins["q1"] == 5  # highest value = easiest
    shuffled = dict(reversed(list(values.items())))
    assert quantile_bins(shuffled, 5) == bins


@pytest.mark.parametrize("count", [10, 3, 1])
def test_bin_edges_give_back_each_questions_bin_even_with_empty_bins(count):
    values = {f"q{i}": v for i, v in enumerate([0.9, 0.1, 0.5, 0.7, 0.3, 0.2, 0.8, 0.6, 0.4, 0.05])}
    values = dict(list(values.items())[:count])
    bins = quantile_bins(values, 5)
    edges = bin_edges(values, bins, 5)
    assert len(edges) == 4 and edges == sorted(edges, reverse=True)
    assert all(bin_of(values[q], edges) == bins[q] for q in values)


@pytest.mark.parametrize(
    ("label", "budget", "expected"),
    [
        ("majority", 4, ("best_of_n", 4, "majority")),
        ("beam_m4", 16, ("beam", 16, 4)),
        ("beam_msqrt", 16, ("beam", 16, 4)),
        ("beam_msqrt", 8, ("beam", 8, 2)),
        ("lookahead_k3", 16, ("lookahead", 4, 2)),
        ("lookahead_k1", 8, ("lookahead", 4, 2)),
        ("dvts_m4", 8, ("dvts", 8, 4)),
        ("revisions_s4", 16, ("revisions", 16, 4)),
    ],
)
def test_labels_mean_what_they_say(label, budget, expected):
    cell = specs.cell(label, budget, specs.strategy_config("beam"))
    name, search_budget, detail = expected
    assert cell.config.name == name and cell.search_budget == search_budget
    value = {
        "best_of_n": lambda c: c.selection,
        "beam": lambda c: c.beam_width,
        "lookahead": lambda c: c.beam_width,
        "dvts": lambda c: c.beam_width,
        "revisions": lambda c: c.sequential,
    }[name](cell.config)
    assert value == detail


def test_labels_that_do_not_fit_a_budget_are_skipped():
    base = specs.strategy_config("beam")
    assert specs.cell("beam_m4", 2, base) is None
    assert specs.cell("lookahead_k3", 2, base) is None
    assert specs.cell("revisions_s4", 2, base) is None
    assert specs.sequential_lengths(16) == [1, 2, 4, 8, 16]
    with pytest.raises(ValueError, match="unknown strategy label"):
        specs.check_labels(["beam", "majority"])


def test_the_store_drops_a_torn_line_and_keeps_the_first_of_a_key(tmp_path):
    path = tmp_path / "rows.jsonl"
    store = RowStore(path, ("q",))
    store.append([{"q": "a", "v": 1}, {"q": "b", "v": 2}])
    with path.open("a") as file:
        file.write('{"q": "c", "v": 3}\n{"q": "a", "v": 9}\n{"q": "d", "v"')  # torn
    again = RowStore(path, ("q",))
    assert {k[0]: r["v"] for k, r in again.rows.items()} == {"a": 1, "b": 2, "c": 3}
    again.append([{"q": "d", "v": 4}, {"q": "b", "v": 7}])
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1]) == {"q": "d", "v": 4} and all(json.loads(x) for x in lines)


def test_the_matched_multiplier_is_the_papers():
    assert matched_multiplier(0.16, 14) == pytest.approx(14 + 3 / 0.16 * 13)
    assert matched_multiplier(22, 14) == pytest.approx(15.77, abs=0.01)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    summary = study_helpers.run_tiny_study(str(workdir))
    return workdir, summary


def test_a_tiny_study_runs_end_to_end(tiny_study):
    workdir, summary = tiny_study
    for name in ("results.jsonl", "difficulty.jsonl", "summary.json", "report.md",
                 "strategy_table.json", "accuracy_vs_budget.png", "accuracy_by_bin.png",
                 "compute_optimal.png", "revision_ratios.png", "exchange.png"):  # fmt: skip
        assert (workdir / name).is_file(), name
    assert summary["budgets"] == [1, 2, 4]
    for label in ("majority", "best_of_n_weighted", "beam_msqrt", "revisions_s2"):
        assert set(summary["accuracy"][label]) <= {"1", "2", "4"}
    assert set(summary["compute_optimal"]["oracle"]) == {"1", "2", "4"}
    assert set(summary["compute_optimal"]["predicted"]) == {"1", "2", "4"}
    assert set(summary["efficiency"]["oracle"]) == {"1", "2", "4"}
    assert [p["ratio"] for p in summary["exchange"]["points"]] == [0.16, 0.79, 22.0]
    rows = [json.loads(x) for x in (workdir / "results.jsonl").read_text().splitlines()]
    keys = [(r["question_id"], r["strategy"], r["budget"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys))
    cells = {(r["strategy"], r["budget"]) for r in rows}
    assert ("lookahead_k3", 4) in cells and ("beam_m4", 2) not in cells
    # Majority and best-of-N share their samples; majority never pays for the verifier.
    for r in rows:
        if r["strategy"] == "majority":
            assert r["verifier_tokens"] == 0
    report = (workdir / "report.md").read_text()
    assert "## Findings" in report and "best-of-N weighted" in report
    table = json.loads((workdir / "strategy_table.json").read_text())
    assert len(table["difficulty"]["edges"]) == 4 and table["budgets"] == [1, 2, 4]


def test_the_summary_round_trips_with_an_interval_on_every_accuracy(tiny_study):
    workdir, summary = tiny_study
    assert load_summary(workdir) == json.loads(json.dumps(summary))
    for label, per in summary["accuracy"].items():
        for budget, value in per.items():
            low, high = summary["accuracy_interval"][label][budget]
            assert low <= value <= high
    for measure, per in summary["compute_optimal"].items():
        assert set(summary["compute_optimal_interval"][measure]) == set(per)
    assert summary["bootstrap"]["replicates"] == 1000
    for found in summary["effects"].values():
        low, high = found["interval"]
        assert low <= high
    measured = [p for p in summary["exchange"]["points"] if p["budget"] is not None]
    assert measured and all("effect_by_bin" in p and "small_interval" in p for p in measured)


def test_a_study_killed_at_any_moment_resumes_to_the_same_rows(tiny_study, tmp_path):
    reference_dir, _ = tiny_study
    reference = (reference_dir / "results.jsonl").read_text().splitlines()
    workdir = tmp_path / "killed"
    command = [sys.executable, "-m", "tests.study_helpers", str(workdir)]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(command, cwd=ROOT, env=environment)
    results = workdir / "results.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and child.poll() is None:
        if results.exists() and len(results.read_text().splitlines()) >= len(reference) // 3:
            break
        time.sleep(0.2)
    assert child.poll() is None, "the study finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    partial = results.read_text().splitlines()
    assert 0 < len(partial) < len(reference)
    study_helpers.run_tiny_study(str(workdir))
    resumed = results.read_text().splitlines()
    assert sorted(
        json.loads(x)["question_id"] + json.loads(x)["strategy"] for x in resumed
    ) == sorted(json.loads(x)["question_id"] + json.loads(x)["strategy"] for x in reference)

    def comparable(lines):
        rows = [json.loads(x) for x in lines]
        for r in rows:
            r.pop("wall_s")
        return sorted(json.dumps(r, sort_keys=True) for r in rows)

    assert comparable(resumed) == comparable(reference)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (dict(budgets=(4, 2)), "budgets must be increasing"),
        (dict(strategies=("beam",)), "unknown strategy label"),
        (dict(data={"source": "wikipedia"}), "data.source 'wikipedia' is not one of"),
        (dict(models={"policy": "/no/such/model"}), "models.policy: /no/such/model does not exist"),
        (dict(difficulty={"charged_samples": 100}), "charged_samples must be in"),
    ],
)
def test_bad_study_configs_fail_with_one_clear_error(override, message):
    config = study_config()
    for key, value in override.items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    with pytest.raises(ValueError, match=message):
        check_study_config(config)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--config", "configs/palm2_math.py"], "prompt.num_shots=4 needs prompt.shots_file"),
        (["--config", "configs/math500_hf.py"], "models.policy is required"),
        (
            [
                "--config",
                "configs/math500_hf.py",
                "--config.models.policy=/nope",
                "--config.models.prm=/nope",
            ],
            "models.policy: /nope does not exist",
        ),
        (["--config", "configs/math500_hf.py", "--config.no_such_field=1"], "no_such_field"),
    ],
)
def test_the_cli_says_what_is_wrong_in_one_line(arguments, message):
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ttc-study"), *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr
