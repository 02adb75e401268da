"""Policy prompts from a strategy's ``prompt`` config: `ttc_jax.math.prompts` configured once.

The step delimiter is the strategy's, so the few-shot examples and the instruction show the
model the same step layout the search cuts its output at.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ttc_jax.math.datasets import Problem, load_jsonl
from ttc_jax.math.prompts import FewShotPrompt, PromptConfig
from ttc_jax.search.configs import check_shots_file


@dataclasses.dataclass(frozen=True)
class Prompter:
    """Prompt texts for problems, ready for the policy's tokenizer."""

    prompt: FewShotPrompt
    style: str  # "plain" or "chat"
    tokenizer: Any = None

    def text(self, problem: Problem) -> str:
        if self.style == "chat":
            return self.prompt.chat_text(problem, self.tokenizer)
        return self.prompt.text(problem)

    def revision_text(self, problem: Problem, attempts: list[str]) -> str:
        return self.prompt.revision_text(problem, attempts)


def build_prompter(prompt, step_delimiter: str, tokenizer: Any = None) -> Prompter:
    """The `Prompter` of a strategy's ``prompt`` config (see `ttc_jax.search.configs`)."""
    config = PromptConfig(
        num_shots=prompt.num_shots,
        step_delimiter=step_delimiter,
        seed=prompt.shot_seed,
        instruction=prompt.instruction or None,
        system_prompt=prompt.system_prompt or None,
        problem_header=prompt.problem_header,
        solution_header=prompt.solution_header,
        attempts_first=prompt.attempts_first,
    )
    check_shots_file(prompt)
    if prompt.style == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ValueError("the chat prompt style needs a tokenizer with a chat template")
    if prompt.num_shots:
        shots = load_jsonl(Path(prompt.shots_file).expanduser())
        few_shot = FewShotPrompt.from_train(shots, config)
    else:
        few_shot = FewShotPrompt(config, ())
    return Prompter(few_shot, prompt.style, tokenizer)


def step_text(text: str, delimiter: str) -> str:
    """A generated step as a verifier reads it: without the delimiter that ended it, and
    without surrounding whitespace."""
    if text.endswith(delimiter):
        text = text[: -len(delimiter)]
    return text.strip()
