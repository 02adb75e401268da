"""Pipeline stages of revisions: revision data, the revision model, and the revision
chains the revision verifier learns from.

Revision data is 64 policy samples per training question turned into examples by
`ttc_jax.training.revisions`: the paper's recipe (`revision_data.target="sample"`, context
"incorrect") or the shipped one, "mend": up to four samples of either grade as context and
the last one mended (`task.solution_worded_like`) as the target. The revision model starts
from the policy's weights, may warm up on copying, and ends with on-policy rounds on its
own chains (`revision.on_policy`). Its prompt is `FewShotPrompt.revision_text` (the earlier
attempts, then the question); with no attempts that is the policy's own prompt, so it makes
first attempts too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ttc_jax.embedded import task
from ttc_jax.embedded.fine_tuning import (
    REVISION_QUESTIONS,
    VERIFIER_QUESTIONS,
    fit_examples,
    fit_record,
    sampling_settings,
    split_examples,
    training_questions,
    with_extra_layers,
)
from ttc_jax.embedded.workspace import Workspace
from ttc_jax.engine.generate import Sample
from ttc_jax.lm import LanguageModel, load_lm
from ttc_jax.math.datasets import Problem
from ttc_jax.math.grading import extract_answer
from ttc_jax.math.prompts import split_steps
from ttc_jax.sharding import ShardingRules, make_mesh
from ttc_jax.training.objectives import lm_loss
from ttc_jax.training.packing import lm_example
from ttc_jax.training.revisions import (
    CONTEXTS,
    MAX_CONTEXT_ATTEMPTS,
    TARGETS,
    revision_examples,
)
from ttc_jax.training.rollouts import Grader, SamplingSettings, sample_solutions

log = logging.getLogger(__name__)

# The `revision_examples` keep setting of the targets that keep a last attempt; "mend"
# keeps every last attempt and then rewrites it as the right solution in its wording.
KEEP_OF_TARGET = {"keep": "right", "copy": "any", "mend": "any"}
# The revision targets of this world: `revision_examples`' and "mend", which needs the task's
# own solver (`task.solution_worded_like`).
REVISION_TARGETS = (*TARGETS, "mend")
# The warm-up phases in the order they run (`warmup_phases`).
WARMUP_PHASES = ("hidden", "copy")


def revision_chains(
    lm: LanguageModel,
    problems: Sequence[Problem],
    num_chains: int,
    length: int,
    settings: SamplingSettings,
    seed: int,
) -> list[list[list[tuple[str, Sample]]]]:
    """``num_chains`` chains of ``length`` sequential attempts per problem, each attempt
    conditioned on the chain's earlier ones (the last four): ``[problem][chain][attempt]``
    -> (the prompt it was sampled from, the sample)."""
    chains = [[[] for _ in range(num_chains)] for _ in problems]
    for attempt in range(length):
        prompts = [
            task.PROMPT.revision_text(problem, [sample.text for _, sample in chain])
            for problem, problem_chains in zip(problems, chains, strict=True)
            for chain in problem_chains
        ]
        samples = sample_solutions(lm, prompts, 1, settings, seed * 1009 + attempt)
        for index, (prompt, [sample]) in enumerate(zip(prompts, samples, strict=True)):
            chains[index // num_chains][index % num_chains].append((prompt, sample))
    return chains


def chain_grades(
    problems: Sequence[Problem], chains: list[list[list[tuple[str, Sample]]]], grader: Grader
) -> np.ndarray:
    """[question, chain, attempt] grades of `revision_chains`' attempts."""
    return np.array(
        [
            [[grader.correct(sample.text, p.answer) for _, sample in chain] for chain in row]
            for p, row in zip(problems, chains, strict=True)
        ]
    )


