"""Grading: answer extraction, the equivalence table, agreement with MATH-500's own answers,
and the safety model (bounded time, no code execution) in the main thread and worker threads."""

import itertools
import logging
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import math_verify
import numpy as np
import pytest
import sympy
import sympy.parsing.sympy_parser as sympy_parser

from tests.grading_pairs import GRADING_PAIRS
from ttc_jax.math import (
    extract_answer,
    grading,
    is_equiv,
    load_math500,
    symbolic,
    symbolic_worker,
)
from ttc_jax.math.bench_grading import PAIRS_PER_PROBLEM, benchmark_pairs
from ttc_jax.math.normalize import normalize_answer
from ttc_jax.math.symbolic import SymbolicVerdict, check_equivalent, warm_up

GRADING_DOC = Path(__file__).resolve().parents[1] / "docs" / "grading.md"
# The time bound of one call is 1 s; the slack covers killing and replacing a late worker.
CALL_BOUND_S = 1.5


@pytest.fixture(scope="module")
def math500():
    return load_math500()


@pytest.fixture(scope="module")
def grading_thread():
    """One worker thread for the module, so its grading worker process starts only once."""
    with ThreadPoolExecutor(max_workers=1, initializer=warm_up) as executor:
        yield executor


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("$\\boxed{1}$ then $\\boxed{2}$", "2"),
        (
            "nested: \\boxed{\\frac{\\sqrt{2}}{\\left(3\\right)}}",
            "\\frac{\\sqrt{2}}{\\left(3\\right)}",
        ),
        ("a set \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("$\\boxed 5$ apples", "5"),
        ("\\fbox{42}", "42"),
        ("\\boxed{1} and finally \\fbox{7}", "7"),
        ("The answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
        ("Step 1\nThe final answer is 12.\n", "12"),
        ("Final answer: (1, 2)", "(1, 2)"),
        ("cut off at \\boxed{\\frac{1}{2", None),
        ("The answer is \\boxed{}.", None),
        ("The answer is $\\boxed{ \n }$.", None),
        ("\\boxed{3} but then \\boxed{}", None),
        ("no answer here", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("pair", GRADING_PAIRS, ids=lambda pair: f"{pair.rule}:{pair.pred}")
def test_grading_table(pair):
    assert is_equiv(pair.pred, pair.gold) is pair.equivalent


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        (3, "3", True),
        ("3", 3, True),
        (3, 3, True),
        (2.5, "\\frac{5}{2}", True),
        (1e-7, "0.0000001", True),
        (np.int64(12), "12", True),
        (np.float32(0.1), "0.1", True),
        (np.float64(3.0), "3", True),
        (4, "3", False),
        (["3"], "3", False),
        ("3", ("3",), False),
        ({"answer": "3"}, "3", False),
        (b"3", "3", False),
        (True, "1", False),
        (np.bool_(True), "1", False),
        (3 + 0j, "3", False),
        (float("nan"), "nan", False),
        (float("inf"), "\\infty", False),
        (object(), "3", False),
    ],
)
def test_non_string_answers_are_read_or_rejected_without_raising(pred, gold, expected):
    assert is_equiv(pred, gold) is expected


def test_grading_table_covers_every_rule_both_ways():
    rules_with_match = {pair.rule for pair in GRADING_PAIRS if pair.equivalent}
    rules_with_miss = {pair.rule for pair in GRADING_PAIRS if not pair.equivalent}
    assert len(GRADING_PAIRS) >= 60
    assert rules_with_match - {"delimiters"} <= rules_with_miss


def _documented_math500_exceptions() -> set[str]:
    section = GRADING_DOC.read_text().split("## MATH-500 exceptions", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(test/[^`]+)` \|", section, flags=re.MULTILINE))


def test_reference_solutions_grade_correct_except_documented(math500):
    failing = {
        problem.id
        for problem in math500
        if not is_equiv(extract_answer(problem.solution), problem.answer)
    }
    documented = _documented_math500_exceptions()
    assert len(documented) <= 2
    assert failing == documented


def test_restyled_math500_answers_grade_correct(math500):
    pairs = benchmark_pairs(math500, len(math500) * PAIRS_PER_PROBLEM)
    equivalent_by_construction = [
        pair for index, pair in enumerate(pairs) if index % PAIRS_PER_PROBLEM < 10
    ]
    wrong = [pair for pair in equivalent_by_construction if not is_equiv(*pair)]
    assert wrong == []


def test_other_problems_answers_grade_wrong(math500):
    """Each answer against the next problem's: only the truly identical ones may match."""
    wrongly_matched = []
    for problem, neighbour in itertools.pairwise(math500):
        same = normalize_answer(problem.answer) == normalize_answer(neighbour.answer)
        if is_equiv(neighbour.answer, problem.answer) and not same:
            wrongly_matched.append((neighbour.answer, problem.answer))
    assert wrongly_matched == []


@pytest.fixture()
def counted_symbolic_checks(monkeypatch):
    """Every symbolic check is recorded and answered "not equivalent" at once, with an empty
    verdict cache, so tests can count which pairs reach the check."""
    calls = []

    def check(pred, gold, timeout_s):
        calls.append((pred, gold))
        return SymbolicVerdict(False)

    monkeypatch.setattr(grading, "check_equivalent", check)
    monkeypatch.setattr(grading, "_symbolic_verdicts", grading._VerdictCache(1000))
    return calls


def test_second_pass_over_the_same_pairs_needs_no_symbolic_check(counted_symbolic_checks, math500):
    pairs = [
        pair
        for index, pair in enumerate(benchmark_pairs(math500, 200 * PAIRS_PER_PROBLEM))
        if index % PAIRS_PER_PROBLEM >= 10
    ][:1000]
    assert len(pairs) == 1000
    first = [is_equiv(*pair) for pair in pairs]
    checked = len(counted_symbolic_checks)
    # Most pairs of different problems' answers reach the check, each canonical pair once.
    assert checked > 300
    assert len(set(counted_symbolic_checks)) == checked
    assert [is_equiv(*pair) for pair in pairs] == first
    assert len(counted_symbolic_checks) == checked


def test_undecided_verdicts_are_not_cached(monkeypatch):
    verdicts = iter([SymbolicVerdict(False, "symbolic check exceeded 1 s"), SymbolicVerdict(True)])
    calls = []

    def check(pred, gold, timeout_s):
        calls.append((pred, gold))
        return next(verdicts)

    monkeypatch.setattr(grading, "check_equivalent", check)
    monkeypatch.setattr(grading, "_symbolic_verdicts", grading._VerdictCache(1000))
    assert is_equiv("(x+1)^2", "x^2+2x+1") is False
    assert is_equiv("(x+1)^2", "x^2+2x+1") is True
    assert is_equiv("(x+1)^2", "x^2+2x+1") is True
    assert len(calls) == 2


def test_verdict_cache_is_bounded():
    cache = grading._VerdictCache(2)
    for key in ("a", "b", "c"):
        cache.put((key, "1"), True)
    assert cache.get(("a", "1")) is None
    assert cache.get(("b", "1")) is True and cache.get(("c", "1")) is True


@pytest.mark.parametrize(
    ("pred", "gold", "needs_check"),
    [
        ("12", "21", False),
        ("0.5001", "\\frac{1}{2}", False),
        ("1.5e-2", "0.15", False),
        ("0.3333333", "\\frac{1}{3}", True),  # within math-verify's rounding of 6 places
        ("1234567.5", "1234567", True),  # too large for the rounding bound to be certain
    ],
)
def test_plain_numbers_reach_the_symbolic_check_only_near_rounding(
    counted_symbolic_checks, pred, gold, needs_check
):
    is_equiv(pred, gold)
    assert bool(counted_symbolic_checks) is needs_check


def test_worker_parses_each_answer_once(monkeypatch):
    parsed = []
    unrecorded_parse = math_verify.parse

    def recording_parse(text, *args, **kwargs):
        parsed.append(text)
        return unrecorded_parse(text, *args, **kwargs)

    monkeypatch.setattr(math_verify, "parse", recording_parse)
    gold = "\\frac{7}{13}+q_{parse}"
    preds = ["q_{parse}+\\frac{7}{13}", "q_{parse}", "q_{parse}+\\frac{7}{13}"]
    verdicts = [symbolic_worker.symbolic_equiv(pred, gold) for pred in preds]
    assert verdicts == [True, False, True]
    assert sorted(parsed) == sorted(f"${text}$" for text in {gold, *preds})


def test_parse_expr_only_ever_sees_inert_text(monkeypatch, math500):
    """math-verify's LaTeX path reaches sympy's parse_expr (Python eval) only with number or
    name tokens, never with the answer text itself."""
    seen = []
    unrestricted = sympy_parser.parse_expr

    def recording_parse_expr(text, *args, **kwargs):
        seen.append(text)
        return unrestricted(text, *args, **kwargs)

    monkeypatch.setattr(sympy_parser, "parse_expr", recording_parse_expr)
    hostile = [
        "__import__('os').system('touch x')",
        "x.__class__",
        "\\frac{1}{",
        "\\text{lambda: 0}",
        "open('f').read()",
    ]
    answers = [problem.answer for problem in math500[:100]] + hostile
    for answer in answers:
        symbolic_worker.symbolic_equiv(answer, "1")
    assert seen, "the spy saw no call: the check no longer exercises the number path"
    assert [
        text for text in seen if not symbolic_worker.INERT_PARSE_EXPR_TEXT.fullmatch(text)
    ] == []


def test_worker_parse_expr_refuses_code(monkeypatch):
    for module in (sympy_parser, sympy.parsing):
        monkeypatch.setattr(module, "parse_expr", sympy_parser.parse_expr)
    symbolic_worker.restrict_code_evaluating_parsers()
    assert sympy.Number("12") == 12
    with pytest.raises(RuntimeError, match="parses no text as Python code"):
        sympy.sympify("__import__('os').getcwd()")


def test_a_worker_outlives_an_interrupt_meant_for_its_parent():
    worker = symbolic._Worker()
    try:
        assert worker.check("\\frac{1}{2}", "0.5", timeout_s=60) == SymbolicVerdict(True, "")
        worker.process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert worker.process.poll() is None
        assert worker.check("2", "3", timeout_s=60) == SymbolicVerdict(False, "")
    finally:
        worker.close()
    assert worker.process.poll() is not None


HUGE_LATEX = ("\\frac{1}{2}+" * 90_000)[:1_000_000]
ADVERSARIAL_ANSWERS = {
    "exponent tower": "10^{10^{10^{10}}}",
    "stacked exponents": "10^{10}^{10}",
    "huge exponent": "10^{99999999}",
    "huge factorial": "99999999!",
    "nested braces": "{" * 10_000 + "1" + "}" * 10_000,
    "nested boxes": "\\boxed{" * 10_000 + "1" + "}" * 10_000,
    "1 MB": HUGE_LATEX,
    "code": "__import__('os').system('touch x')",
    "malformed frac": "\\frac{1}{",
    "malformed env": "\\begin{pmatrix} 1 \\\\ \\end{bmatrix",
    "unbalanced": "}{)(][\\right\\left",
    "unicode": "∑∞ ☃ 𝟙 \u202e\x00 ½",
}


def _grade_every_way(answer: str) -> list[object]:
    """Every grading entry point on `answer`, each timed against the bound."""
    calls = [
        lambda: extract_answer(answer),
        lambda: extract_answer(f"The answer is $\\boxed{{{answer}}}$."),
        lambda: is_equiv(answer, "1"),
        lambda: is_equiv("1", answer),
        lambda: is_equiv(answer, answer + " "),
        lambda: is_equiv(extract_answer(f"\\boxed{{{answer}}}"), answer),
    ]
    results = []
    for call in calls:
        start = time.monotonic()
        results.append(call())
        assert time.monotonic() - start < CALL_BOUND_S
    return results


@pytest.mark.parametrize("in_thread", [False, True], ids=["main-thread", "worker-thread"])
@pytest.mark.parametrize("name", ADVERSARIAL_ANSWERS)
def test_adversarial_answers_are_bounded_and_inert(
    name, in_thread, grading_thread, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    answer = ADVERSARIAL_ANSWERS[name]
    if in_thread:
        grading_thread.submit(warm_up).result()
        results = grading_thread.submit(_grade_every_way, answer).result()
    else:
        warm_up()
        results = _grade_every_way(answer)
    assert results[2] is False and results[3] is False
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("in_thread", [False, True], ids=["main-thread", "worker-thread"])
def test_code_in_answers_is_never_run(in_thread, grading_thread, tmp_path, monkeypatch):
    """The symbolic check itself (past every shortcut) gets the payload as text only."""
    monkeypatch.chdir(tmp_path)
    # An absolute target: a grading worker started before the chdir runs elsewhere, and a
    # relative "touch x" from it would land outside tmp_path and go unnoticed.
    target = tmp_path / "pwned"
    payloads = [
        f"__import__('os').system('touch {target}')",
        f"exec(\"open('{target}', 'w')\")",
        "__import__('os').system('touch x')",
    ]

    def check_all() -> list[bool]:
        return [check_equivalent(p, p + "+0", 1.0).equivalent for p in payloads]

    if in_thread:
        grading_thread.submit(check_all).result()
    else:
        check_all()
    for payload in payloads:
        assert not is_equiv(payload, "0")
        assert extract_answer(f"\\boxed{{{payload}}}") == payload
    assert not target.exists()
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("in_thread", [False, True], ids=["main-thread", "worker-thread"])
def test_deadline_stops_a_runaway_symbolic_check(in_thread, grading_thread):
    """Past the pre-checks, sympy would take minutes on 10^{10^{10}}; the deadline kills it
    and the next check gets a fresh worker."""

    def runaway_then_normal():
        warm_up()
        start = time.monotonic()
        verdict = check_equivalent("10^{10^{10}}", "1", timeout_s=1.0)
        elapsed = time.monotonic() - start
        return verdict, elapsed, check_equivalent("\\frac{1}{2}", "0.5", timeout_s=5.0)

    if in_thread:
        verdict, elapsed, next_verdict = grading_thread.submit(runaway_then_normal).result()
    else:
        verdict, elapsed, next_verdict = runaway_then_normal()
    assert verdict.equivalent is False
    assert "exceeded" in verdict.reason
    assert elapsed < CALL_BOUND_S
    assert next_verdict.equivalent is True


def test_timeout_is_logged_and_graded_wrong(caplog):
    warm_up()
    with caplog.at_level(logging.WARNING, logger="ttc_jax.math.grading"):
        assert is_equiv("(x+1)^{40}", "x^{40}+1", timeout_s=0.001) is False
    assert "exceeded 0.001 s" in caplog.text


def test_unsafe_input_is_logged_and_graded_wrong(caplog):
    with caplog.at_level(logging.WARNING, logger="ttc_jax.math.grading"):
        assert is_equiv("2^{2^{2}}", "16") is False
    assert "nested exponent" in caplog.text


def test_concurrent_grading_agrees_with_sequential():
    """One grading thread per core (this machine has two), as docs/grading.md advises: more
    would share the cores and stretch checks past the wall-clock deadline."""
    pairs = [(pair.pred, pair.gold) for pair in GRADING_PAIRS]
    with ThreadPoolExecutor(max_workers=2, initializer=warm_up) as executor:
        concurrent = list(executor.map(lambda pair: is_equiv(*pair), pairs))
    assert concurrent == [pair.equivalent for pair in GRADING_PAIRS]
