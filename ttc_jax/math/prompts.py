"""Few-shot prompts in the paper's format: one reasoning step per line (the step delimiter is a
config field, as many open PRMs expect a blank line instead), final answer in \\boxed{}.

Base models get plain text: solved examples, then the question, each as
"Problem:\\n<question>\\n\\nSolution:\\n<step><delimiter><step>...". Instruct models get the same
examples as chat turns through the tokenizer's own chat template. `split_steps` is the one
definition of a step that prompts, search and PRM scoring share.
"""

import dataclasses
import random
import re
from collections.abc import Sequence
from typing import Any, Protocol

from ttc_jax.math.datasets import Problem

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# A sentence ends at ". " before a capital, or where display math closes before one ("\\]Then").
_SENTENCE_BREAK = re.compile(
    r"(?<=[.!?])\s+(?=[A-Z])|(?<=\\\])\s*(?=[A-Z])|(?<=\\end\{align\*\})\s*(?=[A-Z])"
)
# Earlier attempts a revision prompt holds at most (the paper's revision model saw up to four).
MAX_REVISION_ATTEMPTS = 4
_STEP_PHRASES = {"\n": "one step per line", "\n\n": "with a blank line between steps"}


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    """How prompts are built. Hashable, so it can ride along as static configuration."""

    num_shots: int = 4
    step_delimiter: str = "\n"
    # Shots are drawn with this seed from the eligible training problems, unless `shot_ids`
    # names them (then exactly num_shots ids, in prompt order).
    seed: int = 0
    shot_ids: tuple[str, ...] = ()
    # UNSTATED in the paper: long worked examples (and Asymptote figures) would eat the context.
    max_shot_solution_chars: int = 1200
    # None: an instruction that names the step delimiter (chat prompts only; the paper's
    # base-model prompt is the examples alone).
    instruction: str | None = None
    system_prompt: str | None = None
    problem_header: str = "Problem:"
    solution_header: str = "Solution:"
    # Header of each earlier attempt in a revision prompt (UNSTATED in the paper).
    attempt_header: str = "Previous attempt:"
    # Where a revision prompt puts the earlier attempts: between the problem and the solution
    # header (False), or before the whole prompt (True), which keeps the problem next to the
    # solution as in a first attempt (UNSTATED in the paper).
    attempts_first: bool = False

    def __post_init__(self) -> None:
        if self.num_shots < 0:
            raise ValueError(f"num_shots must be >= 0, got {self.num_shots}")
        if not self.step_delimiter:
            raise ValueError("step_delimiter must not be empty")
        if self.shot_ids and len(self.shot_ids) != self.num_shots:
            raise ValueError(f"{len(self.shot_ids)} shot_ids given for num_shots={self.num_shots}")

    def instruction_text(self) -> str:
        phrase = _STEP_PHRASES.get(
            self.step_delimiter, f"ending each step with {self.step_delimiter!r}"
        )
        default = f"Solve the problem step by step, {phrase}, with the final answer in \\boxed{{}}."
        return self.instruction if self.instruction is not None else default


def split_steps(text: str, delimiter: str = "\n") -> list[str]:
    """The steps of a solution written with `delimiter` between steps; blank steps dropped."""
    return [step.strip() for step in text.split(delimiter) if step.strip()]


def _outside_math(text: str, position: int) -> bool:
    before = text[:position].replace("\\$", "")
    display_open = before.count("$$") % 2 == 1 or before.count("\\[") > before.count("\\]")
    inline_open = before.replace("$$", "").count("$") % 2 == 1
    return not (inline_open or display_open)


def solution_steps(solution: str) -> list[str]:
    """A MATH reference solution cut into steps: paragraphs, then sentences outside math.

    Line breaks inside a paragraph (display math, align environments) become spaces, so no
    step contains a newline and any newline-based delimiter can join them.
    """
    steps = []
    for paragraph in _PARAGRAPH_BREAK.split(solution.strip()):
        paragraph = " ".join(paragraph.split())
        start = 0
        for sentence_break in _SENTENCE_BREAK.finditer(paragraph):
            if _outside_math(paragraph, sentence_break.start()):
                steps.append(paragraph[start : sentence_break.start()])
                start = sentence_break.end()
        steps.append(paragraph[start:])
    return [step for step in steps if step]


