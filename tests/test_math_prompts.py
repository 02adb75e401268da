"""Prompts: step splitting, few-shot selection, plain and chat-template formatting."""

import dataclasses

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from ttc_jax.math import Problem, extract_answer, load_math500
from ttc_jax.math.prompts import (
    FewShotPrompt,
    PromptConfig,
    format_solution,
    select_shots,
    solution_steps,
    split_steps,
)

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def math500():
    return load_math500()


def _train_problem(index: int, solution: str | None = None) -> Problem:
    return Problem(
        id=f"train/algebra/{index}.json",
        problem=f"What is {index} + 1?",
        answer=str(index + 1),
        solution=solution
        or f"We add one. So {index} + 1 = {index + 1}. It is $\\boxed{{{index + 1}}}$.",
    )


TRAIN = [_train_problem(index) for index in range(20)]


def test_prompt_config_defaults_follow_the_paper():
    config = PromptConfig()
    assert (config.num_shots, config.step_delimiter) == (4, "\n")
    assert hash(config) == hash(PromptConfig())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_shots": -1}, "num_shots"),
        ({"step_delimiter": ""}, "step_delimiter"),
        ({"num_shots": 2, "shot_ids": ("a",)}, "1 shot_ids given for num_shots=2"),
    ],
)
def test_prompt_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PromptConfig(**kwargs)


def test_split_steps():
    assert split_steps("a = 1\nb = 2\n\n  \nso \\boxed{3}\n") == ["a = 1", "b = 2", "so \\boxed{3}"]
    assert split_steps("one\ntwo\n\nthree", "\n\n") == ["one\ntwo", "three"]


def test_solution_steps_split_sentences_outside_math():
    solution = (
        "First note $a. B$ stays whole. Then \\[x = 1. Y = 2.\\]So we go on.\n\n"
        "Finally the answer\nis $\\boxed{2}$."
    )
    assert solution_steps(solution) == [
        "First note $a. B$ stays whole.",
        "Then \\[x = 1. Y = 2.\\]",
        "So we go on.",
        "Finally the answer is $\\boxed{2}$.",
    ]


@pytest.mark.parametrize("delimiter", ["\n", "\n\n"])
def test_formatted_solutions_round_trip_through_split_steps(math500, delimiter):
    for problem in math500:
        steps = solution_steps(problem.solution)
        formatted = format_solution(problem.solution, delimiter)
        assert split_steps(formatted, delimiter) == steps
        assert extract_answer(formatted) == extract_answer(problem.solution)
        assert all("\n" not in step for step in steps)


def test_select_shots_is_seeded_and_order_independent():
    config = PromptConfig(seed=3)
    shots = select_shots(TRAIN, config)
    assert len(shots) == 4
    assert select_shots(list(reversed(TRAIN)), config) == shots
    assert select_shots(TRAIN, dataclasses.replace(config, seed=4)) != shots


def test_select_shots_skips_figures_and_long_solutions():
    with_figure = _train_problem(100, "[asy]draw((0,0)--(1,1));[/asy] So $\\boxed{1}$.")
    too_long = _train_problem(101, "word " * 400 + "$\\boxed{1}$")
    no_answer = _train_problem(102, "We give up.")
    eligible = [_train_problem(103)]
    config = PromptConfig(num_shots=1)
    assert select_shots([with_figure, too_long, no_answer, *eligible], config) == tuple(eligible)
    with pytest.raises(ValueError, match="1 eligible shots, 2 needed"):
        select_shots([with_figure, *eligible], PromptConfig(num_shots=2))


def test_select_shots_by_explicit_ids_keeps_their_order():
    ids = (TRAIN[5].id, TRAIN[2].id)
    config = PromptConfig(num_shots=2, shot_ids=ids)
    assert [shot.id for shot in select_shots(TRAIN, config)] == list(ids)
    with pytest.raises(KeyError, match="missing"):
        select_shots(TRAIN, PromptConfig(num_shots=1, shot_ids=("missing",)))