def check_revision_settings(config) -> None:
    """Raises ValueError naming a ``revision_data`` choice that does not exist or a
    ``revision`` setting out of range; the pipeline calls it before any stage runs."""
    for name, choices in (("context", CONTEXTS), ("target", REVISION_TARGETS)):
        value = config.revision_data[name]
        if value not in choices:
            raise ValueError(f"revision_data.{name} must be one of {choices}, got {value!r}")
    target = config.revision_data.target
    if target in KEEP_OF_TARGET and config.revision_data.context != "any":
        raise ValueError(f"revision_data.target {target!r} needs context 'any' (attempts to keep)")
    for name in ("extra_layers", "rope_theta"):
        if config.revision[name] < 0:
            raise ValueError(f"revision.{name} must be 0 or more, got {config.revision[name]}")
    fraction = config.revision.hidden_question_fraction
    if not 0 <= fraction <= 1:
        raise ValueError(f"revision.hidden_question_fraction must be in [0, 1], got {fraction}")
    warmup = config.revision.warmup
    if warmup.epochs < 0 or warmup.learning_rate <= 0:
        raise ValueError(
            "revision.warmup needs epochs >= 0 and a positive learning_rate, got "
            f"epochs={warmup.epochs}, learning_rate={warmup.learning_rate}"
        )
    unknown = [phase for phase in warmup.phases if phase not in WARMUP_PHASES]
    if unknown or not warmup.phases:
        raise ValueError(
            f"revision.warmup.phases must be one or more of {WARMUP_PHASES}, got "
            f"{tuple(warmup.phases)}"
        )
    rounds = config.revision.on_policy
    if rounds.rounds < 0 or rounds.epochs <= 0 or rounds.learning_rate <= 0:
        raise ValueError(
            "revision.on_policy needs rounds >= 0 and a positive epochs and learning_rate, got "
            f"rounds={rounds.rounds}, epochs={rounds.epochs}, learning_rate={rounds.learning_rate}"
        )
    if not isinstance(rounds.mend_repeats, int) or rounds.mend_repeats < 1:
        raise ValueError(
            f"revision.on_policy.mend_repeats must be an integer >= 1, got {rounds.mend_repeats}"
        )
    if rounds.rounds and (rounds.chains < 1 or rounds.attempts < 1):
        raise ValueError(
            "revision.on_policy needs chains >= 1 and attempts >= 1, got "
            f"chains={rounds.chains}, attempts={rounds.attempts}"
        )
    if warmup.epochs and target not in KEEP_OF_TARGET:
        raise ValueError(
            f"revision.warmup needs revision_data.target in {sorted(KEEP_OF_TARGET)}, got "
            f"{target!r}: its first phase copies the examples whose target is their last attempt"
        )


def revision_prompt(question, attempts: Sequence[str], hide_question: bool = False) -> str:
    """The revision prompt of ``question`` (a `Problem` or its text) after ``attempts``; with
    ``hide_question``, the same prompt with the question left out."""
    return task.PROMPT.revision_text("" if hide_question else question, attempts)


def hidden_questions(rows: Sequence[dict], fraction: float, seed: int) -> np.ndarray:
    """Which revision examples are shown without their question: ``fraction`` of those whose
    target is their last attempt word for word, drawn with ``seed``.

    Without the question such an example can only be answered by reading the attempt, so
    its loss rewards finding and copying an earlier attempt's lines. With the question
    there, a model that knows the task predicts a right attempt's tokens about as well by
    solving afresh, and its loss hardly rewards reading (docs/embedded.md has the trials).
    """
    copies = np.array(
        [bool(r["attempts"]) and r["target"] == r["attempts"][-1] for r in rows], dtype=bool
    )
    draws = np.random.default_rng([seed, REVISION_QUESTIONS]).random(len(rows))
    return copies & (draws < fraction)


# -- stages -------------------------------------------------------------------------------


def stage_revision_data(ws: Workspace) -> None:
    """Policy samples of training questions turned into revision examples."""
    section = ws.config.revision_data
    lm = load_lm(ws.model_dir("policy"))
    problems = training_questions(ws, section.questions_per_level, REVISION_QUESTIONS)
    settings = sampling_settings(ws, section.prompts_per_call, section.temperature)
    grader = Grader()

    def work(index, chunk):
        prompts = [task.PROMPT.text(p) for p in chunk]
        seed = ws.config.seed * 1000 + index
        samples = sample_solutions(lm, prompts, section.samples_per_question, settings, seed)
        rng = np.random.default_rng([ws.config.seed, REVISION_QUESTIONS, index])
        for problem, row in zip(chunk, samples, strict=True):
            answers = [s.text for s in row if extract_answer(s.text) is not None]
            if section.include_reference:
                answers.append(problem.solution)
            correct = [grader.correct(answer, problem.answer) for answer in answers]
            reference = None if section.target == "sample" else problem.solution
            mend = section.target == "mend"
            for example in revision_examples(
                answers,
                correct,
                rng,
                section.max_examples_per_question,
                section.context,
                reference,
                keep=KEEP_OF_TARGET.get(section.target, "none"),
            ):
                target = example.target
                if mend and example.attempts:
                    target = task.solution_worded_like(problem.problem, target)
                yield {
                    "problem_id": problem.id,
                    "question": problem.problem,
                    "attempts": example.attempts,
                    "target": target,
                }

    ws.run_chunks("revision_data", problems, section.chunk_questions, work, log.info)