def format_solution(solution: str, delimiter: str = "\n") -> str:
    """A reference solution rewritten as steps joined by `delimiter`."""
    return delimiter.join(solution_steps(solution))


def _is_good_shot(problem: Problem, config: PromptConfig) -> bool:
    return (
        bool(problem.solution)
        and "\\boxed" in problem.solution
        and "[asy]" not in problem.problem + problem.solution
        and len(problem.solution) <= config.max_shot_solution_chars
    )


def select_shots(train: Sequence[Problem], config: PromptConfig) -> tuple[Problem, ...]:
    """The few-shot examples: `config.shot_ids` in order, or a seeded draw from `train`.

    The draw is over eligible problems (a boxed answer, no figure, a short solution) sorted by
    id, so it does not depend on the order `train` came in.
    """
    if config.shot_ids:
        by_id = {problem.id: problem for problem in train}
        missing = [shot_id for shot_id in config.shot_ids if shot_id not in by_id]
        if missing:
            raise KeyError(f"shot ids not in the training problems: {missing}")
        return tuple(by_id[shot_id] for shot_id in config.shot_ids)
    eligible = sorted((p for p in train if _is_good_shot(p, config)), key=lambda p: p.id)
    if len(eligible) < config.num_shots:
        raise ValueError(f"{len(eligible)} eligible shots, {config.num_shots} needed")
    return tuple(random.Random(config.seed).sample(eligible, config.num_shots))


class ChatTokenizer(Protocol):
    """What chat formatting needs of a transformers tokenizer."""

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any: ...


@dataclasses.dataclass(frozen=True)
class FewShotPrompt:
    """Prompts for any question, built from a fixed set of solved examples."""

    config: PromptConfig
    shots: tuple[Problem, ...]

    @classmethod
    def from_train(cls, train: Sequence[Problem], config: PromptConfig) -> "FewShotPrompt":
        return cls(config, select_shots(train, config))

    def _question(self, problem: Problem | str) -> str:
        return problem.problem if isinstance(problem, Problem) else problem

    def _shot_solution(self, shot: Problem) -> str:
        return format_solution(shot.solution, self.config.step_delimiter)

    def text(self, problem: Problem | str) -> str:
        """Plain few-shot prompt for a base model; the model continues with the solution."""
        header, solution_header = self.config.problem_header, self.config.solution_header
        examples = [
            f"{header}\n{shot.problem}\n\n{solution_header}\n{self._shot_solution(shot)}\n\n\n"
            for shot in self.shots
        ]
        return "".join(examples) + f"{header}\n{self._question(problem)}\n\n{solution_header}\n"

    def revision_text(self, problem: Problem | str, attempts: Sequence[str]) -> str:
        """Plain prompt for a revision model: the examples, the question, then the last
        `MAX_REVISION_ATTEMPTS` earlier attempts (oldest first), then the solution header;
        with ``attempts_first``, the attempts and then the plain prompt.

        The one layout that revision training data, revision search and the revision
        verifier's input share.
        """
        if isinstance(attempts, str):
            raise ValueError("attempts must be a list of solution texts, not one string")
        header = self.config.attempt_header
        earlier = "".join(
            f"{header}\n{attempt.strip()}\n\n" for attempt in attempts[-MAX_REVISION_ATTEMPTS:]
        )
        question = self.text(problem)
        if self.config.attempts_first:
            return f"{earlier}{question}"
        body = question[: -len(self.config.solution_header) - 1]
        return f"{body}{earlier}{self.config.solution_header}\n"

    def messages(self, problem: Problem | str) -> list[dict[str, str]]:
        """Chat turns: optional system prompt, one user/assistant pair per shot, the question."""
        instruction = self.config.instruction_text()
        turns = []
        if self.config.system_prompt:
            turns.append({"role": "system", "content": self.config.system_prompt})
        for shot in self.shots:
            turns.append({"role": "user", "content": f"{instruction}\n\n{shot.problem}"})
            turns.append({"role": "assistant", "content": self._shot_solution(shot)})
        turns.append({"role": "user", "content": f"{instruction}\n\n{self._question(problem)}"})
        return turns

    def chat_text(self, problem: Problem | str, tokenizer: ChatTokenizer) -> str:
        """The chat prompt rendered by the tokenizer's template, ready for the reply."""
        return tokenizer.apply_chat_template(
            self.messages(problem), tokenize=False, add_generation_prompt=True
        )
