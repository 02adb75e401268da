"""Grading of final answers: extraction from model output and equivalence with the gold answer.

`extract_answer` takes the last `\\boxed{...}` (or `\\fbox{...}`, `\\boxed 5`, "The answer is
...") from a solution. `is_equiv` decides, cheapest test first:
  1. canonical strings equal (normalize.py, the MATH rules) -> equivalent;
  2. both plain numbers -> exact rational comparison; a decimal within rounding distance of
     the other number goes on to step 4;
  3. inputs that could make sympy explode (exponent towers, huge literals, deep nesting)
     -> not equivalent, with a logged reason;
  4. math-verify in a worker process with a deadline (symbolic.py) -> its verdict, or not
     equivalent with a logged reason when the deadline passes. Decided verdicts are cached by
     canonical pair, so grading the same pair again (majority votes, repeated studies) costs no
     symbolic check.
Model output is only ever read as text or as LaTeX by math-verify's parser: it is never
evaluated as code. docs/grading.md states the rules and the safety model.
"""

import collections
import logging
import math
import numbers
import re
import threading
from fractions import Fraction

from ttc_jax.math.normalize import as_rational, normalize_answer
from ttc_jax.math.symbolic import check_equivalent

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1.0
# MATH answers are at most a few hundred characters; anything longer is not a final answer,
# and the cap keeps the (linear-time) string rules to well under a millisecond.
MAX_ANSWER_CHARS = 2_000
# Longest canonical answer handed to sympy; the longest MATH-500 answer has 53 characters.
MAX_SYMBOLIC_CHARS = 400
MAX_BRACE_DEPTH = 24
# Decided symbolic verdicts kept (least recently used dropped first); an entry is two canonical
# answers of at most MAX_SYMBOLIC_CHARS characters, so the cache holds at most about 35 MB.
VERDICT_CACHE_SIZE = 1 << 15
# math-verify calls a decimal equal to a number when both round to the same 6 decimal places,
# so they differ by at most 1e-6; its floats carry 15 significant digits, which below
# DECIMAL_RANGE adds at most 1e-9. A pair further apart is unequal without asking it.
ROUNDING_SLACK = Fraction(2, 10**6)
DECIMAL_RANGE = 10**6

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_ANSWER_PHRASE = re.compile(r"answer is\s*:?\s*|final answer\s*:\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
# Patterns after which sympy may compute numbers too large to finish: 10^{10^{10}}, 10^{10}^{10},
# 10^{1000000}, 100000!.
_EXPLOSIVE_PATTERNS = (
    (re.compile(r"\^\s*\{[^{}]*\^"), "nested exponent"),
    (re.compile(r"\^\s*\{[^{}]*\}\s*\^"), "stacked exponent"),
    (re.compile(r"\^\s*\{?\s*-?\d{6}"), "exponent of six or more digits"),
    (re.compile(r"\d{5}\s*!"), "factorial of five or more digits"),
)


def _braced_argument(text: str, open_index: int) -> str | None:
    """Content of the group opening at `open_index`, or None if it never closes.

    Escaped braces (`\\{`, `\\}`) are content, not grouping, as in `\\boxed{\\{1,2\\}}`.
    """
    depth = 0
    index = open_index
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : index]
        index += 1
    return None


