"""What the fine-tuning stages share: their question sets, sampling settings, held-out
questions, and training on a fixed set of examples with early stopping.

The PRM, the revision model and the revision verifier all start from trained weights and
learn from a fixed set of examples built from sampled solutions. Examples are shuffled and
packed once; each epoch visits every batch in its own order; a tenth of the questions
(chosen by id, so every sample of a question falls on one side) is held out, and training
keeps the parameters of the best held-out loss, stopping when it stops improving.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ttc_jax.embedded import task
from ttc_jax.embedded.workspace import Workspace
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.params import abstract_model, random_params
from ttc_jax.sharding import ShardingRules, make_mesh
from ttc_jax.training.loop import FitResult, TrainConfig, fit
from ttc_jax.training.packing import Batch, Example, lm_example, pack, pack_all
from ttc_jax.training.rollouts import SamplingSettings

log = logging.getLogger(__name__)

# Seeds of the data streams: the reference solutions, and each stage's question set.
REFERENCE_SOLUTIONS = 0
PRM_QUESTIONS = 1
REVISION_QUESTIONS = 2
VERIFIER_QUESTIONS = 3


def reference_solution_batches(ws: Workspace):
    """``batch_at(step)``: fresh training-split problems of every level with their reference
    solutions, packed; the same batches for the same seed and step."""
    sft = ws.config.sft
    tokenizer = ws.tokenizer
    levels = np.array(task.LEVELS)
    weights = np.asarray(sft.level_weights, float)
    # Enough problems to fill every row with the shortest (level 1) examples.
    draws = math.ceil(sft.rows * sft.row_length / 40)

    def batch_at(step: int) -> Batch:
        rng = np.random.default_rng([ws.config.seed, REFERENCE_SOLUTIONS, step])
        problems = []
        while len(problems) < draws:
            problem = task.draw_problem(rng, int(rng.choice(levels, p=weights / weights.sum())))
            if task.split_of(problem.problem) == "train":
                problems.append(problem)
        prompts = tokenizer([task.PROMPT.text(p) for p in problems])["input_ids"]
        targets = tokenizer([p.solution for p in problems], add_special_tokens=False)
        examples = [
            lm_example(prompt, target, tokenizer.eos_token_id)
            for prompt, target in zip(prompts, targets["input_ids"], strict=True)
        ]
        return pack(examples, 0, sft.rows, sft.row_length, np.int32)[0]

    return batch_at


def training_questions(ws: Workspace, per_level: int, stream: int):
    """``per_level`` distinct training-split problems of every level, levels interleaved."""
    by_level = [
        task.problems_of_split(per_level, level, ws.config.seed * 10 + stream, "train")
        for level in task.LEVELS
    ]
    return [problem for group in zip(*by_level, strict=True) for problem in group]


def sampling_settings(
    ws: Workspace, prompts_per_call: int, temperature: float = task.SAMPLING_TEMPERATURE
) -> SamplingSettings:
    """The world's sampling (its temperature unless another is given, its step delimiter)
    with the config's token budget."""
    return world_sampling(ws.config.max_new_tokens, prompts_per_call, temperature)


def world_sampling(
    max_new_tokens: int, prompts_per_call: int, temperature: float = task.SAMPLING_TEMPERATURE
) -> SamplingSettings:
    """The world's sampling settings without a workspace (`sampling_settings`)."""
    return SamplingSettings(
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        step_delimiter=task.PROMPT_CONFIG.step_delimiter,
        prompts_per_call=prompts_per_call,
    )


