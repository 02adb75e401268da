"""Grading throughput benchmark: `python -m ttc_jax.math.bench_grading [--pairs N] [--threads T]`.

Grades N (default 10,000) prediction/gold pairs built from MATH-500, 20 per problem in turn:
  - 5 answers extracted from the reference solution (the string-equality path);
  - 5 restyled but equivalent answers: "\\dfrac", "x = ", spaces, "$...$", a final period;
  - 10 answers of other problems, mostly wrong (the path that reaches math-verify).
Prints pairs per second, counting the grading worker's start-up, and how many pairs were
judged equivalent (a change in that count means grading itself changed).
"""

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from ttc_jax.math.datasets import Problem, load_math500
from ttc_jax.math.grading import extract_answer, is_equiv

PAIRS_PER_PROBLEM = 20


def _restyled(answer: str, variant: int) -> str:
    """An equivalent way to write `answer`, one of five styles."""
    styles = (
        lambda text: text.replace("\\frac", "\\dfrac"),
        lambda text: f"x = {text}" if "=" not in text else text,
        # Only inside brackets: "58, 500" is a list, not 58,500.
        lambda text: text.replace(",", " , ") if text[:1] in "([" else f" {text} ",
        lambda text: f"${text}$",
        lambda text: f"{text}.",
    )
    return styles[variant](answer)


def benchmark_pairs(problems: list[Problem], count: int) -> list[tuple[str | None, str]]:
    """`count` (prediction, gold) pairs, cycling through `problems`."""
    pairs: list[tuple[str | None, str]] = []
    for index in range(count):
        problem = problems[(index // PAIRS_PER_PROBLEM) % len(problems)]
        slot = index % PAIRS_PER_PROBLEM
        if slot < 5:
            prediction = extract_answer(problem.solution)
        elif slot < 10:
            prediction = _restyled(problem.answer, slot - 5)
        else:
            other = problems[(index * 7919 + slot) % len(problems)]
            prediction = other.answer
        pairs.append((prediction, problem.answer))
    return pairs


def _grade(pair: tuple[str | None, str]) -> bool:
    return is_equiv(*pair)


def main(argv: list[str] | None = None) -> float:
    """Runs the benchmark, prints the figures and returns pairs per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    pairs = benchmark_pairs(load_math500(), args.pairs)
    start = time.perf_counter()
    if args.threads == 1:
        verdicts = [_grade(pair) for pair in pairs]
    else:
        with ThreadPoolExecutor(max_workers=args.threads) as executor:
            verdicts = list(executor.map(_grade, pairs))
    seconds = time.perf_counter() - start
    pairs_per_second = len(pairs) / seconds
    print(
        f"graded {len(pairs)} pairs in {seconds:.1f} s with {args.threads} thread(s): "
        f"{pairs_per_second:,.0f} pairs/s; {sum(verdicts)} judged equivalent"
    )
    return pairs_per_second


if __name__ == "__main__":
    main()
