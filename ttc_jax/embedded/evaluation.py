"""The embedded world's measurements, on fresh test questions, through the shipped folders.

Every model is read back with `ttc_jax.load_lm` / `ttc_jax.load_prm` from the exported
checkpoints, sampled with `ttc_jax.generate` at the world's temperature, graded with
`ttc_jax.math`, and answers are selected with `ttc_jax.search.select`. Per level:

* both policies: pass@1 (mean over samples) and pass@N, and greedy accuracy (one solution
  decoded at temperature 0);
* the PRM: AUROC of the last step's score, correct against incorrect samples, beside the
  free baseline of the policy's summed log-probability (and, for a ``ttc_likelihood`` PRM,
  beside the AUROC of the likelihood it reads, alone); best-of-N weighted by the PRM, naive
  best-of-N and majority voting;
* revisions: pass@1 of each attempt of sequential chains (attempt 0: no history), and the
  revision verifier's AUROC on those attempts.

`goals` checks the figures against the world's targets. Questions come from the test split
(`make_problems`) with a seed fixed in the config, the same for every model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time

import numpy as np

from ttc_jax import distributed
from ttc_jax.embedded import task
from ttc_jax.embedded.fine_tuning import sampling_settings
from ttc_jax.embedded.revision_stages import chain_grades, revision_chains
from ttc_jax.embedded.verifier_stages import prm_kind
from ttc_jax.embedded.workspace import Workspace, machine_description, write_atomically
from ttc_jax.lm import LanguageModel, load_lm
from ttc_jax.math.grading import extract_answer
from ttc_jax.math.prompts import split_steps
from ttc_jax.prm import PRM, load_prm
from ttc_jax.search.aggregation import candidate_score, select
from ttc_jax.training.rollouts import Grader, sample_solutions

log = logging.getLogger(__name__)


def auroc(scores, positive) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties half.
    NaN when either class is empty."""
    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if not num_pos or not num_neg:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties (1-based).
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2
    return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def solution_steps(texts: list[list[str]]) -> list[list[list[str]]]:
    """[question][sample] texts -> their steps (a text without steps is one empty step, as
    the search scores it)."""
    delimiter = task.PROMPT_CONFIG.step_delimiter
    return [[split_steps(text, delimiter) or [""] for text in row] for row in texts]


def final_step_scores(prm: PRM, questions: list[str], texts: list[list[str]]) -> np.ndarray:
    """[question, sample] -> the PRM's last-step score."""
    scores = prm.score_batch(questions, solution_steps(texts))
    return np.array([[candidate_score(c, "last") for c in row] for row in scores])


def final_step_likelihoods(prm: PRM, questions: list[str], texts: list[list[str]]) -> np.ndarray:
    """[question, sample] -> the log-likelihood a ``ttc_likelihood`` PRM's head reads at the
    last step (its backbone's, of the whole solution)."""
    features = prm.step_features(questions, solution_steps(texts))
    return np.array([[candidate[-1, -1] for candidate in row] for row in features])


def policy_figures(lm: LanguageModel, problems, num_samples: int, settings, seed, grader):
    """Samples, their grades and pass@1 / pass@N."""
    prompts = [task.PROMPT.text(p) for p in problems]
    samples = sample_solutions(lm, prompts, num_samples, settings, seed)
    correct = np.array(
        [
            [grader.correct(s.text, p.answer) for s in row]
            for p, row in zip(problems, samples, strict=True)
        ]
    )
    figures = {"pass@1": float(correct.mean()), f"pass@{num_samples}": float(correct.any(1).mean())}
    return samples, correct, figures


def greedy_accuracy(lm: LanguageModel, problems, settings, seed, grader) -> float:
    """The share of ``problems`` whose greedy solution (temperature 0) is right."""
    greedy = dataclasses.replace(settings, temperature=0.0)
    return policy_figures(lm, problems, 1, greedy, seed, grader)[2]["pass@1"]


