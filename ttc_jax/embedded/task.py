"""The embedded world's task: two registers, a chain of modular operations, as MATH problems.

A problem sets x and y to digits and applies labelled operations in order, modulo 10; the
answer is 10x+y::

    Problem:
    Let x = 3 and y = 8. Working modulo 10, apply a) x=x+y, b) y=y*7, c) x=x-4. What is 10x+y?

    Solution:
    a) x=3+8=1
    b) y=y*7=8*7=6
    c) x=1-4=7
    The answer is \\boxed{76}.

Every step is one small-table operation whose operands are read back from the text (the
operation under its label in the question, the registers' latest values at most two lines
up), so a verifier can check each step from what it sees; some lines restate the operation
first, as real solutions word the same step in several ways. Difficulty grows with the number
of steps (2 at level 1 to 6 at level 5) and with the kind of operation (a digit added,
subtracted or multiplied; the other register added or subtracted, or added twice; the other
register plus a digit): errors compound over a chain, and a wrong step is carried to the
final answer, which can be any of 100 numbers.

Problems are split into train, validation and test by a hash of their text, so every question
`make_problems` returns is one no training stage can have seen, whatever the seeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from ttc_jax.math.datasets import Problem
from ttc_jax.math.prompts import FewShotPrompt, PromptConfig

MODULUS = 10
REGISTERS = ("x", "y")
# Step labels: the question names each operation by a letter and its solution line repeats
# it, so finding the next operation is a lookup by that letter.
STEP_LABELS = "abcdefghij"
SUBJECT = "Modular arithmetic"
LEVELS = (1, 2, 3, 4, 5)
SPLITS = ("train", "validation", "test")
# A problem's split is its text hash modulo HASH_BUCKETS: bucket 0 is test, 1 validation.
HASH_BUCKETS = 8
# How often a solution line spells out its operation first ("x=x+y=4+5=9"). Real solutions
# say the same thing in several ways; so do these, and a solution's log-probability then
# reflects its wording as well as its correctness.
RESTATE_PROBABILITY = 0.3
# The fixed texts of problems and solutions; the tokenizer keeps each as one token.
QUESTION_OPENING = "Let x = "
QUESTION_SECOND = " and y = "
QUESTION_MIDDLE = f". Working modulo {MODULUS}, apply "
OPERATION_JOINER = ", "
LABEL_CLOSING = ") "
QUESTION_CLOSING = ". What is 10x+y?"
ANSWER_OPENING = "The answer is \\boxed{"
ANSWER_CLOSING = "}."
TEMPLATE_TEXTS = (
    QUESTION_OPENING,
    QUESTION_SECOND,
    QUESTION_MIDDLE,
    OPERATION_JOINER,
    LABEL_CLOSING,
    QUESTION_CLOSING,
    ANSWER_OPENING,
    ANSWER_CLOSING,
)


@dataclasses.dataclass(frozen=True)
class OperationKind:
    """A family of steps: its symbol, whether it also adds the other register, and the
    constant operands it draws (None: the other register instead of a constant)."""

    name: str
    symbol: str
    constants: tuple[int, ...] | None
    plus_other: bool = False
    # "x=x+2y": the other register counted this many times.
    other_times: int = 1


OPERATION_KINDS = {
    kind.name: kind
    for kind in (
        OperationKind("add", "+", tuple(range(1, 6))),
        OperationKind("sub", "-", tuple(range(1, 6))),
        # Units modulo 10 only: multiplying by them permutes the digits, so values never
        # collapse towards 0 or 5 and every answer stays equally likely.
        OperationKind("mul", "*", (3, 7, 9)),
        OperationKind("add_other", "+", None),
        OperationKind("sub_other", "-", None),
        OperationKind("add_twice_other", "+", None, other_times=2),
        OperationKind("add_other_add", "+", tuple(range(1, 4)), plus_other=True),
    )
}


@dataclasses.dataclass(frozen=True)
class LevelSpec:
    """How a level's problems are drawn: how many steps, and the kinds of their operations
    with their relative frequencies; ``compound_steps`` of the steps (task version 2) are
    compound operations instead (`CompoundOperation`), at places drawn per problem."""

    num_steps: int
    kind_weights: dict[str, float]
    compound_steps: int = 0
    # Arithmetic operations in one compound step: 4, ``((t+A)*B+C)*D`` (versions 2 and 3),
    # or 3, ``(t+A)*B+C`` (versions 4 and 5).
    compound_operations: int = 4
    # The digits a compound step's offset C is drawn from; None: a digit 1-9 or the other
    # register (versions 2-4).
    compound_offsets: tuple[int, ...] | None = None


EASY = {"add": 1, "sub": 1, "mul": 1}
LEVEL_SPECS = {
    1: LevelSpec(2, {**EASY, "add_other": 0.5, "sub_other": 0.5}),
    2: LevelSpec(3, {**EASY, "add_other": 1, "sub_other": 1, "add_twice_other": 0.5}),
    3: LevelSpec(
        4, {**EASY, "add_other": 1, "sub_other": 1, "add_twice_other": 1, "add_other_add": 0.5}
    ),
    4: LevelSpec(
        5, {**EASY, "add_other": 1, "sub_other": 1, "add_twice_other": 1.5, "add_other_add": 1}
    ),
    5: LevelSpec(
        6, {**EASY, "add_other": 1, "sub_other": 1, "add_twice_other": 2, "add_other_add": 2}
    ),
}

# Task version 2, "the harder world": level 1 is version 1's, and from level 2 on one more
# step of a level is a compound operation, ``x=((x+A)*B+C)*D`` computed in one token with
# no intermediate result written (1 of 3 steps at level 2, up to 4 of 6 at level 5). Every
# simple step is a table a model learns whole, so a model that has learnt them answers every
# question right greedily however long its chain; a compound step is four such steps at
# once, over some 90,000 combinations of operands, which the policies learn only in part,
# the larger one more (docs/embedded.md, "The harder world").
HARDER_LEVEL_SPECS = {
    1: LEVEL_SPECS[1],
    2: dataclasses.replace(LEVEL_SPECS[2], compound_steps=1),
    3: dataclasses.replace(LEVEL_SPECS[3], compound_steps=2),
    4: dataclasses.replace(LEVEL_SPECS[4], compound_steps=3),
    5: dataclasses.replace(LEVEL_SPECS[5], compound_steps=4),
}
# Task version 3: version 2 with fewer compound steps (1 at levels 3 and 4, 2 at level 5,
# none below). In version 2 the compound steps crowded out the simple ones, and the 14x
# policy had not learnt even level 1 by step 1,000 of 1,600 (greedy accuracy 0.10); here a
# batch holds three quarters of version 1's simple steps (docs/embedded.md).
HARDER_LEVEL_SPECS_3 = {
    1: LEVEL_SPECS[1],
    2: LEVEL_SPECS[2],
    3: dataclasses.replace(LEVEL_SPECS[3], compound_steps=1),
    4: dataclasses.replace(LEVEL_SPECS[4], compound_steps=1),
    5: dataclasses.replace(LEVEL_SPECS[5], compound_steps=2),
}
# The task's versions: the level specs each draws its problems from. Version 1 is the world
# first shipped; a run's config names its version (``task.version``), recorded with every
# model it trains.
# Task version 4: compound steps of three operations, ``x=(x+A)*B+C``, at 1, 2 and 3 of the
# steps of levels 3, 4 and 5. In version 3 neither policy learned the four-operation step
# (greedy accuracy near chance on every level that holds one, docs/embedded.md), while both
# learned every two-operation simple step (``x=x+y+3``) whole; three operations sit between
# the two, where a larger model can learn more of the table than a smaller one.
HARDER_LEVEL_SPECS_4 = {
    1: LEVEL_SPECS[1],
    2: LEVEL_SPECS[2],
    **{
        level: dataclasses.replace(
            LEVEL_SPECS[level], compound_steps=compound, compound_operations=3
        )
        for level, compound in ((3, 1), (4, 2), (5, 3))
    },
}
# Task version 5: version 3's places (1, 1 and 2 compound steps at levels 3, 4 and 5) with a
# smaller three-operation step, ``x=(x+A)*B+C`` with C a digit 1-3: 900 combinations of
# operand values, between the 300 of ``x=x+y+3``, which both policies learned whole, and the
# 3,000 of version 4's step, which neither learned (docs/embedded.md).
HARDER_LEVEL_SPECS_5 = {
    1: LEVEL_SPECS[1],
    2: LEVEL_SPECS[2],
    **{
        level: dataclasses.replace(
            LEVEL_SPECS[level],
            compound_steps=compound,
            compound_operations=3,
            compound_offsets=(1, 2, 3),
        )
        for level, compound in ((3, 1), (4, 1), (5, 2))
    },
}
TASK_VERSIONS = {
    1: LEVEL_SPECS,
    2: HARDER_LEVEL_SPECS,
    3: HARDER_LEVEL_SPECS_3,
    4: HARDER_LEVEL_SPECS_4,
    5: HARDER_LEVEL_SPECS_5,
}
# Compound operations ``t=((t+A)*B+C)*D``: A and C a digit or the other register, B and D
# units (so, as with "mul", every result stays equally likely).
COMPOUND_ADDENDS = tuple(range(1, 10))
COMPOUND_FACTORS = (3, 7, 9)


@dataclasses.dataclass(frozen=True)
class Operation:
    """``target = target <symbol> operand``: the operand is a digit or the other register,
    and ``x=x+y+3`` adds the other register and a digit."""

    target: str
    symbol: str
    operands: tuple[int | str, ...]

    def _values(self, values: dict[str, int]) -> list[int]:
        return [values[o] if isinstance(o, str) else o for o in self.operands]

    def apply(self, values: dict[str, int]) -> int:
        left, (right, *more) = values[self.target], self._values(values)
        if self.symbol == "+":
            result = left + right
        elif self.symbol == "-":
            result = left - right
        else:
            result = left * right
        return (result + sum(more)) % MODULUS

    @property
    def text(self) -> str:
        return f"{self.target}={self.target}{self.symbol}" + "+".join(map(str, self.operands))

    def step_text(self, label: str, values: dict[str, int], restate: bool) -> str:
        """``c) x=9-8=1``: the label, the target, its operands' values, the result; with
        ``restate``, the operation first: ``c) x=x-y=9-8=1``."""
        operands = "+".join(map(str, self._values(values)))
        restated = f"{self.text[len(self.target) + 1 :]}=" if restate else ""
        return (
            f"{label}{LABEL_CLOSING}{self.target}={restated}{values[self.target]}{self.symbol}"
            f"{operands}={self.apply(values)}"
        )


@dataclasses.dataclass(frozen=True)
class CompoundOperation:
    """``target = ((target + addend) * factor + offset) * outer``, in one step: the addend and
    the offset are digits or the other register, the factors units; with ``outer`` None,
    ``(target + addend) * factor + offset``. Its solution line shows the operands' values
    and the result only (``d) x=((4+8)*7+3)*9=5``), never restated: the intermediate
    results are computed in the one result token."""

    target: str
    addend: int | str
    factor: int
    offset: int | str
    outer: int | None = None

    def _value(self, operand: int | str, values: dict[str, int]) -> int:
        return values[operand] if isinstance(operand, str) else operand

    def apply(self, values: dict[str, int]) -> int:
        inner = values[self.target] + self._value(self.addend, values)
        result = inner * self.factor + self._value(self.offset, values)
        return (result if self.outer is None else result * self.outer) % MODULUS

    def _expression(self, target, addend, offset) -> str:
        three = f"({target}+{addend})*{self.factor}+{offset}"
        return three if self.outer is None else f"({three})*{self.outer}"

    @property
    def text(self) -> str:
        return f"{self.target}=" + self._expression(self.target, self.addend, self.offset)

    def step_text(self, label: str, values: dict[str, int], restate: bool) -> str:
        """``d) x=((4+8)*7+3)*9=5``; ``restate`` spells the operation out first, as for
        `Operation` (the task's solutions never do)."""
        restated = f"{self.text[len(self.target) + 1 :]}=" if restate else ""
        expression = self._expression(
            values[self.target],
            self._value(self.addend, values),
            self._value(self.offset, values),
        )
        return f"{label}{LABEL_CLOSING}{self.target}={restated}{expression}={self.apply(values)}"


Step = Operation | CompoundOperation


# -- the task's version --------------------------------------------------------------------

_version_in_use: list[int] = []


def checkpoint_version(folder: str | Path) -> int:
    """The task version a model folder of the pipeline was trained on (its
    ``training.json``'s config; 1 where it names none or has none)."""
    try:
        record = json.loads((Path(folder) / "training.json").read_text())
    except (OSError, ValueError):
        return 1
    return int((record.get("config", {}).get("task") or {}).get("version", 1))


@functools.cache
def shipped_version() -> int:
    """The task version of the checkpoints shipped inside the package (their policy's)."""
    return checkpoint_version(Path(__file__).parent / "checkpoints" / "policy")


def current_version() -> int:
    """The task version problems are drawn from: the one `using_version` sets, else that of
    the shipped checkpoints, so the shipped models are always asked their own task."""
    return _version_in_use[-1] if _version_in_use else shipped_version()


def _check_version(number: int) -> int:
    if number not in TASK_VERSIONS:
        raise ValueError(f"task version must be one of {tuple(TASK_VERSIONS)}, got {number!r}")
    return number


@contextlib.contextmanager
def using_version(number: int):
    """Within the block, problems are drawn from task version ``number`` (a pipeline run
    uses its config's ``task.version``)."""
    _version_in_use.append(_check_version(int(number)))
    try:
        yield
    finally:
        _version_in_use.pop()


def config_version(config) -> int:
    """The task version a run's config names (``task.version``; 1 in configs without it)."""
    section = config.get("task") if hasattr(config, "get") else None
    return _check_version(int(section.get("version", 1))) if section else 1


def level_specs(number: int | None = None) -> dict[int, LevelSpec]:
    """The level specs of task version ``number`` (default: `current_version()`)."""
    return TASK_VERSIONS[_check_version(current_version() if number is None else number)]


def question_text(start: dict[str, int], operations: list[Operation]) -> str:
    applied = OPERATION_JOINER.join(
        f"{label}{LABEL_CLOSING}{op.text}"
        for label, op in zip(STEP_LABELS, operations, strict=False)
    )
    x, y = (start[name] for name in REGISTERS)
    return f"{QUESTION_OPENING}{x}{QUESTION_SECOND}{y}{QUESTION_MIDDLE}{applied}{QUESTION_CLOSING}"


def final_answer(values: dict[str, int]) -> int:
    return MODULUS * values["x"] + values["y"]


def answer_line(answer: int) -> str:
    return f"{ANSWER_OPENING}{answer}{ANSWER_CLOSING}"


def run(
    start: dict[str, int], operations: list[Operation], restated: list[bool]
) -> tuple[list[str], int]:
    """The reference solution's steps (one per operation, then the answer line) and the
    answer; ``restated[i]`` spells out operation i before computing it."""
    if len(operations) > len(STEP_LABELS):
        raise ValueError(f"at most {len(STEP_LABELS)} operations, got {len(operations)}")
    values, steps = dict(start), []
    for label, op, restate in zip(STEP_LABELS, operations, restated, strict=False):
        steps.append(op.step_text(label, values, restate))
        values[op.target] = op.apply(values)
    answer = final_answer(values)
    return [*steps, answer_line(answer)], answer


def split_of(question: str) -> str:
    """The split a question belongs to, fixed by its text alone."""
    bucket = int.from_bytes(hashlib.blake2b(question.encode(), digest_size=4).digest(), "big")
    bucket %= HASH_BUCKETS
    return SPLITS[2] if bucket == 0 else SPLITS[1] if bucket == 1 else SPLITS[0]


def draw_problem(rng: np.random.Generator, level: int, version: int | None = None) -> Problem:
    """One problem of ``level`` drawn from ``rng`` (any split), of task ``version`` (default:
    `current_version()`)."""
    number = current_version() if version is None else _check_version(version)
    spec = TASK_VERSIONS[number][level]
    names = list(spec.kind_weights)
    weights = np.array([spec.kind_weights[name] for name in names], float)
    start = {name: int(rng.integers(MODULUS)) for name in REGISTERS}
    operations = []
    kinds = rng.choice(names, size=spec.num_steps, p=weights / weights.sum())
    for index, name in enumerate(kinds):
        kind = OPERATION_KINDS[str(name)]
        # Targets alternate, so each register's value is at most two lines back.
        target = REGISTERS[index % len(REGISTERS)]
        other = REGISTERS[1 - index % len(REGISTERS)]
        constant = None if kind.constants is None else int(rng.choice(kind.constants))
        if kind.constants is None:
            operands = (other,) * kind.other_times
        elif kind.plus_other:
            operands = (other, constant)
        else:
            operands = (constant,)
        operations.append(Operation(target, kind.symbol, operands))
    if spec.compound_steps:
        places = rng.choice(spec.num_steps, size=spec.compound_steps, replace=False)
        for index in sorted(int(place) for place in places):
            operations[index] = draw_compound(
                rng, operations[index].target, spec.compound_operations, spec.compound_offsets
            )
    question = question_text(start, operations)
    restated = list(rng.random(len(operations)) < RESTATE_PROBABILITY)
    restated = [r and isinstance(op, Operation) for r, op in zip(restated, operations, strict=True)]
    steps, answer = run(start, operations, restated)
    digest = hashlib.blake2b(question.encode(), digest_size=6).hexdigest()
    prefix = "embedded" if number == 1 else f"embedded-v{number}"
    return Problem(
        id=f"{prefix}/level{level}/{digest}",
        problem=question,
        answer=str(answer),
        solution="\n".join(steps),
        subject=SUBJECT,
        level=level,
    )


def draw_compound(
    rng: np.random.Generator,
    target: str,
    operations: int = 4,
    offsets: tuple[int, ...] | None = None,
) -> CompoundOperation:
    """A compound operation of ``operations`` (4 or 3) arithmetic operations on ``target``:
    its addend the other register one time in ten, else a digit 1-9; its offset the same, or
    one of ``offsets``; its factors units."""
    other = REGISTERS[1 - REGISTERS.index(target)]
    choices = [other, *COMPOUND_ADDENDS]
    addend, offset = (choices[int(i)] for i in rng.integers(len(choices), size=2))
    if offsets is not None:
        offset = int(rng.choice(offsets))
    factor, outer = (int(f) for f in rng.choice(COMPOUND_FACTORS, size=2))
    if operations == 3:
        return CompoundOperation(target, addend, factor, offset)
    if operations != 4:
        raise ValueError(f"a compound step has 3 or 4 operations, got {operations}")
    return CompoundOperation(target, addend, factor, offset, outer)


def _check_level(level: int) -> None:
    if level not in LEVEL_SPECS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


# Draws in a row without a new problem of the split before it counts as run out: far more
# than a nearly exhausted split needs for one more.
DRAW_PATIENCE = 5000 * HASH_BUCKETS


def question_count(level: int, version: int | None = None) -> int:
    """How many questions ``level`` can draw over all splits (starting values times the
    operations each step can draw): a bound no split's count can exceed."""
    spec = level_specs(version)[level]
    choices = sum(
        1 if OPERATION_KINDS[name].constants is None else len(OPERATION_KINDS[name].constants)
        for name, weight in spec.kind_weights.items()
        if weight > 0
    )
    factors = 2 if spec.compound_operations == 4 else 1
    operands = 1 + len(COMPOUND_ADDENDS)
    offsets = operands if spec.compound_offsets is None else len(spec.compound_offsets)
    compound = operands * offsets * len(COMPOUND_FACTORS) ** factors
    simple_steps = spec.num_steps - spec.compound_steps
    return MODULUS ** len(REGISTERS) * choices**simple_steps * compound**spec.compound_steps


def problems_of_split(
    num: int, level: int, seed: int, split: str, version: int | None = None
) -> list[Problem]:
    """``num`` distinct problems of ``level`` from ``split``, the same for the same seed, of
    task ``version`` (default: `current_version()`).

    Raises ValueError when ``num`` is above `question_count` (at once) or the split runs out
    of distinct problems (level 1's test split holds about fifteen hundred).
    """
    _check_level(level)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    number = current_version() if version is None else _check_version(version)
    if num > question_count(level, number):
        raise ValueError(
            f"level {level} has at most {question_count(level, number)} distinct problems "
            f"over all splits; ask for fewer than {num}"
        )
    rng = np.random.default_rng([seed, level, SPLITS.index(split)])
    problems: dict[str, Problem] = {}
    misses = 0
    while len(problems) < num:
        problem = draw_problem(rng, level, number)
        if split_of(problem.problem) == split and problem.problem not in problems:
            problems[problem.problem] = problem
            misses = 0
        else:
            misses += 1
            if misses > DRAW_PATIENCE:
                raise ValueError(
                    f"level {level}'s {split} split ran out of distinct problems at "
                    f"{len(problems)}; ask for fewer than {num}"
                )
    return list(problems.values())


def make_problems(num: int, level: int, seed: int = 0, version: int | None = None) -> list[Problem]:
    """``num`` fresh problems of ``level`` (1-5): from the test split, which no training
    stage draws from, distinct from each other, and the same for the same ``seed``; of task
    ``version`` (default: `current_version()`: the shipped models' task unless a run sets
    another)."""
    return problems_of_split(num, level, seed, "test", version)


# -- how the world's models see a problem -------------------------------------------------

# The MATH prompt with no examples and one step per line: "Problem:\n<question>\n\nSolution:\n".
# A revision prompt puts the earlier attempts before it: with them between the question and
# the solution, the small policy reads its operands from the attempts, and a revision model
# fine-tuned on that layout fell far below the policy even on first attempts
# (docs/embedded.md).
PROMPT_CONFIG = PromptConfig(num_shots=0, step_delimiter="\n", attempts_first=True)
PROMPT = FewShotPrompt(PROMPT_CONFIG, ())
# The temperature the world's policies are sampled at, in training data and in the study.
# Chosen on validation questions with the trained policy: at 1.0 its pass@16 was under twice
# its pass@1 on levels 3 and 4 (0.70 and 0.54 pass@1), leaving search little room; at 1.4
# level 1 stays near 0.8 and every level from 3 up has room.
SAMPLING_TEMPERATURE = 1.4
# Room for the longest solution (a level-5 reference is about 90 tokens) and some more.
MAX_NEW_TOKENS = 128


# -- reading problems and solutions back ----------------------------------------------------


# Either form of a compound step: ``x=((x+A)*B+C)*D`` or ``x=(x+A)*B+C`` (no outer group).
COMPOUND_PATTERN = re.compile(r"([xy])=(\()?\(([xy])\+([xy]|\d)\)\*(\d)\+([xy]|\d)(?(2)\)\*(\d))")


def _operand(text: str) -> int | str:
    return text if text in REGISTERS else int(text)


def parse_question(question: str) -> tuple[dict[str, int], list[Step]]:
    """The starting registers and the operations of a question `question_text` wrote.

    Raises ValueError naming what does not fit the template.
    """
    if not (question.startswith(QUESTION_OPENING) and question.endswith(QUESTION_CLOSING)):
        raise ValueError(f"not a question of this task: {question!r}")
    head, _, applied = question[len(QUESTION_OPENING) : -len(QUESTION_CLOSING)].partition(
        QUESTION_MIDDLE
    )
    x, _, y = head.partition(QUESTION_SECOND)
    if not (x.isdigit() and y.isdigit() and applied):
        raise ValueError(f"not a question of this task: {question!r}")
    operations: list[Step] = []
    for label, item in zip(STEP_LABELS, applied.split(OPERATION_JOINER), strict=False):
        text = item.removeprefix(f"{label}{LABEL_CLOSING}")
        compound = COMPOUND_PATTERN.fullmatch(text)
        if compound:
            target, _, inner, addend, factor, offset, outer = compound.groups()
            if inner != target or target in (addend, offset):
                raise ValueError(f"operation {label} of {question!r} is not of this task: {item!r}")
            operations.append(
                CompoundOperation(
                    target,
                    _operand(addend),
                    int(factor),
                    _operand(offset),
                    None if outer is None else int(outer),
                )
            )
            continue
        target, symbol, operands = text[:1], text[3:4], text[4:].split("+")
        if target not in REGISTERS or text[1:3] != f"={target}" or symbol not in "+-*":
            raise ValueError(f"operation {label} of {question!r} is not of this task: {item!r}")
        parsed = tuple(o if o in REGISTERS else int(o) for o in operands)
        operations.append(Operation(target, symbol, parsed))
    return {"x": int(x), "y": int(y)}, operations


def solution_worded_like(question: str, attempt: str) -> str:
    """The right solution of ``question`` worded as ``attempt`` words its steps.

    Each step restates its operation where the attempt's line of the same label does (a
    line the attempt lacks is not restated). For a right attempt in the task's wording this
    is the attempt itself; for a wrong one, the attempt mended: its lines up to its first
    slip unchanged, the rest recomputed from the right values.
    """
    start, operations = parse_question(question)
    lines = attempt.split("\n")
    restated = []
    for label, op in zip(STEP_LABELS, operations, strict=False):
        opening = f"{label}{LABEL_CLOSING}{op.text}="
        restated.append(any(line.startswith(opening) for line in lines))
    steps, _ = run(start, operations, restated)
    return "\n".join(steps)
