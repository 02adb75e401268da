"""The embedded world's problem generator and tokenizer.

The tests up to the harder world's are version 1's, whatever version is shipped; those after
it draw from version 2 (`task.HARDER_LEVEL_SPECS`)."""

import json
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


@pytest.fixture(autouse=True)
def task_version_1():
    """Problems drawn without a version named are version 1's (the shipped models' task may
    be another)."""
    with task.using_version(1):
        yield


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


# -- task version 2, the harder world ------------------------------------------------------

COMPOUND = re.compile(r"([a-j])\) ([xy])=\(\(\2\+([xy0-9])\)\*([379])\+([xy0-9])\)\*([379])")
ANY_OPERATION = re.compile(
    r"([a-j])\) ([xy])=(?:\(\(\2\+([xy0-9])\)\*([379])\+([xy0-9])\)\*([379])"
    r"|\2([+*-])([xy0-9])(?:\+([xy0-9]))?)(?:,|\.)"
)


def solve_version_2(question: str) -> int:
    """A version-2 answer recomputed from the question text alone."""
    x, y = map(int, re.match(r"Let x = (\d) and y = (\d)\.", question).groups())
    values = {"x": x, "y": y}
    for _, target, addend, factor, offset, outer, *simple in ANY_OPERATION.findall(question):
        if addend:
            inner = (values[target] + value_of(addend, values)) * int(factor)
            values[target] = (inner + value_of(offset, values)) * int(outer) % 10
        else:
            values[target] = apply(values, target, *simple)
    return 10 * values["x"] + values["y"]


@pytest.mark.parametrize("level", task.LEVELS)
def test_harder_levels_have_compound_steps_from_level_2_on(level):
    spec = task.HARDER_LEVEL_SPECS[level]
    assert spec.num_steps == task.LEVEL_SPECS[level].num_steps
    assert spec.compound_steps == level - 1
    problems = task.make_problems(40, level, seed=1, version=2)
    assert len({p.problem for p in problems}) == 40
    for problem in problems:
        assert problem.id.startswith(f"embedded-v2/level{level}/")
        assert task.split_of(problem.problem) == "test"
        assert len(COMPOUND.findall(problem.problem)) == spec.compound_steps
        assert len(ANY_OPERATION.findall(problem.problem)) == spec.num_steps
        assert len(split_steps(problem.solution, "\n")) == spec.num_steps + 1
        assert int(problem.answer) == solve_version_2(problem.problem)
        assert is_equiv(extract_answer(problem.solution), problem.answer)


@pytest.mark.parametrize("level", task.LEVELS)
def test_version_3_has_fewer_compound_steps(level):
    spec = task.HARDER_LEVEL_SPECS_3[level]
    assert spec.num_steps == task.LEVEL_SPECS[level].num_steps
    assert spec.compound_steps == (0, 0, 1, 1, 2)[level - 1]
    for problem in task.make_problems(20, level, seed=1, version=3):
        assert problem.id.startswith(f"embedded-v3/level{level}/")
        assert len(COMPOUND.findall(problem.problem)) == spec.compound_steps
        assert int(problem.answer) == solve_version_2(problem.problem)
        assert task.solution_worded_like(problem.problem, problem.solution) == problem.solution


THREE_OPERATION_COMPOUND = re.compile(r"([a-j])\) ([xy])=\(\2\+([xy0-9])\)\*([379])\+([xy0-9])[,.]")


def solve_version_4(question: str) -> int:
    """A version-4 answer recomputed from the question text alone."""
    x, y = map(int, re.match(r"Let x = (\d) and y = (\d)\.", question).groups())
    values = {"x": x, "y": y}
    operations = sorted(
        [(m.start(), "compound", m.groups()) for m in THREE_OPERATION_COMPOUND.finditer(question)]
        + [(m.start(), "simple", m.groups()) for m in ANY_OPERATION.finditer(question)]
    )
    for _, form, groups in operations:
        if form == "compound":
            _, target, addend, factor, offset = groups
            inner = (values[target] + value_of(addend, values)) * int(factor)
            values[target] = (inner + value_of(offset, values)) % 10
        else:
            _, target, *_, symbol, operand, more = groups
            values[target] = apply(values, target, symbol, operand, more)
    return 10 * values["x"] + values["y"]