def selection_accuracy(problems, samples, scores, method: str, grader: Grader) -> float:
    hits = []
    for q, (problem, row) in enumerate(zip(problems, samples, strict=True)):
        answers = [extract_answer(s.text) for s in row]
        finished = [s.finish_reason == "eos" for s in row]
        chosen = select(answers, finished, None if scores is None else list(scores[q]), method)
        hits.append(chosen is not None and grader.correct(row[chosen].text, problem.answer))
    return float(np.mean(hits))


def evaluate_level(models: dict, level: int, section, settings, grader: Grader) -> dict:
    n = section.samples
    problems = task.make_problems(section.questions_per_level, level, section.seed)
    questions = [p.problem for p in problems]
    seed = section.seed * 10 + level
    with _logged(level, "policy samples"):
        samples, correct, policy = policy_figures(
            models["policy"], problems, n, settings, seed, grader
        )
    with _logged(level, "14x policy samples"):
        _, _, bigger = policy_figures(models["policy_14x"], problems, n, settings, seed, grader)
    with _logged(level, "greedy solutions"):
        policy["greedy"] = greedy_accuracy(models["policy"], problems, settings, seed, grader)
        bigger["greedy"] = greedy_accuracy(models["policy_14x"], problems, settings, seed, grader)
    texts = [[s.text for s in row] for row in samples]
    with _logged(level, "PRM scores"):
        scores = final_step_scores(models["prm"], questions, texts)
        extra = {}
        if models["prm"].kind == "ttc_likelihood":
            likelihood = final_step_likelihoods(models["prm"], questions, texts)
            extra["prm_likelihood_auroc"] = auroc(likelihood.ravel(), correct.ravel())
    logprobs = np.array([[s.logprob for s in row] for row in samples])
    policy[f"majority@{n}"] = selection_accuracy(problems, samples, None, "majority", grader)
    policy[f"prm_weighted@{n}"] = selection_accuracy(problems, samples, scores, "weighted", grader)
    policy[f"prm_best_of_n@{n}"] = selection_accuracy(
        problems, samples, scores, "best_of_n", grader
    )
    with _logged(level, "revision chains"):
        revision = revision_figures(models, problems, section, settings, seed, grader)
    return {
        "policy": policy,
        "policy_14x": bigger,
        "prm_auroc": auroc(scores.ravel(), correct.ravel()),
        "logprob_auroc": auroc(logprobs.ravel(), correct.ravel()),
        **extra,
        "revision": revision,
    }


@contextlib.contextmanager
def _logged(level: int, part: str):
    """Logs a level's part when it ends, with its time: a level of the full evaluation takes
    minutes, and its figures are logged only at its end."""
    started = time.perf_counter()
    yield
    log.info("evaluate: level %d: %s in %.0f s", level, part, time.perf_counter() - started)


def revision_figures(models: dict, problems, section, settings, seed, grader) -> dict:
    """pass@1 of every attempt of the revision chains, and the verifier's AUROC on them."""
    chains = revision_chains(
        models["revision"],
        problems,
        section.revision_chains,
        section.revision_length,
        settings,
        seed,
    )
    correct = chain_grades(problems, chains, grader)  # [question, chain, attempt]
    attempts = [attempt for row in chains for chain in row for attempt in chain]
    verifier_scores = final_step_scores(
        models["revision_verifier"],
        [prompt for prompt, _ in attempts],
        [[sample.text] for _, sample in attempts],
    )
    return {
        "pass@1_by_attempt": correct.mean(axis=(0, 1)).tolist(),
        "verifier_auroc": auroc(verifier_scores.ravel(), correct.ravel()),
    }


