"""Process labels by Monte Carlo rollouts (Math-Shepherd style), for PRM training.

For each question the policy samples solutions; for each step prefix of each solution, the
policy rolls out to the end several times from that prefix, and the step's soft label is the
fraction of rollouts that reach the gold answer. The last step's label is the solution's own
correctness (a finished solution has nothing left to roll out). Solutions without a parsable
final answer are dropped, as the paper does before training.

Identical prefixes of one question (every correct start of a deterministic chain is the
same text) are rolled out once and their label shared: the same estimate, for a fraction of
the sampling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ttc_jax import program_cache
from ttc_jax.engine.generate import generate
from ttc_jax.lm import LanguageModel
from ttc_jax.math.datasets import Problem
from ttc_jax.math.grading import extract_answer, is_equiv
from ttc_jax.math.prompts import split_steps


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """How solutions and rollouts are sampled."""

    temperature: float
    max_new_tokens: int
    step_delimiter: str = "\n"
    # Prompts per `generate` call: bounds memory, and keeps the compiled shapes few.
    prompts_per_call: int = 64


@dataclasses.dataclass(frozen=True)
class LabelledSolution:
    """A sampled solution, its steps and one soft label per step."""

    problem_id: str
    question: str
    steps: list[str]
    labels: list[float]
    correct: bool

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class Grader:
    """`is_equiv` of extracted answers against a gold answer, remembered per pair: rollouts
    of one question repeat the same few answers thousands of times."""

    def __init__(self):
        self._verdicts: dict[tuple[str, str], bool] = {}

    def correct(self, text: str, gold: str) -> bool:
        answer = extract_answer(text)
        if answer is None:
            return False
        key = (answer, gold)
        if key not in self._verdicts:
            self._verdicts[key] = is_equiv(answer, gold)
        return self._verdicts[key]


def sample_solutions(
    lm: LanguageModel,
    prompts: Sequence[str],
    n: int,
    settings: SamplingSettings,
    seed: int,
    progress: str | None = None,
) -> list[list]:
    """``n`` samples of each prompt (`ttc_jax.generate` records), in calls of at most
    ``settings.prompts_per_call`` prompts, each call with its own seed."""
    results = []
    starts = range(0, len(prompts), settings.prompts_per_call)
    # A context manager, so a Ctrl-C closes the bar before the command's last line.
    with tqdm(starts, desc=progress, disable=progress is None) as bar:
        for call, start in enumerate(bar):
            # Each call may compile programs; a long stage of calls (thousands of prompts)
            # would otherwise fill the process's memory mappings (`ttc_jax.program_cache`).
            program_cache.release_if_crowded()
            chunk = prompts[start : start + settings.prompts_per_call]
            results.extend(
                generate(
                    lm,
                    list(chunk),
                    n=n,
                    max_new_tokens=settings.max_new_tokens,
                    temperature=settings.temperature,
                    seed=(seed * 100_003 + call) % 2**32,
                )
            )
    return results


def mc_step_labels(
    lm: LanguageModel,
    prompt_text: Callable[[Problem], str],
    problems: Sequence[Problem],
    samples_per_question: int,
    rollouts_per_step: int,
    settings: SamplingSettings,
    seed: int,
    include_reference: bool = False,
    sample_temperature: float | None = None,
) -> list[LabelledSolution]:
    """Samples ``samples_per_question`` solutions per problem and labels every step by
    ``rollouts_per_step`` rollouts from its prefix, both with ``settings``; the solutions at
    ``sample_temperature`` instead when given (hotter samples hold more wrong steps to learn
    from, while the rollouts still measure the policy as it is sampled).

    ``include_reference`` labels each problem's reference solution too, as one more sample
    (for a policy too untrained to answer anything right, as in a quick check).
    """
    grader = Grader()
    delimiter = settings.step_delimiter
    prompts = [prompt_text(p) for p in problems]
    sample_settings = settings
    if sample_temperature is not None:
        sample_settings = dataclasses.replace(settings, temperature=sample_temperature)
    samples = sample_solutions(lm, prompts, samples_per_question, sample_settings, seed)
    solutions = []  # (problem index, steps, correct)
    prefix_index: dict[str, int] = {}  # rollout prompt -> row of the lists below
    prefix_solutions: list[str] = []  # the solution text the rollout continues
    prefix_golds: list[str] = []
    for index, (problem, prompt, row) in enumerate(zip(problems, prompts, samples, strict=True)):
        texts = [sample.text for sample in row]
        if include_reference:
            texts.append(problem.solution)
        for text in texts:
            if extract_answer(text) is None:
                continue
            steps = split_steps(text, delimiter)
            solutions.append((index, steps, grader.correct(text, problem.answer)))
            for k in range(1, len(steps)):
                solution = delimiter.join(steps[:k]) + delimiter
                if prompt + solution not in prefix_index:
                    prefix_index[prompt + solution] = len(prefix_golds)
                    prefix_solutions.append(solution)
                    prefix_golds.append(problem.answer)
    rollouts = sample_solutions(
        lm, list(prefix_index), rollouts_per_step, settings, seed + 1, progress="rollouts"
    )
    # A rollout is graded with its prefix: the answer may already sit in the prefix.
    prefix_values = [
        float(np.mean([grader.correct(solution + r.text, gold) for r in row]))
        for row, solution, gold in zip(rollouts, prefix_solutions, prefix_golds, strict=True)
    ]
    labelled = []
    for index, steps, correct in solutions:
        problem, prompt = problems[index], prompts[index]
        labels = [
            prefix_values[prefix_index[prompt + delimiter.join(steps[:k]) + delimiter]]
            for k in range(1, len(steps))
        ]
        labelled.append(
            LabelledSolution(problem.id, problem.problem, steps, [*labels, float(correct)], correct)
        )
    return labelled
