"""Revision chains of revision models on fresh training-split questions: how the revision
trials of docs/embedded.md were measured, so a new recipe is judged without the test split.

    python -m ttc_jax.embedded.revision_trial embedded_run/revision/model [more models]

For every model and level: pass@1 of each attempt of ``--chains`` chains of ``--attempts``
sequential attempts (at the world's temperature of 1.4 unless ``--temperature`` says
otherwise); how often an attempt is right after a right one and after a wrong one; pass@1
with the reference solution shown as the one earlier attempt (does the model read its
context?), and the same with the question left out (can it copy an attempt at all?); how
often a greedy solution (temperature 0) is the reference word for word with no earlier
attempt, after the reference, and after it with the question hidden (sampling can hide a
copy that greedy decoding shows: a model that copies writes the reference word for word
after it more often than unshown); then the mean over levels and the last attempt's gain
over the first. The questions are drawn from the training split with seed 777, which the
pipeline's question sets (seeds ``10 x seed + stream``) do not use.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from ttc_jax.embedded import task
from ttc_jax.embedded.fine_tuning import world_sampling
from ttc_jax.embedded.revision_stages import chain_grades, revision_chains, revision_prompt
from ttc_jax.training.rollouts import Grader, sample_solutions

QUESTION_SEED = 777


def trial_sampling(temperature: float = task.SAMPLING_TEMPERATURE):
    """The world's sampling, at its token budget and (by default) its temperature."""
    return world_sampling(task.MAX_NEW_TOKENS, prompts_per_call=64, temperature=temperature)


def trial_questions(level: int, questions: int) -> list:
    """Fresh training-split problems of a level, none of them in the pipeline's data."""
    return task.problems_of_split(questions, level, QUESTION_SEED, "train")


def attempt_grades(
    lm,
    problems: Sequence,
    chains: int,
    attempts: int,
    grader: Grader,
    seed: int,
    temperature: float = task.SAMPLING_TEMPERATURE,
) -> np.ndarray:
    """[question, chain, attempt] grades of revision chains."""
    sampling = trial_sampling(temperature)
    grown = revision_chains(lm, problems, chains, attempts, sampling, seed)
    return chain_grades(problems, grown, grader)


def reference_prompts(problems: Sequence, hide_question: bool = False) -> list[str]:
    """Revision prompts with each problem's reference solution as the one earlier attempt,
    with the question or (``hide_question``) without it."""
    return [revision_prompt(p, [p.solution], hide_question) for p in problems]


def pass_after_reference(
    lm,
    problems: Sequence,
    samples: int,
    grader: Grader,
    seed: int,
    hide_question: bool = False,
    temperature: float = task.SAMPLING_TEMPERATURE,
):
    """pass@1 with the reference solution as the one earlier attempt: how well the model
    reads its context. A model that copies a right attempt scores near 1; one that ignores
    it scores its first attempt's pass@1. With ``hide_question`` the question is left out,
    so only a model that can copy an attempt scores above 0."""
    prompts = reference_prompts(problems, hide_question)
    rows = sample_solutions(lm, prompts, samples, trial_sampling(temperature), seed)
    grades = [
        [grader.correct(s.text, p.answer) for s in row]
        for p, row in zip(problems, rows, strict=True)
    ]
    return float(np.mean(grades))


def verbatim_rate(problems: Sequence, rows: Sequence) -> float:
    """The fraction of samples (``rows[question]`` records) that are their question's
    reference solution word for word."""
    same = [
        [sample.text.strip() == problem.solution.strip() for sample in row]
        for problem, row in zip(problems, rows, strict=True)
    ]
    return float(np.mean(same))


def greedy_verbatim(lm, problems: Sequence) -> dict:
    """How often the greedy solution is the reference word for word: unshown (a first
    attempt), after the reference, and after it with the question hidden."""
    greedy = trial_sampling(temperature=0.0)
    prompts = {
        "verbatim_first_attempt": [revision_prompt(p, []) for p in problems],
        "verbatim_after_reference": reference_prompts(problems),
        "verbatim_after_reference_question_hidden": reference_prompts(problems, True),
    }
    return {
        name: verbatim_rate(problems, sample_solutions(lm, texts, 1, greedy, seed=0))
        for name, texts in prompts.items()
    }