def _last_boxed(text: str) -> str | None:
    command_start = max(text.rfind(command) for command in _BOX_COMMANDS)
    if command_start < 0:
        return None
    command = next(c for c in _BOX_COMMANDS if text.startswith(c, command_start))
    after = command_start + len(command)
    rest = text[after:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        return _braced_argument(text, after + len(rest) - len(stripped))
    if stripped and rest[:1].isspace():
        # "\boxed 5$": the argument runs to the end of the math span or line.
        return re.split(r"[$\n]", stripped, maxsplit=1)[0].strip() or None
    return None


def _answer_after_phrase(text: str) -> str | None:
    phrases = list(_ANSWER_PHRASE.finditer(text))
    if not phrases:
        return None
    tail = text[phrases[-1].end() :]
    if tail.startswith("$"):
        math_span = tail.lstrip("$")
        answer = math_span[: math_span.find("$")] if "$" in math_span else math_span
    else:
        line = tail.split("\n", 1)[0]
        sentence_end = _SENTENCE_END.search(line)
        answer = line[: sentence_end.start()] if sentence_end else line
    return answer.strip() or None


def extract_answer(text: str | None) -> str | None:
    """The final answer in a solution: the last \\boxed{...} or \\fbox{...} with nested braces,
    then "\\boxed 5", then the text after the last "The answer is" / "Final answer:".

    Returns None when there is none, when the last box is empty, or when it is cut off before
    it closes.
    """
    if not text:
        return None
    if any(command in text for command in _BOX_COMMANDS):
        boxed = _last_boxed(text)
        # An empty box is no answer; as "" it would still be counted as one in a vote.
        return boxed if boxed and boxed.strip() else None
    return _answer_after_phrase(text)


def _brace_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "}":
            depth -= 1
    return deepest


def symbolic_risk(canonical: str) -> str | None:
    """Why `canonical` should not reach sympy, or None if it may."""
    if len(canonical) > MAX_SYMBOLIC_CHARS:
        return f"longer than {MAX_SYMBOLIC_CHARS} characters"
    if _brace_depth(canonical) > MAX_BRACE_DEPTH:
        return f"braces nested deeper than {MAX_BRACE_DEPTH}"
    for pattern, reason in _EXPLOSIVE_PATTERNS:
        if pattern.search(canonical):
            return reason
    return None


class _VerdictCache:
    """Symbolic verdicts by (pred, gold) canonical pair, bounded, shared by grading threads."""

    def __init__(self, size: int):
        self._size = size
        self._verdicts: collections.OrderedDict[tuple[str, str], bool] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> bool | None:
        with self._lock:
            verdict = self._verdicts.get(key)
            if verdict is not None:
                self._verdicts.move_to_end(key)
            return verdict

    def put(self, key: tuple[str, str], verdict: bool) -> None:
        with self._lock:
            self._verdicts[key] = verdict
            self._verdicts.move_to_end(key)
            if len(self._verdicts) > self._size:
                self._verdicts.popitem(last=False)


_symbolic_verdicts = _VerdictCache(VERDICT_CACHE_SIZE)


def _as_text(answer: object) -> str | None:
    """An answer as text: numbers (from JSON, say) become strings; other non-strings None."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return None
    if isinstance(answer, numbers.Integral):
        return str(int(answer))
    # str() of a numpy float is its shortest round-tripping form ("0.1" for float32 0.1).
    return str(answer) if math.isfinite(answer) else None


def _numeric_verdict(pred: tuple[Fraction, bool], gold: tuple[Fraction, bool]) -> bool | None:
    """Equivalence of two plain numbers, or None when only math-verify's rounding rule can
    tell (a decimal within rounding distance of the other number)."""
    (pred_value, pred_is_decimal), (gold_value, gold_is_decimal) = pred, gold
    if pred_value == gold_value or not (pred_is_decimal or gold_is_decimal):
        return pred_value == gold_value
    if (
        abs(pred_value - gold_value) > ROUNDING_SLACK
        and max(abs(pred_value), abs(gold_value)) < DECIMAL_RANGE
    ):
        return False
    return None


def _symbolic_verdict(pred_canonical: str, gold_canonical: str, timeout_s: float) -> bool:
    """The (cached) symbolic check; an undecided check is logged, graded wrong, not cached."""
    key = (pred_canonical, gold_canonical)
    cached = _symbolic_verdicts.get(key)
    if cached is not None:
        return cached
    verdict = check_equivalent(pred_canonical, gold_canonical, timeout_s)
    if verdict.reason:
        logger.warning(
            "symbolic check undecided (%s), graded as wrong: pred=%.60r gold=%.60r",
            verdict.reason,
            pred_canonical,
            gold_canonical,
        )
        return False
    _symbolic_verdicts.put(key, verdict.equivalent)
    return verdict.equivalent


def is_equiv(pred: object, gold: object, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether answer `pred` is mathematically the same as `gold` (both already extracted).

    Answers are strings; numbers (int, float, numpy) are read as their decimal text, and any
    other type, like None, is not equivalent to anything. Bounded in time by about `timeout_s`
    seconds in any thread; raises nothing for any input. Undecided cases (timeout, unsafe input)
    count as not equivalent and are logged.
    """
    pred, gold = _as_text(pred), _as_text(gold)
    if not pred or not gold:
        return False
    if max(len(pred), len(gold)) > MAX_ANSWER_CHARS:
        logger.warning("answer longer than %d characters graded as wrong", MAX_ANSWER_CHARS)
        return False
    pred_canonical, gold_canonical = normalize_answer(pred), normalize_answer(gold)
    if not pred_canonical or not gold_canonical:
        return False
    if pred_canonical == gold_canonical:
        return True
    pred_number, gold_number = as_rational(pred_canonical), as_rational(gold_canonical)
    if pred_number is not None and gold_number is not None:
        verdict = _numeric_verdict(pred_number, gold_number)
        if verdict is not None:
            return verdict
    risk = symbolic_risk(pred_canonical) or symbolic_risk(gold_canonical)
    if risk is not None:
        logger.warning(
            "no symbolic check (%s), graded as wrong: pred=%.60r gold=%.60r",
            risk,
            pred_canonical,
            gold_canonical,
        )
        return False
    return _symbolic_verdict(pred_canonical, gold_canonical, timeout_s)
