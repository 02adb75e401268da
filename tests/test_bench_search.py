"""`ttc-bench search`: the cells it measures and what each reports, on a tiny policy."""

from __future__ import annotations

import dataclasses
import json

import pytest

import ttc_jax
from tests import search_helpers
from tests.search_helpers import PROBLEMS
from ttc_jax.bench import search
from ttc_jax.cli import bench


def test_cells_are_every_strategy_at_each_questions_per_call():
    cells = search.strategy_cells(
        ["best_of_n", "dvts", "lookahead"], 16, 4, 96, "chat", 64, ["all", "1"]
    )
    assert [(c.name, budget, per_call) for c, budget, per_call in cells] == [
        ("best_of_n", 16, 64),
        ("dvts", 16, 64),
        ("lookahead", 16, 64),
        ("best_of_n", 16, 1),
        ("dvts", 16, 1),
        ("lookahead", 16, 1),
    ]
    dvts, lookahead = cells[1][0], cells[2][0]
    assert dvts.beam_width == 4 and lookahead.lookahead_steps == 1
    assert all(c.max_new_tokens == 96 and c.prompt.style == "chat" for c, _, _ in cells)


@pytest.mark.parametrize(
    "names, per_call, message",
    [
        (["beam", "majority"], ["all"], "strategies must be some of"),
        ([], ["all"], "strategies must be some of"),
        (["beam"], ["0"], "questions per call must be 'all' or 1-8"),
        (["beam"], ["9"], "questions per call must be 'all' or 1-8"),
        (["beam"], ["some"], "questions per call must be 'all' or 1-8"),
    ],
)
def test_cells_that_cannot_be_measured_are_named(names, per_call, message):
    with pytest.raises(ValueError, match=message):
        search.strategy_cells(names, 4, 2, 32, "plain", 8, per_call)


def test_the_command_refuses_a_bad_strategy_in_one_line_before_loading_models(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["search", "--strategies", "best_of_n,bogus", "--policy", "missing"])
    assert "ttc-bench search: strategies must be some of" in str(exit_info.value)


def test_tree_searches_are_timed_with_nothing_compiling_and_count_their_lanes():
    policy = search_helpers.tiny_policy()
    shape = policy.config.replace(hidden_size=16, intermediate_size=32, head_dim=4)
    prm = ttc_jax.PRM.random(shape, "ttc_value", policy.tokenizer, seed=1)
    cells = search.strategy_cells(["best_of_n", "dvts", "lookahead"], 4, 2, 24, "plain", 3, ["all"])
    lines = []
    measured = search.run_search_benchmark(cells, policy, prm, PROBLEMS[:3], log=lines.append)
    assert [cell.strategy for cell in measured] == [
        "best_of_n N=4",
        "dvts N=4 M=2",
        "lookahead N=4 M=2",
    ]
    assert len(lines) == 3
    for cell in measured:
        assert cell.timed_compiles == 0  # the warm-up call compiled everything
        assert cell.generated_tokens > 0 and cell.questions_per_call == 3
        # Every generated token took a lane-step; padding lanes and idle steps cost more.
        assert cell.generated_tokens <= cell.lane_steps
        assert 0 < cell.lane_utilisation <= 1
        assert cell.verifier_calls >= 1
    report = search.SearchReport("tiny", "random", 3, 24, "2026-12-07", measured)
    assert json.loads(json.dumps(dataclasses.asdict(report)))["cells"][1]["strategy"] == (
        "dvts N=4 M=2"
    )