def copy_targets(rows: Sequence[dict]) -> list[dict]:
    """The rows with each last attempt, right or wrong, as the target (the reference stays
    where there is none): revision_data.target "copy" made from any other target's rows."""
    return [{**r, "target": r["attempts"][-1]} if r["attempts"] else r for r in rows]


def warmup_phases(
    rows: Sequence[dict], seed: int, names: Sequence[str] = WARMUP_PHASES
) -> list[tuple[str, list[dict], np.ndarray]]:
    """(name, rows, hidden) of the revision model's warm-up phases ``names``, in the order
    of `WARMUP_PHASES`.

    "hidden": every example whose target is its last attempt is shown without its question,
    so that only copying the attempt lowers its loss; a model learns to copy there first.
    "copy": every last attempt is the target, with the question shown, so that the copying
    learned without the question carries over to prompts that have one (docs/embedded.md).
    """
    phases = {
        "hidden": lambda: (list(rows), hidden_questions(rows, 1.0, seed)),
        "copy": lambda: (copy_targets(rows), np.zeros(len(rows), dtype=bool)),
    }
    return [(name, *phases[name]()) for name in WARMUP_PHASES if name in names]


def chain_examples(
    problem: Problem,
    chains: Sequence[Sequence[str]],
    rng: np.random.Generator,
    max_examples: int,
) -> list[dict]:
    """Revision rows from one problem's revision chains (each a list of attempt texts, oldest
    first), at most ``max_examples`` of them drawn with ``rng``.

    Every prompt of a chain is a row: the attempts before it (the last four) and, as the
    target, the right solution in the wording of the attempt just before it
    (`task.solution_worded_like`: that attempt itself when it is right, mended when it is
    wrong), or the reference solution before any attempt.
    """
    rows = []
    for texts in chains:
        for count in range(len(texts) + 1):
            attempts = list(texts[max(0, count - MAX_CONTEXT_ATTEMPTS) : count])
            target = (
                task.solution_worded_like(problem.problem, attempts[-1])
                if attempts
                else problem.solution
            )
            rows.append(
                {
                    "problem_id": problem.id,
                    "question": problem.problem,
                    "attempts": attempts,
                    "target": target,
                }
            )
    chosen = rng.permutation(len(rows))[:max_examples]
    return [rows[i] for i in sorted(chosen)]


def on_policy_rows(ws: Workspace, lm: LanguageModel, round_index: int) -> list[dict]:
    """Rows of `chain_examples` from ``lm``'s own revision chains on the revision data's
    questions, sampled at the world's temperature; cached in the stage's
    ``round<round_index>`` folder, so a killed run resumes where its sampling stopped."""
    section, data = ws.config.revision.on_policy, ws.config.revision_data
    problems = training_questions(ws, data.questions_per_level, REVISION_QUESTIONS)
    settings = sampling_settings(ws, section.prompts_per_call)

    def work(index, chunk):
        seed = (ws.config.seed * 1000 + index) * 100 + round_index
        chains = revision_chains(lm, chunk, section.chains, section.attempts, settings, seed)
        rng = np.random.default_rng([ws.config.seed, REVISION_QUESTIONS, round_index, index])
        for problem, problem_chains in zip(chunk, chains, strict=True):
            texts = [[sample.text for _, sample in chain] for chain in problem_chains]
            yield from chain_examples(problem, texts, rng, data.max_examples_per_question)

    stage = f"revision/round{round_index}"
    rows = ws.run_chunks(stage, problems, data.chunk_questions, work, log.info)
    return with_mends_repeated(rows, section.mend_repeats)


def with_mends_repeated(rows: Sequence[dict], repeats: int) -> list[dict]:
    """The rows, with each row that mends a wrong last attempt (its target is not that
    attempt) ``repeats`` times in place. On a model's own chains most rows keep a right
    attempt; repeating the others weighs mending, the step that lifts a chain, more in the
    loss."""
    return [
        row
        for row in rows
        for _ in range(repeats if row["attempts"] and row["target"] != row["attempts"][-1] else 1)
    ]


def revision_lm_examples(ws: Workspace, rows: Sequence[dict], hidden: np.ndarray):
    """(training, validation) language-model examples of revision rows, the ``hidden`` ones
    without their question."""
    tokenizer = ws.tokenizer
    prompts = [
        revision_prompt(r["question"], r["attempts"], hide)
        for r, hide in zip(rows, hidden, strict=True)
    ]
    prompt_ids = tokenizer(prompts)["input_ids"]
    target_ids = tokenizer([r["target"] for r in rows], add_special_tokens=False)["input_ids"]
    examples = [
        lm_example(prompt, target, tokenizer.eos_token_id)
        for prompt, target in zip(prompt_ids, target_ids, strict=True)
    ]
    return split_examples(rows, examples, ws.config.revision.validation_fraction)


