"""The embedded world's problem generator and tokenizer."""

import re

import numpy as np
import pytest

from ttc_jax.embedded import task
from ttc_jax.embedded.tokenizer import BOS, EOS, fixed_texts, save_tokenizer
from ttc_jax.math import extract_answer, is_equiv
from ttc_jax.math.prompts import split_steps

OPERATION = re.compile(r"([a-j])\) ([xy])=\2([+*-])([xy0-9])(?:\+([xy0-9]))?")


def value_of(operand: str, values: dict[str, int]) -> int:
    return values[operand] if operand in values else int(operand)


def apply(values, target, symbol, operand, extra) -> int:
    left, right = values[target], value_of(operand, values)
    result = {"+": left + right, "-": left - right, "*": left * right}[symbol]
    return (result + (value_of(extra, values) if extra else 0)) % 10


def solve_independently(question: str) -> int:
    """The answer recomputed from the question text alone, without the generator's code."""
    x, y = map(int, re.match(r"Let x = (\d) and y = (\d)\.", question).groups())
    values = {"x": x, "y": y}
    for _, target, *operation in OPERATION.findall(question):
        values[target] = apply(values, target, *operation)
    return 10 * values["x"] + values["y"]


@pytest.mark.parametrize("level", task.LEVELS)
def test_problems_of_a_level(level):
    problems = task.make_problems(40, level, seed=1)
    spec = task.LEVEL_SPECS[level]
    assert len({p.problem for p in problems}) == 40
    for problem in problems:
        assert problem.level == level and problem.subject == task.SUBJECT
        steps = split_steps(problem.solution, "\n")
        assert len(steps) == spec.num_steps + 1
        assert steps[-1] == f"The answer is \\boxed{{{problem.answer}}}."
        assert len(OPERATION.findall(problem.problem)) == spec.num_steps
        assert int(problem.answer) == solve_independently(problem.problem)
        assert is_equiv(extract_answer(problem.solution), problem.answer)


def test_every_step_line_shows_its_operands_and_result():
    for problem in task.make_problems(20, 5, seed=3):
        values = dict(zip("xy", map(int, re.findall(r"= (\d)", problem.problem)[:2]), strict=True))
        operations = OPERATION.findall(problem.problem)
        lines = split_steps(problem.solution)[:-1]
        for (label, target, symbol, operand, extra), line in zip(operations, lines, strict=True):
            shown = f"{values[target]}{symbol}{value_of(operand, values)}"
            shown += f"+{value_of(extra, values)}" if extra else ""
            values[target] = apply(values, target, symbol, operand, extra)
            assert line.startswith(f"{label}) {target}=")
            assert line.endswith(f"={shown}={values[target]}"), line


def test_levels_grow_in_steps():
    steps = [task.LEVEL_SPECS[level].num_steps for level in task.LEVELS]
    assert steps == sorted(steps) and steps[0] < steps[-1]


def test_same_seed_same_problems_other_seed_others():
    first = task.make_problems(10, 3, seed=5)
    assert first == task.make_problems(10, 3, seed=5)
    assert not {p.problem for p in first} & {p.problem for p in task.make_problems(10, 3, 6)}


def test_fresh_problems_are_never_training_problems():
    test = task.make_problems(200, 1, seed=0)
    assert all(task.split_of(p.problem) == "test" for p in test)
    train = task.problems_of_split(2000, 1, seed=0, split="train")
    assert all(task.split_of(p.problem) == "train" for p in train)
    assert not {p.problem for p in test} & {p.problem for p in train}


def test_splits_take_their_share_of_problems():
    rng = np.random.default_rng(0)
    splits = [task.split_of(task.draw_problem(rng, 4).problem) for _ in range(4000)]
    assert abs(splits.count("test") / 4000 - 1 / task.HASH_BUCKETS) < 0.02


def test_bad_requests_fail_clearly():
    with pytest.raises(ValueError, match="level must be one of"):
        task.make_problems(1, 6)
    with pytest.raises(ValueError, match="level 1 has at most 22500 distinct problems"):
        task.make_problems(100_000, 1)


def test_a_split_that_runs_out_says_how_far_it_got(monkeypatch):
    # No patience: the first draw of another split, or a repeat, counts as the split run out.
    monkeypatch.setattr(task, "DRAW_PATIENCE", 0)
    with pytest.raises(ValueError, match=r"level 1's test split ran out of distinct problems at"):
        task.make_problems(50, 1, seed=0)