@pytest.mark.parametrize("delimiter", ["\n", "\n\n"])
def test_plain_prompt_layout(delimiter):
    prompt = FewShotPrompt.from_train(TRAIN, PromptConfig(step_delimiter=delimiter))
    text = prompt.text("What is 41 + 1?")
    assert text.count("Problem:\n") == 5
    assert text.endswith("Problem:\nWhat is 41 + 1?\n\nSolution:\n")
    first_solution = text.split("Solution:\n", 1)[1].split("\n\n\nProblem:", 1)[0]
    assert split_steps(first_solution, delimiter) == solution_steps(prompt.shots[0].solution)
    assert delimiter.join(["We add one.", "So"]) in first_solution


def test_chat_messages_alternate_shots_and_question():
    config = PromptConfig(num_shots=2, system_prompt="You are careful.")
    prompt = FewShotPrompt.from_train(TRAIN, config)
    question = Problem(id="q", problem="What is 99 + 1?", answer="100")
    messages = prompt.messages(question)
    roles = [message["role"] for message in messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[-1]["content"].endswith("What is 99 + 1?")
    assert "one step per line" in messages[1]["content"]
    assert messages[2]["content"] == format_solution(prompt.shots[0].solution, "\n")


def test_instruction_names_the_delimiter_unless_overridden():
    assert "blank line" in PromptConfig(step_delimiter="\n\n").instruction_text()
    assert PromptConfig(instruction="Go.").instruction_text() == "Go."


def test_chat_text_uses_the_tokenizers_template():
    backend = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    tokenizer.chat_template = CHAT_TEMPLATE
    prompt = FewShotPrompt.from_train(TRAIN, PromptConfig(num_shots=1))
    rendered = prompt.chat_text("What is 7 + 1?", tokenizer)
    shot = prompt.shots[0]
    assert rendered.startswith(f"<|user|>{prompt.config.instruction_text()}\n\n{shot.problem}")
    assert f"<|assistant|>{format_solution(shot.solution)}<|end|>" in rendered
    assert rendered.endswith("What is 7 + 1?<|end|><|assistant|>")


def test_chat_text_asks_for_text_with_a_generation_prompt():
    class RecordingTokenizer:
        def apply_chat_template(self, conversation, **kwargs):
            self.call = (conversation, kwargs)
            return "rendered"

    tokenizer = RecordingTokenizer()
    prompt = FewShotPrompt.from_train(TRAIN, PromptConfig(num_shots=0))
    assert prompt.chat_text("q?", tokenizer) == "rendered"
    conversation, kwargs = tokenizer.call
    assert kwargs == {"tokenize": False, "add_generation_prompt": True}
    assert conversation == prompt.messages("q?")


def test_revision_prompt_holds_the_last_four_attempts_before_the_solution_header():
    prompt = FewShotPrompt.from_train(TRAIN, PromptConfig(num_shots=1, seed=3))
    attempts = [f"Attempt {i}.\nThe answer is \\boxed{{{i}}}." for i in range(6)]
    text = prompt.revision_text("What is 2 + 2?", attempts)
    assert text.startswith(prompt.text("What is 2 + 2?")[: -len("Solution:\n")])
    assert text.endswith("Previous attempt:\nAttempt 5.\nThe answer is \\boxed{5}.\n\nSolution:\n")
    assert text.count("Previous attempt:") == 4
    assert "Attempt 1." not in text and "Attempt 2." in text
    assert prompt.revision_text("What is 2 + 2?", []) == prompt.text("What is 2 + 2?")
    with pytest.raises(ValueError, match="list of solution texts"):
        prompt.revision_text("What is 2 + 2?", "one attempt")


def test_revision_prompt_can_put_the_attempts_before_the_problem():
    config = PromptConfig(num_shots=1, seed=3, attempts_first=True)
    prompt = FewShotPrompt.from_train(TRAIN, config)
    attempts = [f"Attempt {i}.\nThe answer is \\boxed{{{i}}}." for i in range(6)]
    text = prompt.revision_text("What is 2 + 2?", attempts)
    assert text.endswith("\\boxed{5}.\n\n" + prompt.text("What is 2 + 2?"))
    assert text.startswith("Previous attempt:\nAttempt 2.")
    assert text.count("Previous attempt:") == 4
    assert prompt.revision_text("What is 2 + 2?", []) == prompt.text("What is 2 + 2?")