@pytest.mark.parametrize("level", task.LEVELS)
@pytest.mark.parametrize(
    "version, places, offsets",
    [(4, (0, 0, 1, 2, 3), {"x", "y", *"123456789"}), (5, (0, 0, 1, 1, 2), {"1", "2", "3"})],
)
def test_versions_4_and_5_have_three_operation_compound_steps(level, version, places, offsets):
    spec = task.TASK_VERSIONS[version][level]
    assert spec.num_steps == task.LEVEL_SPECS[level].num_steps
    assert spec.compound_steps == places[level - 1]
    seen = set()
    for problem in task.make_problems(30, level, seed=1, version=version):
        assert problem.id.startswith(f"embedded-v{version}/level{level}/")
        compounds = THREE_OPERATION_COMPOUND.findall(problem.problem)
        assert len(compounds) == spec.compound_steps
        seen.update(offset for *_, offset in compounds)
        assert not COMPOUND.findall(problem.problem)
        assert int(problem.answer) == solve_version_4(problem.problem)
        assert task.solution_worded_like(problem.problem, problem.solution) == problem.solution
        start, operations = task.parse_question(problem.problem)
        assert task.question_text(start, operations) == problem.problem
    assert seen <= offsets
    if spec.compound_steps and version == 5:
        assert seen == offsets


def test_a_compound_step_has_three_or_four_operations():
    with pytest.raises(ValueError, match="3 or 4 operations, got 2"):
        task.draw_compound(np.random.default_rng(0), "x", 2)


def test_level_1_is_the_same_in_both_versions_but_for_its_ids():
    first, harder = task.make_problems(30, 1, seed=2), task.make_problems(30, 1, 2, version=2)
    assert [p.problem for p in first] == [p.problem for p in harder]
    assert [p.solution for p in first] == [p.solution for p in harder]
    assert all(p.id.startswith("embedded/level1/") for p in first)


def test_a_compound_step_shows_its_operands_and_result_only():
    question = (
        "Let x = 4 and y = 8. Working modulo 10, apply a) x=((x+y)*7+3)*9, b) y=y+5, "
        "c) y=((y+6)*3+x)*7. What is 10x+y?"
    )
    start, operations = task.parse_question(question)
    assert isinstance(operations[0], task.CompoundOperation)
    assert task.question_text(start, operations) == question
    steps, answer = task.run(start, operations, [False, True, False])
    # a) ((4+8)*7+3)*9 = 87*9 = 783; c) ((3+6)*3+3)*7 = 30*7 = 210.
    assert steps == [
        "a) x=((4+8)*7+3)*9=3",
        "b) y=y+5=8+5=3",
        "c) y=((3+6)*3+3)*7=0",
        "The answer is \\boxed{30}.",
    ]
    assert answer == 30 == solve_version_2(question)


def test_version_2_solutions_never_restate_compound_steps_and_fit_the_token_budget(tmp_path):
    tokenizer = save_tokenizer(tmp_path)
    problems = task.make_problems(300, 5, seed=0, version=2)
    lines = [line for p in problems for line in p.solution.splitlines()]
    assert sum("=((" in line for line in lines) == 4 * 300
    restated = [line for line in lines if re.search(r"=\(\([xy]\+", line)]
    assert not restated
    lengths = [len(tokenizer(p.solution, add_special_tokens=False)["input_ids"]) for p in problems]
    # The longest possible: four compound lines of 20 tokens, two restated three-operand
    # lines of 18, the answer line of 4 and <eos>: 121.
    assert max(lengths) + 1 <= 121 <= task.MAX_NEW_TOKENS