def test_question_counts_bound_what_the_draws_find():
    # Level 1: 10 x 10 starting values, and 5 + 5 + 3 + 1 + 1 operations for each of 2 steps.
    assert task.question_count(1) == 100 * 15**2
    assert task.question_count(5) == 100 * (5 + 5 + 3 + 1 + 1 + 1 + 3) ** 6
    rng = np.random.default_rng(0)
    drawn = {task.draw_problem(rng, 1).problem for _ in range(5000)}
    assert 0.15 * task.question_count(1) < len(drawn) <= task.question_count(1)


def test_tokenizer_round_trips_through_transformers(tmp_path):
    tokenizer = save_tokenizer(tmp_path)
    assert (tmp_path / "tokenizer.json").exists()
    [problem] = task.make_problems(1, 5, seed=0)
    text = task.PROMPT.text(problem) + problem.solution
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids(BOS)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.eos_token == EOS
    # Fixed texts and digits are one token each; any other text still round-trips.
    for piece in [*fixed_texts(), "7", "\n"]:
        assert len(tokenizer(piece, add_special_tokens=False)["input_ids"]) == 1, piece
    other = "Any text: {braces}, $math$ & 123!"
    assert tokenizer.decode(tokenizer(other, add_special_tokens=False)["input_ids"]) == other


@pytest.mark.parametrize("name", ["majority", "revisions"])
def test_search_prompts_are_the_prompts_the_models_were_trained_on(name):
    from ttc_jax import embedded
    from ttc_jax.search.prompting import build_prompter

    config = embedded.search_config(name)
    prompter = build_prompter(config.prompt, config.step_delimiter)
    [problem] = task.make_problems(1, 3, seed=5)
    attempts = [problem.solution, problem.solution.replace("=", " = ", 1)]
    assert prompter.text(problem) == task.PROMPT.text(problem)
    assert prompter.revision_text(problem, attempts) == task.PROMPT.revision_text(problem, attempts)


@pytest.mark.parametrize("level", task.LEVELS)
def test_questions_parse_back_to_their_registers_and_operations(level):
    for problem in task.make_problems(30, level, seed=4):
        start, operations = task.parse_question(problem.problem)
        assert task.question_text(start, operations) == problem.problem
        assert task.run(start, operations, [False] * len(operations))[1] == int(problem.answer)
        # A reference solution is right and in the task's wording: it is its own mending.
        assert task.solution_worded_like(problem.problem, problem.solution) == problem.solution


def test_a_wrong_attempt_is_mended_from_its_first_slip_in_its_own_wording():
    question = (
        "Let x = 4 and y = 0. Working modulo 10, apply a) x=x+4, b) y=y*3, c) x=x+y+y, "
        "d) y=y+x+x. What is 10x+y?"
    )
    # A slip in b) (0*3=3) carried on; the attempt restates a) and c) but not d).
    attempt = "\n".join(
        [
            "a) x=x+4=4+4=8",
            "b) y=0*3=3",
            "c) x=x+y+y=8+3+3=4",
            "d) y=3+4+4=1",
            "The answer is \\boxed{41}.",
        ]
    )
    mended = task.solution_worded_like(question, attempt)
    assert mended == "\n".join(
        [
            "a) x=x+4=4+4=8",
            "b) y=0*3=0",
            "c) x=x+y+y=8+0+0=8",
            "d) y=0+8+8=6",
            "The answer is \\boxed{86}.",
        ]
    )
    # An attempt with no step lines at all is answered in the plain wording.
    plain = task.solution_worded_like(question, "The answer is \\boxed{7}.")
    assert plain.splitlines()[0] == "a) x=4+4=8"


@pytest.mark.parametrize(
    "question",
    [
        "What is 2+2?",
        "Let x = 1 and y = 2. Working modulo 10, apply a) x=x/3. What is 10x+y?",
        "Let x = 1 and y = 2. Working modulo 10, apply a) z=z+3. What is 10x+y?",
    ],
)
def test_a_question_not_of_the_task_is_named(question):
    with pytest.raises(ValueError, match=r"not (a question )?of this task"):
        task.parse_question(question)
