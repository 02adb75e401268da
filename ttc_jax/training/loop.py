"""A resumable optax training loop: AdamW, warmup then cosine decay, orbax checkpoints.

`fit` trains any parameter tree on any loss over packed batches. Batches are a pure function
of the step (``batch_at(step)``), so a run killed at any point and restarted from its last
checkpoint sees the very batches it would have seen, and ends with the same parameters.
With validation batches it keeps the parameters of the best validation loss and stops early
after ``patience`` evaluations without improvement (the PRM and revision stages).

A checkpoint holds the parameters, the optimizer state and the best parameters so far (orbax
``StandardSave``), plus a small JSON record: tokens trained, seconds spent, the best
validation loss, and whether training has stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from ttc_jax.training.packing import Batch

log = logging.getLogger(__name__)

# loss_fn(params, batch) -> (summed loss, summed weight) over the batch's weighted positions;
# a batch is a `Batch` or a tree of them.
LossFn = Callable[[Any, Any], tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training stage."""

    steps: int
    learning_rate: float
    warmup_steps: int = 100
    # The schedule decays to this fraction of the peak rate at ``steps``.
    final_learning_rate_fraction: float = 0.1
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.95
    grad_clip: float = 1.0
    log_every: int = 50
    checkpoint_every: int = 200
    # Validation every ``eval_every`` steps (0: none); stop after ``patience`` evaluations
    # without a new best (0: never stop early).
    eval_every: int = 0
    patience: int = 0

    @classmethod
    def from_dict(cls, values) -> TrainConfig:
        """From a mapping (an ml_collections ConfigDict, say) with these field names."""
        return settings_from_dict(cls, values, "training settings")


def settings_from_dict(cls, values, what: str):
    """The settings dataclass ``cls`` from a mapping of its field names; an unknown name is
    an error listing the known ones (``what`` names the settings in it)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(fields)}")
    return cls(**dict(values))


@dataclasses.dataclass
class FitResult:
    """The trained parameters and what training them took."""

    params: Any
    steps: int
    tokens: int
    seconds: float
    best_validation_loss: float | None


def num_tokens(batch) -> int:
    """Real tokens of a `Batch`, or of every `Batch` in a tree of them."""
    batches = jax.tree.leaves(batch, is_leaf=lambda x: isinstance(x, Batch))
    return sum(b.num_tokens for b in batches)


def optimizer(config: TrainConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=min(config.warmup_steps, max(config.steps - 1, 0)),
        decay_steps=max(config.steps, 1),
        end_value=config.learning_rate * config.final_learning_rate_fraction,
    )
    return optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(schedule, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay),
    )


def fit(
    name: str,
    params: Any,
    loss_fn: LossFn,
    batch_at: Callable[[int], Any],
    config: TrainConfig,
    checkpoint_dir: str | Path,
    validation: Sequence[Any] = (),
) -> FitResult:
    """Trains ``params`` for ``config.steps`` steps, resuming from ``checkpoint_dir``.

    Returns the final parameters, or with ``validation`` batches the parameters of the best
    validation loss.
    """
    if config.eval_every and not validation:
        raise ValueError(f"{name}: eval_every is set but no validation batches were given")
    tx = optimizer(config)

    def objective(p, batch):
        loss_sum, weight_sum = loss_fn(p, batch)
        return loss_sum / jnp.maximum(weight_sum, 1.0)

    def train_step(state, batch):
        loss, grads = jax.value_and_grad(objective)(state["params"], batch)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {**state, "params": params, "opt_state": opt_state}, loss

    step_fn = jax.jit(train_step, donate_argnums=0)
    eval_fn = jax.jit(loss_fn)
    state = {"params": params, "opt_state": tx.init(params)}
    if validation:
        # A copy: the training step donates (reuses) the buffers of ``params``.
        state["best_params"] = jax.tree.map(jnp.copy, params)
    record = {"step": 0, "tokens": 0, "seconds": 0.0, "best_loss": None, "bad_evals": 0}
    record["stopped"] = False

    manager = ocp.CheckpointManager(
        Path(checkpoint_dir).absolute(),
        options=ocp.CheckpointManagerOptions(
            # Written before training goes on, so a kill never loses a logged checkpoint.
            max_to_keep=1,
            enable_async_checkpointing=False,
        ),
    )
    latest = manager.latest_step()
    if latest is not None:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        restored = manager.restore(
            latest,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()
            ),
        )
        state, record = restored.state, dict(restored.record)
        log.info("%s: resumed at step %d of %d", name, record["step"], config.steps)

    def save():
        manager.save(
            record["step"],
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)
            ),
            force=True,
        )

    def validate() -> float:
        sums = [eval_fn(state["params"], b) for b in validation]
        total = sum(float(loss) for loss, _ in sums)
        return total / max(sum(float(weight) for _, weight in sums), 1.0)

    window_start, window_tokens, window_losses = time.perf_counter(), 0, []
    clock = time.perf_counter()
    while record["step"] < config.steps and not record["stopped"]:
        batch = batch_at(record["step"])
        state, loss = step_fn(state, batch)
        record["step"] += 1
        tokens = num_tokens(batch)
        record["tokens"] += tokens
        record["seconds"] += time.perf_counter() - clock
        clock = time.perf_counter()
        window_tokens += tokens
        window_losses.append(loss)
        step = record["step"]
        if step % config.log_every == 0 or step == config.steps:
            mean_loss = float(np.mean([float(x) for x in window_losses]))
            elapsed = time.perf_counter() - window_start
            log.info(
                "%s: step %d/%d loss %.4f %.0f tokens/s (%d tokens so far)",
                name,
                step,
                config.steps,
                mean_loss,
                window_tokens / max(elapsed, 1e-9),
                record["tokens"],
            )
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"{name}: loss is {mean_loss} at step {step}")
            window_start, window_tokens, window_losses = time.perf_counter(), 0, []
        if config.eval_every and (step % config.eval_every == 0 or step == config.steps):
            validation_loss = validate()
            improved = record["best_loss"] is None or validation_loss < record["best_loss"]
            if improved:
                record["best_loss"], record["bad_evals"] = validation_loss, 0
                state = {**state, "best_params": jax.tree.map(jnp.copy, state["params"])}
            else:
                record["bad_evals"] += 1
            log.info(
                "%s: step %d validation loss %.4f (best %.4f)",
                name,
                step,
                validation_loss,
                record["best_loss"],
            )
            if config.patience and record["bad_evals"] >= config.patience:
                log.info("%s: no improvement in %d evaluations; stopping", name, config.patience)
                record["stopped"] = True
        if step % config.checkpoint_every == 0 or record["stopped"]:
            save()
    if manager.latest_step() != record["step"]:
        save()
    manager.wait_until_finished()
    final = state["best_params"] if validation else state["params"]
    return FitResult(
        final, record["step"], record["tokens"], record["seconds"], record["best_loss"]
    )
