"""Pipeline stages of the verifiers: MC labels, the PRM, and the revision verifier.

Both verifiers learn from binary cross-entropy at every step end (soft MC labels for the PRM;
each revision's correctness for the revision verifier, whose "question" is the revision prompt
with the earlier attempts), early-stopped on held-out questions. Each starts from a trained
model of the world, named by its section's ``backbone``: the PRM from the 14x policy by default
(a verifier that knows the task better than the policy it judges), the revision verifier from
the policy (its long revision prompts would make a 14x-sized one slow to train here).

The PRM is one of two kinds (``prm.head``):

* ``likelihood`` (the default): a ``ttc_likelihood`` PRM, the backbone as it is with a head
  that reads its hidden state and its log-likelihood of the steps so far, fitted on the MC
  labels. A slip of the policy is a token the stronger model finds unlikely; a value head
  alone never learnt to see one here (docs/embedded.md).
* ``value``: a ``ttc_value`` PRM, the backbone fine-tuned with a value head (the paper's
  recipe), optionally trained further on references and deepened first.

The revision verifier is a ``ttc_value`` PRM.
"""

from __future__ import annotations

import functools
import logging
import time

import numpy as np

from ttc_jax.embedded import task
from ttc_jax.embedded.fine_tuning import (
    PRM_QUESTIONS,
    VERIFIER_QUESTIONS,
    fit_examples,
    fit_record,
    is_validation,
    reference_solution_batches,
    sampling_settings,
    split_examples,
    training_questions,
    with_extra_layers,
)
from ttc_jax.embedded.workspace import Workspace
from ttc_jax.lm import load_lm
from ttc_jax.models.config import ModelConfig
from ttc_jax.prm import PRM, load_prm
from ttc_jax.prm.heads import Readout, abstract_head
from ttc_jax.prm.kinds import TtcLikelihoodFormat, TtcValueFormat
from ttc_jax.training.head_fit import HeadFitConfig, fit_linear_head
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
    """The PRM: a trained model of the world (``prm.backbone``) with a head fitted on the MC
    labels (``prm.head == "likelihood"``), or optionally trained further on reference
    solutions, deepened by a few fresh layers, then given a value head and trained with it.

    The extra layers give a policy-sized backbone room to check a step: its layers already
    compute what a step should say, and judging it takes comparing that with what it does
    say and gathering the verdicts of every step, which two layers have no depth left for.
    """
    rows = ws.read_chunks("prm_labels")
    section = ws.config.prm
    start = load_lm(ws.model_dir(backbone_stage(ws, "prm")))
    if section.head == "likelihood":
        fit_likelihood_prm(ws, start, rows)
        return
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


# Rows of features one `PRM.step_features` call gathers (each row a sampled solution).
FEATURE_ROWS_PER_CALL = 256


def fit_likelihood_prm(ws: Workspace, start, rows: list[dict]) -> None:
    """A ``ttc_likelihood`` PRM: ``start``'s decoder unchanged and a head fitted on what it
    reads at every labelled step (hidden state and the steps' log-likelihood so far)."""
    section = ws.config.prm
    fmt = TtcLikelihoodFormat(ws.tokenizer)
    head = abstract_head(Readout.VALUE_LIKELIHOOD, start.config.hidden_size, start.dtype)
    zero_head = {
        "value_proj": np.zeros(start.config.hidden_size, np.float32),
        "value_bias": np.zeros((), np.float32),
        "likelihood_weight": np.zeros((), np.float32),
    }
    prm = PRM(start, fmt, head.graphdef, zero_head)
    started = time.perf_counter()
    features, labels, held_out, tokens = [], [], [], 0
    for begin in range(0, len(rows), FEATURE_ROWS_PER_CALL):
        chunk = rows[begin : begin + FEATURE_ROWS_PER_CALL]
        per_row = prm.step_features([r["question"] for r in chunk], [[r["steps"]] for r in chunk])
        for row, [steps] in zip(chunk, per_row, strict=True):
            features.append(steps)
            tokens += prm.input_length(row["question"], row["steps"])
            labels.extend(row["labels"])
            held_out.extend(
                [is_validation(row["problem_id"], section.validation_fraction)] * len(steps)
            )
        log.info("prm: features of %d of %d solutions", begin + len(chunk), len(rows))
    features, labels, held_out = np.concatenate(features), np.asarray(labels), np.asarray(held_out)
    result = fit_linear_head(
        features[~held_out],
        labels[~held_out],
        features[held_out],
        labels[held_out],
        HeadFitConfig.from_dict(section.head_fit),
        # The penalty holds the hidden state's weights back, not the likelihood's.
        penalized=np.arange(features.shape[1]) < features.shape[1] - 1,
    )
    fitted = {
        "value_proj": result.weights[:-1],
        "value_bias": np.float32(result.bias),
        "likelihood_weight": result.weights[-1],
    }
    validation_rows = sum(is_validation(r["problem_id"], section.validation_fraction) for r in rows)
    record = {
        "head": "likelihood",
        "training_examples": len(rows) - validation_rows,
        "validation_examples": validation_rows,
        # What the backbone read to give the features; it is not trained.
        "training_tokens": tokens,
        "training_seconds": round(time.perf_counter() - started, 1),
        "labelled_steps": {"training": int((~held_out).sum()), "validation": int(held_out.sum())},
        "fit_steps": result.steps,
        "train_loss": result.train_loss,
        "best_validation_loss": result.best_validation_loss,
        "likelihood_weight": float(result.weights[-1]),
    }
    ws.save_model("prm", start.config, start.params, record, value_head=fitted)


# The trained models a verifier may start from: its section's ``backbone`` -> stage.
BACKBONES = {"prm": ("policy", "policy_14x"), "verifier": ("policy", "policy_14x", "prm")}
# ``prm.head`` -> the kind of PRM it makes.
PRM_KINDS = {"likelihood": "ttc_likelihood", "value": "ttc_value"}


def prm_kind(config) -> str:
    """The kind of PRM the ``prm`` stage of ``config`` makes (`PRM_KINDS`)."""
    return PRM_KINDS[config.prm.head]


def check_backbones(config) -> None:
    """Raises ValueError naming a verifier section whose ``backbone`` is not a model it can
    start from (`BACKBONES`), or a PRM recipe that cannot be built; the pipeline calls it
    before any stage runs."""
    for stage, choices in BACKBONES.items():
        if config[stage].backbone not in choices:
            raise ValueError(
                f"{stage}.backbone must be one of {choices}, got {config[stage].backbone!r}"
            )
    prm = config.prm
    if prm.head not in PRM_KINDS:
        raise ValueError(f"prm.head must be one of {tuple(PRM_KINDS)}, got {prm.head!r}")
    if prm.head == "likelihood":
        HeadFitConfig.from_dict(prm.head_fit)  # a misspelt setting fails now, not hours in
        changes = {
            "prm.extra_layers": prm.extra_layers,
            "prm.base_train.steps": prm.base_train.steps,
            "prm.reference_weight": prm.reference_weight,
        }
        set_ = [name for name, value in changes.items() if value]
        if set_:
            raise ValueError(
                f"prm.head='likelihood' keeps its backbone as it is; {', '.join(set_)} must be 0"
            )
        if config.verifier.backbone == "prm":
            raise ValueError(
                "verifier.backbone='prm' starts from a value-head PRM; with prm.head="
                "'likelihood' choose 'policy' or 'policy_14x'"
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
