"""Grading: answer extraction, the equivalence table, agreement with MATH-500's own answers,
and the safety model (bounded time, no code execution) in the main thread and worker threads."""

import itertools
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sympy
import sympy.parsing.sympy_parser as sympy_parser

from tests.grading_pairs import GRADING_PAIRS
from ttc_jax.math import extract_answer, is_equiv, load_math500, symbolic_worker
from ttc_jax.math.bench_grading import PAIRS_PER_PROBLEM, benchmark_pairs
from ttc_jax.math.normalize import normalize_answer
from ttc_jax.math.symbolic import check_equivalent, warm_up

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