def summary(grades: np.ndarray) -> dict:
    """pass@1 by attempt, P(right | the attempt before right / wrong) (None: no such), and
    each question's last attempt's pass@1 less its first's (over its chains)."""
    before, after = grades[:, :, :-1].ravel(), grades[:, :, 1:].ravel()

    def rate(mask):
        return float(after[mask].mean()) if mask.any() else None

    return {
        "pass@1_by_attempt": grades.mean(axis=(0, 1)).tolist(),
        "right_after_right": rate(before),
        "right_after_wrong": rate(~before),
        "last_minus_first_by_question": (grades[:, :, -1].mean(1) - grades[:, :, 0].mean(1))
        .astype(float)
        .tolist(),
    }


def paired_difference(differences: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error) of per-question differences: a chain's last attempt against
    its first on the same questions, so that the questions' own difficulty cancels out."""
    values = np.asarray(differences, float)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="revision model folders (HF layout)")
    parser.add_argument("--levels", default="1,3,5", help="comma-separated levels")
    parser.add_argument("--questions", type=int, default=20, help="questions a level")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--attempts", type=int, default=5)
    parser.add_argument(
        "--temperature",
        type=float,
        default=task.SAMPLING_TEMPERATURE,
        help="sampling temperature of the chains and the reference figures (default: the world's)",
    )
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]
    bad = [level for level in levels if level not in task.LEVELS]
    if bad:
        parser.error(f"no level {bad}; levels are {list(task.LEVELS)}")
    if args.temperature <= 0:
        parser.error("--temperature must be positive (the greedy figures are measured anyway)")
    if args.attempts < 2:
        parser.error("--attempts must be at least 2 to compare attempts")

    from ttc_jax.lm import load_lm

    grader = Grader()
    results = {}
    for path in args.models:
        lm = load_lm(path)
        by_level = {}
        for level in levels:
            problems = trial_questions(level, args.questions)
            seed = 99 + level
            grades = attempt_grades(
                lm, problems, args.chains, args.attempts, grader, seed, args.temperature
            )
            by_level[level] = summary(grades)
            for name, hide in (("", False), ("_question_hidden", True)):
                by_level[level][f"pass@1_after_reference{name}"] = pass_after_reference(
                    lm, problems, args.chains, grader, seed, hide, args.temperature
                )
            by_level[level].update(greedy_verbatim(lm, problems))
            print(f"{path} level {level}: {_format(by_level[level])}", flush=True)
        mean = np.mean([s["pass@1_by_attempt"] for s in by_level.values()], axis=0)
        # Every level has as many questions, so the pooled mean is the mean of the levels'.
        gain, error = paired_difference(
            [d for s in by_level.values() for d in s["last_minus_first_by_question"]]
        )
        print(
            f"{path} mean pass@1 by attempt {np.round(mean, 3).tolist()}, "
            f"last - first {gain:+.3f} (standard error {error:.3f})",
            flush=True,
        )
        results[path] = by_level
    return results


def _format(figures: dict) -> str:
    def show(value):
        return "n/a" if value is None else f"{value:.2f}"

    passes = " ".join(f"{p:.2f}" for p in figures["pass@1_by_attempt"])
    return (
        f"pass@1 by attempt {passes}; right after right {show(figures['right_after_right'])}, "
        f"after wrong {show(figures['right_after_wrong'])}; "
        f"after the reference {figures['pass@1_after_reference']:.2f}, "
        f"with the question hidden {figures['pass@1_after_reference_question_hidden']:.2f}; "
        f"greedy verbatim unshown {figures['verbatim_first_attempt']:.2f}, "
        f"after the reference {figures['verbatim_after_reference']:.2f}, "
        f"question hidden {figures['verbatim_after_reference_question_hidden']:.2f}"
    )


if __name__ == "__main__":
    main()
