"""The stop-string automaton agrees with a brute-force search of the decoded text."""

import numpy as np
import pytest

from ttc_jax.engine.stopping import build_stop_table, truncate_at_stop

TEXTS = ["a", "b", "\n", "\n\n", "x\n", "ab", "aa", "", "ste", "p:", "Step", "zz"]


def _run(table, tokens):
    """Index of the token that completes a stop string, or None."""
    state = 0
    for i, token in enumerate(tokens):
        if table.completes[state, token]:
            return i
        state = table.next_state[state, token]
    return None


def _brute_force(stops, tokens):
    text = ""
    for i, token in enumerate(tokens):
        text += TEXTS[token]
        if any(s in text for s in stops):
            return i
    return None


@pytest.mark.parametrize("stops", [["\n\n"], ["ab"], ["aab", "Step:"], ["\n", "zz"], ["p:\n"]])
def test_automaton_matches_brute_force(stops):
    table = build_stop_table(TEXTS, stops)
    rs = np.random.RandomState(0)
    hits = 0
    for _ in range(3000):
        tokens = rs.randint(0, len(TEXTS), size=rs.randint(1, 12)).tolist()
        expected = _brute_force(stops, tokens)
        assert _run(table, tokens) == expected, (stops, [TEXTS[t] for t in tokens])
        hits += expected is not None
    assert hits > 100  # the random sequences do exercise stops


def test_straddling_and_reset():
    table = build_stop_table(TEXTS, ["\n\n"])
    newline, double, x_newline = TEXTS.index("\n"), TEXTS.index("\n\n"), TEXTS.index("x\n")
    a = TEXTS.index("a")
    assert _run(table, [x_newline, newline]) == 1  # "x\n" + "\n" straddles two tokens
    assert _run(table, [double]) == 0
    assert _run(table, [newline, a, newline]) is None
    # After a stop the automaton starts afresh: one more "\n" alone is not a stop.
    state = table.next_state[0, double]
    assert state == 0 and not table.completes[state, newline]


def test_empty_stop_string_is_rejected():
    with pytest.raises(ValueError, match="non-empty"):
        build_stop_table(TEXTS, [""])


def test_truncate_at_first_stop():
    assert truncate_at_stop("one\ntwo\n", ["\n"]) == "one\n"
    assert truncate_at_stop("x END y STOP", ["STOP", "END"]) == "x END"
    assert truncate_at_stop("nothing", ["\n"]) == "nothing"