def stage_revision(ws: Workspace) -> None:
    """The revision model: the policy (deepened by ``revision.extra_layers`` fresh layers,
    with rotary base ``revision.rope_theta`` unless 0) fine-tuned to answer after its
    earlier attempts, after the warm-up phases when ``revision.warmup.epochs`` is set, then
    for ``revision.on_policy.rounds`` rounds on its own chains (`on_policy_rows`)."""
    rows = ws.read_chunks("revision_data")
    section = ws.config.revision
    hidden = hidden_questions(rows, section.hidden_question_fraction, ws.config.seed)
    if section.hidden_question_fraction:
        log.info("revision: %d of %d examples without their question", hidden.sum(), len(rows))
        if not hidden.any():
            log.warning(
                "revision: hidden_question_fraction is %s but no example has its last attempt "
                "as its target (revision_data.target 'keep' or 'copy' makes such examples)",
                section.hidden_question_fraction,
            )
    policy = load_lm(ws.model_dir("policy"))
    config, params = with_extra_layers(
        policy.config, policy.params, section.extra_layers, ws.config.seed
    )
    if section.rope_theta:
        # A slower rotary base leaves more of each head able to match content far back
        # (an earlier attempt), at the price of re-learning the policy's local attention.
        config = config.replace(rope_theta=float(section.rope_theta))

    def fit_phase(start, phase_rows, phase_hidden, phase: str, overrides: dict | None):
        """Trains ``start`` on the rows (the ``phase_hidden`` ones without their question)
        as ``phase``; returns the fit and its (training, validation) examples."""
        train, validation = revision_lm_examples(ws, phase_rows, phase_hidden)
        result = fit_examples(
            ws,
            "revision",
            config,
            start,
            lm_loss,
            train,
            validation,
            np.int32,
            REVISION_QUESTIONS,
            phase=phase,
            train_overrides=overrides,
        )
        return result, train, validation

    warmup = {"epochs": section.warmup.epochs, "learning_rate": section.warmup.learning_rate}
    phases = (
        warmup_phases(rows, ws.config.seed, section.warmup.phases) if section.warmup.epochs else []
    )
    # The warm-up phases, then the stage's own training ("" phase), each from the last.
    for phase, phase_rows, phase_hidden in [*phases, ("", rows, hidden)]:
        result, train, validation = fit_phase(
            params, phase_rows, phase_hidden, phase, warmup if phase else None
        )
        params = result.params
    # On-policy rounds: the model's own revision chains, their attempts mended, as the
    # next round's examples, so that it learns to revise the attempts it makes itself.
    rounds = section.on_policy
    overrides = {"epochs": rounds.epochs, "learning_rate": rounds.learning_rate}
    mesh, rules = make_mesh(1, 1), ShardingRules()
    for round_index in range(1, rounds.rounds + 1):
        lm = LanguageModel(config, params, mesh, rules, "float32", ws.tokenizer)
        round_rows = on_policy_rows(ws, lm, round_index)
        no_hidden = np.zeros(len(round_rows), dtype=bool)
        result, train, validation = fit_phase(
            params, round_rows, no_hidden, f"round{round_index}", overrides
        )
        params = result.params
    record = fit_record(result, train, validation)
    ws.save_model("revision", config, result.params, record)


def stage_verifier_data(ws: Workspace) -> None:
    """Revision chains on training questions, each attempt with its history and grade."""
    section = ws.config.verifier_data
    lm = load_lm(ws.model_dir("revision"))
    problems = training_questions(ws, section.questions_per_level, VERIFIER_QUESTIONS)
    settings = sampling_settings(ws, section.prompts_per_call)
    grader = Grader()

    def work(index, chunk):
        seed = ws.config.seed * 1000 + index
        chains = revision_chains(lm, chunk, section.chains, section.chain_length, settings, seed)
        for problem, problem_chains in zip(chunk, chains, strict=True):
            for chain in problem_chains:
                for attempt, (prompt, sample) in enumerate(chain):
                    steps = split_steps(sample.text, task.PROMPT_CONFIG.step_delimiter)
                    # An attempt without an answer stays: the verifier should learn it is wrong.
                    if not steps:
                        continue
                    yield {
                        "problem_id": problem.id,
                        "attempt": attempt,
                        "prompt": prompt,
                        "steps": steps,
                        "correct": grader.correct(sample.text, problem.answer),
                    }

    ws.run_chunks("verifier_data", problems, section.chunk_questions, work, log.info)