@pytest.mark.parametrize("level", task.LEVELS)
def test_version_2_questions_parse_back_and_mend_their_own_references(level):
    for problem in task.make_problems(30, level, seed=4, version=2):
        start, operations = task.parse_question(problem.problem)
        assert task.question_text(start, operations) == problem.problem
        assert task.run(start, operations, [False] * len(operations))[1] == int(problem.answer)
        assert task.solution_worded_like(problem.problem, problem.solution) == problem.solution


def test_a_slip_in_a_compound_step_is_mended_from_there_on():
    question = (
        "Let x = 4 and y = 8. Working modulo 10, apply a) x=((x+y)*7+3)*9, b) y=y+x. What is 10x+y?"
    )
    attempt = "a) x=((4+8)*7+3)*9=5\nb) y=y+x=8+5=3\nThe answer is \\boxed{53}."
    assert task.solution_worded_like(question, attempt) == (
        "a) x=((4+8)*7+3)*9=3\nb) y=y+x=8+3=1\nThe answer is \\boxed{31}."
    )


def test_version_2_question_counts():
    compound = 10 * 10 * 3 * 3
    assert task.question_count(1, version=2) == task.question_count(1, version=1)
    assert task.question_count(2, version=2) == 100 * (5 + 5 + 3 + 1 + 1 + 1) ** 2 * compound
    assert task.question_count(5, version=2) == 100 * 19**2 * compound**4


def test_the_version_in_use_is_the_innermost_block_and_defaults_to_the_shipped_one():
    assert task.current_version() == 1  # the autouse fixture's block
    with task.using_version(2):
        assert task.current_version() == 2
        assert task.make_problems(1, 3, seed=0)[0].id.startswith("embedded-v2/")
        with task.using_version(1):
            assert task.make_problems(1, 3, seed=0)[0].id.startswith("embedded/")
        assert task.level_specs() is task.HARDER_LEVEL_SPECS
    assert task.level_specs() is task.LEVEL_SPECS
    with pytest.raises(ValueError, match="task version must be one of"):
        task.make_problems(1, 1, version=6)
    with pytest.raises(ValueError, match="task version must be one of"), task.using_version(0):
        pass


def test_a_models_task_version_is_read_from_its_training_record(tmp_path):
    from ttc_jax.embedded.pipeline import package_checkpoints_dir

    assert task.checkpoint_version(tmp_path) == 1  # no record: the first version
    (tmp_path / "training.json").write_text(json.dumps({"config": {"seed": 0}}))
    assert task.checkpoint_version(tmp_path) == 1  # a record from before versions
    (tmp_path / "training.json").write_text(json.dumps({"config": {"task": {"version": 2}}}))
    assert task.checkpoint_version(tmp_path) == 2
    shipped = task.checkpoint_version(package_checkpoints_dir() / "policy")
    assert task.shipped_version() == shipped


def test_configs_name_their_task_version():
    import importlib.util
    from pathlib import Path

    import ml_collections

    path = Path(__file__).resolve().parents[1] / "configs" / "embedded.py"
    spec = importlib.util.spec_from_file_location("embedded_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get_config = module.get_config

    assert get_config().task.version == 1 and get_config("quick").task.version == 1
    harder = get_config("harder")
    assert harder.task.version == 5 and harder.workdir == "embedded_v5"
    assert get_config("harder_quick").task.version == 5
    assert get_config("harder_v4").task.version == 4
    # Version 5's small policy trains twice as long; the others as version 1's.
    assert harder.policy.train.steps == 3200 and harder.policy_14x.train.steps == 1600
    assert get_config("harder_v4").policy.train.steps == get_config().policy.train.steps
    assert get_config("harder_v3").task.version == 3
    assert get_config("harder_v3").workdir == "embedded_v3"
    assert get_config("harder_v2").task.version == 2
    assert task.config_version(harder) == 5
    assert task.config_version(ml_collections.ConfigDict({"seed": 0})) == 1
