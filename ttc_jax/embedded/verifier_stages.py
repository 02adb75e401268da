"""Pipeline stages of the verifiers: MC labels, the PRM, and the revision verifier.

Both verifiers are ``ttc_value`` PRMs: a decoder with a value head, trained with binary
cross-entropy at every step end (soft MC labels for the PRM; each revision's correctness for
the revision verifier, whose "question" is the revision prompt with the earlier attempts),
early-stopped on held-out questions. Each starts from a trained model of the world, named by
its section's ``backbone``: the PRM from the 14x policy by default (a verifier that knows the
task better than the policy it judges), the revision verifier from the policy (its long
revision prompts would make a 14x-sized one slow to train here).
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from ttc_jax.embedded import task
from ttc_jax.embedded.fine_tuning import (
    PRM_QUESTIONS,
    VERIFIER_QUESTIONS,
    fit_examples,
    fit_record,
    reference_solution_batches,
    sampling_settings,
    split_examples,
    training_questions,
    with_extra_layers,
)
from ttc_jax.embedded.workspace import Workspace
from ttc_jax.lm import load_lm
from ttc_jax.models.config import ModelConfig
from ttc_jax.prm import load_prm
from ttc_jax.prm.kinds import TtcValueFormat
from ttc_jax.training.loop import TrainConfig, fit
from ttc_jax.training.objectives import (
    lm_loss,
    new_value_head,
    value_loss,
    value_loss_with_references,
)
from ttc_jax.training.packing import Example
from ttc_jax.training.rollouts import mc_step_labels
from ttc_jax.training.value_data import value_example

log = logging.getLogger(__name__)


def train_value_model(
    ws: Workspace,
    stage: str,
    cfg: ModelConfig,
    init: dict,
    rows: list[dict],
    examples: list[Example],
    stream_id: int,
) -> None:
    """Trains ``{"backbone", "head"}`` with binary cross-entropy (and, with the stage's
    ``reference_weight``, next-token loss on fresh reference solutions); exports a
    ttc_value PRM."""
    section = ws.config[stage]
    train, validation = split_examples(rows, examples, section.validation_fraction)
    make_loss, references = value_loss, None
    if section.reference_weight:
        make_loss = functools.partial(
            value_loss_with_references, reference_weight=section.reference_weight
        )
        # The policy's stream of reference solutions, past what the policy and the
        # verifier's own base training saw.
        stream = reference_solution_batches(ws)
        offset = ws.config.policy.train.steps + ws.config.prm.base_train.steps
        references = lambda step: stream(offset + step)  # noqa: E731
    result = fit_examples(
        ws, stage, cfg, init, make_loss, train, validation, np.float32, stream_id, references
    )
    ws.save_model(
        stage,
        cfg,
        result.params["backbone"],
        fit_record(result, train, validation),
        value_head=result.params["head"],
    )


# -- stages -------------------------------------------------------------------------------


def stage_prm_labels(ws: Workspace) -> None:
    """Policy samples of training questions, every step labelled by MC rollouts."""
    section = ws.config.prm_labels
    lm = load_lm(ws.model_dir("policy"))
    problems = training_questions(ws, section.questions_per_level, PRM_QUESTIONS)
    settings = sampling_settings(ws, section.prompts_per_call)

    def work(index, chunk):
        labelled = mc_step_labels(
            lm,
            task.PROMPT.text,
            chunk,
            section.samples_per_question,
            section.rollouts_per_step,
            settings,
            seed=ws.config.seed * 1000 + index,
            include_reference=section.include_reference,
            sample_temperature=section.sample_temperature,
        )
        return [solution.to_json() for solution in labelled]

    ws.run_chunks("prm_labels", problems, section.chunk_questions, work, log.info)


def stage_prm(ws: Workspace) -> None:
    """The PRM: a trained model of the world (``prm.backbone``), optionally trained further
    on reference solutions and deepened by a few fresh layers, then given a value head and
    trained on the MC labels.

    The extra layers give a policy-sized backbone room to check a step: its layers already
    compute what a step should say, and judging it takes comparing that with what it does
    say and gathering the verdicts of every step, which two layers have no depth left for.
    """
    rows = ws.read_chunks("prm_labels")
    section = ws.config.prm
    start = load_lm(ws.model_dir(backbone_stage(ws, "prm")))
    cfg, backbone = with_extra_layers(
        start.config,
        continue_on_references(ws, "prm", start),
        section.extra_layers,
        ws.config.seed,
    )
    fmt = TtcValueFormat(ws.tokenizer)
    examples = [value_example(fmt, r["question"], r["steps"], r["labels"]) for r in rows]
    init = {"backbone": backbone, "head": new_value_head(cfg.hidden_size, ws.config.seed)}
    train_value_model(ws, "prm", cfg, init, rows, examples, PRM_QUESTIONS)


# The trained models a verifier may start from: its section's ``backbone`` -> stage.
BACKBONES = {"prm": ("policy", "policy_14x"), "verifier": ("policy", "policy_14x", "prm")}


def check_backbones(config) -> None:
    """Raises ValueError naming a verifier section whose ``backbone`` is not a model it can
    start from (`BACKBONES`); the pipeline calls it before any stage runs."""
    for stage, choices in BACKBONES.items():
        if config[stage].backbone not in choices:
            raise ValueError(
                f"{stage}.backbone must be one of {choices}, got {config[stage].backbone!r}"
            )


def backbone_stage(ws: Workspace, stage: str) -> str:
    """The stage whose model ``stage`` starts from."""
    check_backbones(ws.config)
    return ws.config[stage].backbone


def continue_on_references(ws: Workspace, stage: str, policy):
    """``policy``'s parameters after ``config[stage].base_train.steps`` more steps on the
    stream of reference solutions (none: its own).

    A verifier judges a step by what it knows of the task; trained on more of it than the
    policy was, it can catch the policy's slips, which the policy's own log-probabilities
    cannot.
    """
    train = TrainConfig.from_dict(ws.config[stage].base_train)
    if not train.steps:
        return policy.params
    stream = reference_solution_batches(ws)
    offset = ws.config.policy.train.steps
    result = fit(
        f"{stage} (references)",
        policy.params,
        lm_loss(policy.graphdef),
        lambda step: stream(offset + step),
        train,
        ws.stage_dir(stage) / "reference_checkpoints",
    )
    return result.params


def stage_verifier(ws: Workspace) -> None:
    """The revision verifier: a value model (``verifier.backbone``) trained on revision
    outputs with their history.

    From the PRM it keeps the PRM's value head; from a policy it is deepened by
    ``verifier.extra_layers`` fresh layers and given a new head.
    """
    rows = ws.read_chunks("verifier_data")
    section = ws.config.verifier
    start = backbone_stage(ws, "verifier")
    if start == "prm":
        prm = load_prm(ws.model_dir("prm"), "ttc_value")
        fmt, config = prm.format, prm.backbone.config
        init = {"backbone": prm.backbone.params, "head": prm.head_params}
    else:
        policy = load_lm(ws.model_dir(start))
        config, backbone = with_extra_layers(
            policy.config, policy.params, section.extra_layers, ws.config.seed
        )
        fmt = TtcValueFormat(ws.tokenizer)
        init = {"backbone": backbone, "head": new_value_head(config.hidden_size, ws.config.seed)}
    examples = [
        value_example(fmt, r["prompt"], r["steps"], [float(r["correct"])] * len(r["steps"]))
        for r in rows
    ]
    train_value_model(ws, "verifier", config, init, rows, examples, VERIFIER_QUESTIONS)