def goals(levels: dict, n: int) -> dict:
    """The world's targets that the measured levels bear on: each with the figures it
    compares and whether it is met."""

    def pick(names, figure):
        return {name: figure(levels[name]) for name in names}

    def pass_at_1(level):
        return level["policy"]["pass@1"]

    checks = {
        "policy level 1 pass@1 >= 0.7": (("1",), pass_at_1, lambda v: v["1"] >= 0.7),
        "policy level 5 pass@1 <= 0.3": (("5",), pass_at_1, lambda v: v["5"] <= 0.3),
        f"pass@{n} >= 2 x pass@1 on levels 3-5": (
            ("3", "4", "5"),
            lambda level: level["policy"][f"pass@{n}"] / max(pass_at_1(level), 1e-9),
            lambda v: all(ratio >= 2 for ratio in v.values()),
        ),
        "policy_14x pass@1 > policy pass@1 on every level": (
            ("1", "2", "3", "4", "5"),
            lambda level: [pass_at_1(level), level["policy_14x"]["pass@1"]],
            lambda v: all(big > small for small, big in v.values()),
        ),
        "PRM AUROC >= 0.8 on each of levels 2-5": (
            ("2", "3", "4", "5"),
            lambda level: level["prm_auroc"],
            lambda v: all(a >= 0.8 for a in v.values()),
        ),
        "PRM AUROC > log-prob AUROC on levels 2-5": (
            ("2", "3", "4", "5"),
            lambda level: [level["logprob_auroc"], level["prm_auroc"]],
            lambda v: all(prm > logprob for logprob, prm in v.values()),
        ),
        f"PRM-weighted best-of-{n} > majority-of-{n} on levels 3-5": (
            ("3", "4", "5"),
            lambda level: [level["policy"][f"majority@{n}"], level["policy"][f"prm_weighted@{n}"]],
            lambda v: all(weighted > majority for majority, weighted in v.values()),
        ),
        "policy_14x greedy accuracy >= 0.95 on level 1": (
            ("1",),
            lambda level: level["policy_14x"].get("greedy", float("nan")),
            lambda v: v["1"] >= 0.95,
        ),
        "policy_14x greedy accuracy <= 0.7 on level 5": (
            ("5",),
            lambda level: level["policy_14x"].get("greedy", float("nan")),
            lambda v: v["5"] <= 0.7,
        ),
        "revision pass@1: 4th revision (attempt 5) > first attempt, over all levels": (
            tuple(levels),
            lambda level: level["revision"]["pass@1_by_attempt"],
            lambda v: _fourth_revision_gain(v) > 0,
        ),
    }
    report = {}
    for name, (needed, figure, check) in checks.items():
        if all(level in levels for level in needed):
            values = pick(needed, figure)
            report[name] = {"met": bool(check(values)), "measured": values}
    return report


def _fourth_revision_gain(by_level: dict) -> float:
    """Mean pass@1 of attempt 5 minus that of attempt 1 (-inf without five attempts)."""
    attempts = np.mean(list(by_level.values()), axis=0)
    return float(attempts[4] - attempts[0]) if len(attempts) > 4 else float("-inf")


def stage_evaluate(ws: Workspace) -> None:
    """Measures the exported checkpoints; writes ``evaluation.json`` beside them."""
    section = ws.config.evaluate
    folder = ws.export_dir
    started = time.perf_counter()
    models = {
        "policy": load_lm(folder / "policy"),
        "policy_14x": load_lm(folder / "policy_14x"),
        "prm": load_prm(folder / "prm", prm_kind(ws.config)),
        "revision": load_lm(folder / "revision"),
        "revision_verifier": load_prm(folder / "revision_verifier", "ttc_value"),
    }
    grader = Grader()
    settings = sampling_settings(ws, prompts_per_call=64)
    levels = {}
    # With several processes the levels are dealt over them and their figures gathered.
    for level, figures in distributed.deal(
        section.levels, lambda level: evaluate_level(models, level, section, settings, grader)
    ):
        levels[str(level)] = figures
        log.info("evaluate: level %d %s", level, json.dumps(levels[str(level)]))
    report = {
        "command": ws.command,
        "machine": machine_description(),
        "seconds": round(time.perf_counter() - started, 1),
        "temperature": task.SAMPLING_TEMPERATURE,
        "settings": section.to_dict(),
        "levels": levels,
        "goals": goals(levels, section.samples),
    }
    text = json.dumps(report, indent=2) + "\n"
    if not distributed.is_primary():
        return
    write_atomically(folder / "evaluation.json", text)
    write_atomically(ws.stage_dir("evaluate") / "report.json", text)
    for goal, result in report["goals"].items():
        log.info("evaluate: %s: %s", goal, "met" if result["met"] else "MISSED")
