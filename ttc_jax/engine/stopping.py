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


def stop_strings(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """Stop strings as a tuple: one string is one stop string (not its characters)."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = (stop,)
    stops = tuple(stop)
    for s in stops:
        if not isinstance(s, str) or not s:
            raise ValueError(f"stop strings must be non-empty strings, got {s!r}")
    return stops


def build_stop_table(token_texts: Sequence[str], stop_strings: Sequence[str]) -> StopTable:
    """Automaton over ``token_texts`` (text of each token id) for the given stop strings.

    Built from a character automaton whose states are the same prefixes: every token's text
    is run through it from every state at once, one character position at a time (numpy over
    all tokens), so a 49k-token vocabulary takes a fraction of a second.
    """
    stops = tuple(dict.fromkeys(stop_strings))
    if any(not s for s in stops):
        raise ValueError("stop strings must be non-empty")
    prefixes = sorted({s[:i] for s in stops for i in range(len(s))}, key=len)
    index = {p: i for i, p in enumerate(prefixes)}
    alphabet = {c: i + 1 for i, c in enumerate(sorted(set("".join(stops))))}  # 0: other chars
    done = len(prefixes)  # an absorbing state: a stop string has been completed
    by_char = np.zeros((done + 1, len(alphabet) + 1), np.int32)  # other chars lead to ""
    by_char[done] = done
    for state, prefix in enumerate(prefixes):
        for char, column in alphabet.items():
            joined = prefix + char
            if any(joined.endswith(stop) for stop in stops):
                by_char[state, column] = done
            else:
                by_char[state, column] = index[_longest_tail_in(joined, index)]

    vocab = len(token_texts)
    next_state = np.zeros((len(prefixes), vocab), np.int32)
    completes = np.zeros((len(prefixes), vocab), bool)
    # An empty token changes nothing; a token without stop characters leads back to "".
    empty = [token for token, text in enumerate(token_texts) if not text]
    next_state[:, empty] = np.arange(len(prefixes))[:, None]
    relevant = [
        t for t, text in enumerate(token_texts) if text and not alphabet.keys().isdisjoint(text)
    ]
    if not relevant:
        return StopTable(next_state, completes)
    relevant.sort(key=lambda t: -len(token_texts[t]))  # rows still running form a prefix
    lengths = np.array([len(token_texts[t]) for t in relevant])
    chars = np.zeros((len(relevant), lengths[0]), np.int32)
    for row, token in enumerate(relevant):
        chars[row, : lengths[row]] = [alphabet.get(c, 0) for c in token_texts[token]]
    states = np.tile(np.arange(len(prefixes), dtype=np.int32), (len(relevant), 1))
    for position in range(lengths[0]):
        running = int(np.sum(lengths > position))
        states[:running] = by_char[states[:running], chars[:running, position, None]]
    finished = states == done
    next_state[:, relevant] = np.where(finished, 0, states).T
    completes[:, relevant] = finished.T
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