def is_validation(problem_id: str, fraction: float) -> bool:
    """A fixed ``fraction`` of questions, chosen by id, held out for early stopping."""
    digest = hashlib.blake2b(problem_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32 < fraction


def split_examples(rows: list[dict], examples: list[Example], fraction: float):
    """(training, validation) examples, by the question each row came from."""
    train, validation = [], []
    for row, example in zip(rows, examples, strict=True):
        (validation if is_validation(row["problem_id"], fraction) else train).append(example)
    return train, validation


def epoch_batches(batches: list, seed: int, stream: int):
    """``batch_at(step)``: every batch once per epoch, in an order drawn per epoch."""

    def batch_at(step: int):
        epoch, index = divmod(step, len(batches))
        order = np.random.default_rng([seed, stream, epoch]).permutation(len(batches))
        return batches[order[index]]

    return batch_at


def fit_examples(
    ws: Workspace,
    stage: str,
    cfg: ModelConfig,
    init,
    make_loss: Callable,
    train_examples: list[Example],
    validation_examples: list[Example],
    target_dtype,
    stream: int,
    references: Callable[[int], Batch] | None = None,
    phase: str = "",
    train_overrides: dict | None = None,
) -> FitResult:
    """Trains ``init`` on fixed examples for ``config[stage].train.epochs`` epochs at most,
    early-stopped on the validation examples. ``make_loss(graphdef)`` gives the loss.

    A ``phase`` (a warm-up before the stage's own training) logs as ``stage phase`` and
    checkpoints in its own folder of the stage, with ``train_overrides`` (for example
    ``epochs`` and ``learning_rate``) replacing the stage's ``train`` settings.

    With ``references`` (a reference-solution stream), every step's batch is
    ``{"examples": ..., "references": references(step)}`` for a loss that trains on both;
    validation pairs its batches with an empty reference batch, so it measures the
    examples alone.
    """
    section = ws.config[stage]
    if not train_examples or not validation_examples:
        raise ValueError(
            f"{stage}: {len(train_examples)} training and {len(validation_examples)} "
            "validation examples; both must be non-empty (sample more questions)"
        )
    order = np.random.default_rng([ws.config.seed, stream]).permutation(len(train_examples))
    shuffled = [train_examples[i] for i in order]
    batches = pack_all(shuffled, section.rows, section.row_length, target_dtype)
    validation = pack_all(validation_examples, section.rows, section.row_length, target_dtype)
    settings = {**dict(section.train), **(train_overrides or {})}
    steps = math.ceil(settings.pop("epochs") * len(batches))
    name = f"{stage} {phase}" if phase else stage
    log.info(
        "%s: %d training and %d validation examples, %d batches an epoch, %d steps at most",
        name,
        len(train_examples),
        len(validation_examples),
        len(batches),
        steps,
    )
    batch_at = epoch_batches(batches, ws.config.seed, stream)
    if references is not None:
        batch_at = _paired(batch_at, references)
        empty = jax.tree.map(np.zeros_like, references(0))
        validation = [{"examples": batch, "references": empty} for batch in validation]
    graphdef, _ = abstract_model(cfg, jnp.float32)
    return fit(
        name,
        init,
        make_loss(graphdef),
        batch_at,
        TrainConfig.from_dict({**settings, "steps": steps}),
        ws.stage_dir(stage) / (f"{phase}_checkpoints" if phase else "checkpoints"),
        validation,
    )


def _paired(batch_at, references):
    return lambda step: {"examples": batch_at(step), "references": references(step)}


def with_extra_layers(cfg: ModelConfig, params, extra_layers: int, seed: int):
    """The model with ``extra_layers`` fresh decoder layers on top: (config, parameters).

    The new layers' output projections start at zero, so the deeper model computes exactly
    what the given one did until training moves them.
    """
    if extra_layers == 0:
        return cfg, params
    deeper = cfg.replace(num_layers=cfg.num_layers + extra_layers)
    fresh = random_params(deeper, "float32", make_mesh(1, 1), ShardingRules(), seed)
    layers = dict(params["layers"])
    for index in range(cfg.num_layers, deeper.num_layers):
        layer = fresh["layers"][index]
        attn = {**layer["attn"], "o_proj": jnp.zeros_like(layer["attn"]["o_proj"])}
        mlp = {**layer["mlp"], "down_proj": jnp.zeros_like(layer["mlp"]["down_proj"])}
        layers[index] = {**layer, "attn": attn, "mlp": mlp}
    return deeper, {**params, "layers": layers}


def fit_record(result: FitResult, train_examples: list, validation_examples: list) -> dict:
    """What a fine-tuning stage records about its training."""
    return {
        "training_examples": len(train_examples),
        "validation_examples": len(validation_examples),
        "training_tokens": result.tokens,
        "training_steps": result.steps,
        "training_seconds": round(result.seconds, 1),
        "best_validation_loss": result.best_validation_loss,
    }
