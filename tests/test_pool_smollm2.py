"""Admission on the real SmolLM2-135M-Instruct policy: a question admitted into a running
batch, or searched in a pool, gets what it gets alone, bit for bit."""

import pytest

from tests import batch_invariance

pytestmark = pytest.mark.slow


def test_an_admitted_question_and_a_pooled_search_equal_the_question_alone():
    """`Engine.admit`: the short question's samples (tokens and log-probabilities), decoded
    alone, equal those it samples admitted into the row of a question that has ended, beside
    a question whose prompt pads the prefix to 1,024 slots. `tree_search`'s pool: beam
    search with room for two questions at a time gives each short question the candidates it
    gets alone. Run on the default CPU client, in a process of its own."""
    results = batch_invariance.measure(["admit", "pool"])
    assert list(results) == ["admit", "pool"]
    for name, result in results.items():
        assert result["beside"] == result["alone"], name
        assert result["alone"][0] != result["alone"][1]  # the comparison tells rows apart
