"""Stop strings detected on device, including strings that straddle token boundaries.

A small automaton is compiled on the host from the tokenizer's per-token texts: its state is
the longest tail of the text so far that could still grow into a stop string (a proper prefix
of one), and ``table[state, token]`` gives the next state and whether a stop string has just
been completed. The decode loop then needs one table lookup per sample per token and no host
round trip. With a delimiter like "\n" the automaton has one state; "\n\n" needs two.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class StopTable:
    next_state: np.ndarray  # [num_states, vocab] int32
    completes: np.ndarray  # [num_states, vocab] bool: token finishes a stop string

    @property
    def num_states(self) -> int:
        return self.next_state.shape[0]


def build_stop_table(token_texts: Sequence[str], stop_strings: Sequence[str]) -> StopTable:
    """Automaton over ``token_texts`` (text of each token id) for the given stop strings."""
    stops = tuple(dict.fromkeys(stop_strings))
    if any(not s for s in stops):
        raise ValueError("stop strings must be non-empty")
    prefixes = sorted({s[:i] for s in stops for i in range(len(s))}, key=len)
    index = {p: i for i, p in enumerate(prefixes)}
    stop_chars = set("".join(stops))
    vocab = len(token_texts)
    next_state = np.zeros((len(prefixes), vocab), np.int32)
    completes = np.zeros((len(prefixes), vocab), bool)
    for token, text in enumerate(token_texts):
        if not text:
            next_state[:, token] = np.arange(len(prefixes))  # an empty token changes nothing
            continue
        if stop_chars.isdisjoint(text):
            # No stop string can end in or continue through this token: back to state "".
            continue
        for state, prefix in enumerate(prefixes):
            joined = prefix + text
            if any(stop in joined for stop in stops):
                completes[state, token] = True
                continue
            next_state[state, token] = index[_longest_tail_in(joined, index)]
    return StopTable(next_state, completes)


def _longest_tail_in(text: str, prefixes: dict[str, int]) -> str:
    for start in range(max(0, len(text) - max(map(len, prefixes))), len(text) + 1):
        if text[start:] in prefixes:
            return text[start:]
    return ""


def truncate_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """Text up to and including the first stop string (unchanged if there is none)."""
    ends = [text.find(s) + len(s) for s in stop_strings if s and s in text]
    return text[: min(ends)] if ends else text
