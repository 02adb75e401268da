"""Revision training examples: which answers become targets and which their context."""

import numpy as np
import pytest

from ttc_jax.training.revisions import (
    MAX_CONTEXT_ATTEMPTS,
    edit_distance,
    revision_examples,
)


@pytest.mark.parametrize(
    "a, b, distance",
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "abc", 0), ("flaw", "lawn", 2)],
)
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance


def _answers():
    # Distinct texts: correct ones start with "ok", incorrect ones with "no".
    correct = [f"ok {i}" for i in range(6)]
    wrong = ["no 1", "no 22", "no 333", "no 4444", "no 55555"]
    answers = [*correct, *wrong]
    return answers, [a.startswith("ok") for a in answers]


def _graded():
    return dict(zip(*_answers(), strict=True))


def test_incorrect_context_is_wrong_answers_closest_last():
    answers, correct = _answers()
    examples = revision_examples(answers, correct, np.random.default_rng(0))
    assert sorted(e.target for e in examples) == sorted(a for a, ok in _graded().items() if ok)
    with_context = [e for e in examples if e.attempts]
    assert with_context
    for example in examples:
        assert len(example.attempts) <= MAX_CONTEXT_ATTEMPTS
        assert all(a.startswith("no") for a in example.attempts)
        assert len(set(example.attempts)) == len(example.attempts)
        if example.attempts:
            distances = [edit_distance(example.target, a) for a in answers if a.startswith("no")]
            assert edit_distance(example.target, example.attempts[-1]) == min(distances)


def test_any_context_mixes_grades_and_never_shows_the_target():
    answers, correct = _answers()
    rng = np.random.default_rng(0)
    examples = [
        e for _ in range(50) for e in revision_examples(answers, correct, rng, context="any")
    ]
    graded = _graded()
    context = [a for e in examples for a in e.attempts]
    assert any(graded[a] for a in context) and not all(graded[a] for a in context)
    counts = {len(e.attempts) for e in examples}
    assert counts == set(range(MAX_CONTEXT_ATTEMPTS + 1))
    for example in examples:
        assert graded[example.target]
        assert example.target not in example.attempts
        assert len(set(example.attempts)) == len(example.attempts)
    # Random order: the last attempt is not always the closest incorrect one.
    last_is_closest = [
        e.attempts[-1]
        == min((a for a in answers if not graded[a]), key=lambda a: edit_distance(e.target, a))
        for e in examples
        if e.attempts
    ]
    assert not all(last_is_closest)


@pytest.mark.parametrize("context", ["incorrect", "any"])
def test_reference_targets_take_fresh_context_each_time(context):
    answers, correct = _answers()
    graded = _graded()
    reference = "ok reference"
    rng = np.random.default_rng(2)
    examples = revision_examples(answers, correct, rng, 16, context, reference)
    assert len(examples) == 16
    assert all(e.target == reference for e in examples)
    contexts = {tuple(e.attempts) for e in examples}
    assert len(contexts) > 4
    shown = [a for e in examples for a in e.attempts]
    if context == "incorrect":
        assert not any(graded[a] for a in shown)
        wrong = [a for a in answers if not graded[a]]
        closest = min(edit_distance(reference, a) for a in wrong)
        assert all(
            edit_distance(reference, e.attempts[-1]) == closest for e in examples if e.attempts
        )
    else:
        assert any(graded[a] for a in shown) and not all(graded[a] for a in shown)
    # Without a limit, one example per answer.
    assert len(revision_examples(answers, correct, rng, None, context, reference)) == len(answers)


REFERENCE = "ok reference"


def _kept_examples(keep: str, seed: int = 3):
    """200 examples with any context and the reference as target, kept as ``keep`` says."""
    answers, correct = _answers()
    rng = np.random.default_rng(seed)
    return revision_examples(answers, correct, rng, 200, "any", REFERENCE, keep=keep)


def test_keeping_right_copies_a_right_last_attempt_and_rewrites_a_wrong_one():
    answers, correct = _answers()
    graded = _graded()
    examples = _kept_examples("right")
    after_right = [e for e in examples if e.attempts and graded[e.attempts[-1]]]
    others = [e for e in examples if not e.attempts or not graded[e.attempts[-1]]]
    assert after_right and others
    assert all(e.target == e.attempts[-1] for e in after_right)
    assert all(e.target == REFERENCE for e in others)
    # Only the last attempt decides: a right attempt earlier in the context is not copied.
    assert any(any(graded[a] for a in e.attempts[:-1]) for e in others)
    # Without a reference the fallback target is a right sample, never one in the context.
    rng = np.random.default_rng(4)
    for example in revision_examples(answers, correct, rng, None, "any", keep="right"):
        assert graded[example.target]
        if not example.attempts or not graded[example.attempts[-1]]:
            assert example.target not in example.attempts


def test_keeping_any_copies_every_last_attempt_right_or_wrong():
    graded = _graded()
    examples = _kept_examples("any")
    with_context = [e for e in examples if e.attempts]
    assert any(not graded[e.attempts[-1]] for e in with_context)
    assert all(e.target == e.attempts[-1] for e in with_context)
    assert all(e.target == REFERENCE for e in examples if not e.attempts)
    # The same draws as without keeping: only the targets differ.
    assert [e.attempts for e in _kept_examples("none")] == [e.attempts for e in examples]


def test_at_most_max_examples_per_question():
    answers, correct = _answers()
    for context in ("incorrect", "any"):
        examples = revision_examples(answers, correct, np.random.default_rng(1), 2, context)
        assert len(examples) == 2
        assert len({e.target for e in examples}) == 2


def test_bad_arguments_are_named():
    answers, correct = _answers()
    with pytest.raises(ValueError, match="context must be one of"):
        revision_examples(answers, correct, np.random.default_rng(0), context="wrong")
    with pytest.raises(ValueError, match="keep='right' needs context='any'"):
        revision_examples(answers, correct, np.random.default_rng(0), keep="right")
    with pytest.raises(ValueError, match="keep must be one of"):
        revision_examples(answers, correct, np.random.default_rng(0), "any", keep="all")
    with pytest.raises(ValueError, match="answers but"):
        revision_examples(answers, correct[:-1], np.random.default_rng(0))


def test_revision_trial_summary_counts_attempts_after_right_and_wrong():
    from ttc_jax.embedded.revision_trial import summary

    # Two questions, one chain each, three attempts: right, wrong, right / wrong, wrong, right.
    grades = np.array([[[True, False, True]], [[False, False, True]]])
    figures = summary(grades)
    assert figures["pass@1_by_attempt"] == [0.5, 0.0, 1.0]
    assert figures["right_after_right"] == 0.0  # the one right attempt with a successor
    assert figures["right_after_wrong"] == 2 / 3
    assert figures["last_minus_first_by_question"] == [0.0, 1.0]
    assert summary(np.zeros((1, 1, 2), bool))["right_after_right"] is None


def test_paired_difference_is_the_mean_and_its_standard_error():
    from ttc_jax.embedded.revision_trial import paired_difference

    mean, error = paired_difference([0.0, 0.5, 1.0, 0.5])
    assert mean == 0.5
    assert error == pytest.approx(np.std([0.0, 0.5, 1.0, 0.5], ddof=1) / 2)
    assert np.isnan(paired_difference([0.25])[1])


def test_reference_prompts_show_the_reference_with_or_without_the_question():
    from ttc_jax.embedded import task
    from ttc_jax.embedded.revision_trial import reference_prompts, trial_questions

    [problem] = trial_questions(3, 1)
    [shown] = reference_prompts([problem])
    [hidden] = reference_prompts([problem], hide_question=True)
    assert problem.solution in shown and problem.problem in shown
    assert problem.solution in hidden and problem.problem not in hidden
    assert hidden.endswith(task.PROMPT_CONFIG.solution_header + "\n")


def test_verbatim_rate_counts_samples_that_are_the_reference_word_for_word():
    from types import SimpleNamespace

    from ttc_jax.embedded.revision_trial import trial_questions, verbatim_rate

    first, second = trial_questions(2, 2)
    altered = first.solution.replace("\\boxed{", "\\boxed{1")
    assert altered != first.solution
    rows = [
        [SimpleNamespace(text=first.solution + "\n"), SimpleNamespace(text=altered)],
        [SimpleNamespace(text=first.solution), SimpleNamespace(text=" " + second.solution)],
    ]
    # The first question's reference, then a slip; another question's, then its own.
    assert verbatim_rate([first, second], rows) == 0.5


def test_revision_trial_runs_on_the_shipped_revision_model(capsys):
    from ttc_jax import embedded
    from ttc_jax.embedded.revision_trial import main

    path = str(embedded.checkpoint_path("revision"))
    args = [path, "--levels", "2", "--questions", "2", "--chains", "2", "--attempts", "2"]
    [level] = main(args)[path].values()
    assert len(level["pass@1_by_attempt"]) == 2
    assert all(0 <= p <= 1 for p in level["pass@1_by_attempt"])
    assert 0 <= level["pass@1_after_reference"] <= 1
    assert 0 <= level["pass@1_after_reference_question_hidden"] <= 1
    for name in ("first_attempt", "after_reference", "after_reference_question_hidden"):
        assert 0 <= level[f"verbatim_{name}"] <= 1
    out = capsys.readouterr().out
    assert "last - first" in out and "standard error" in out
    assert "after the reference" in out and "question hidden" in out
    assert "greedy verbatim unshown" in out
    with pytest.raises(SystemExit):
        main([path, "--levels", "9"])
