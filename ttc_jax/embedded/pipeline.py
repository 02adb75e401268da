"""The embedded world's training pipeline, as resumable stages.

    data -> policy -> policy_14x -> prm_labels -> prm -> revision_data -> revision
         -> verifier_data -> verifier -> export -> evaluate

Each stage reads what earlier stages wrote (trained models through `ttc_jax.load_lm` and
`ttc_jax.load_prm`, like any checkpoint), writes into its own folder of the workspace
(`ttc_jax.embedded.workspace`) and marks itself done last. A run killed anywhere restarts
where it stopped: finished stages are skipped, training resumes from its last orbax
checkpoint, sampling from its last finished chunk.

Everything a run writes lies in its work directory (`export` writes to ``output_dir``, under
it unless absolute). Replacing the checkpoints shipped inside the package is a step of its
own, ``python -m ttc_jax.embedded.ship <export folder>`` (`ttc_jax.embedded.ship`).

The two policies are trained on the same stream of reference solutions (the same batches,
step for step), so they see the same data and the same tokens.

On several JAX processes (``ttc-train`` with the joining flags; `ttc_jax.distributed`) every
process runs the same stages in order. The sampling stages (`SPLIT_STAGES`) deal their chunks
of questions over the processes (`Workspace.run_chunks`) and ``evaluate`` its levels, the
rows and figures gathered to process 0, which alone writes them: they are the files one
process writes. Every other stage (the tokenizer, training, the export) runs on process 0
alone while the others wait; before a sampling stage process 0 sends the others the models
it reads. Only process 0 writes the work directory; the others keep those models in a scratch
folder of their own, removed when they end.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ttc_jax import distributed
from ttc_jax.embedded import task
from ttc_jax.embedded.fine_tuning import reference_solution_batches
from ttc_jax.embedded.workspace import Workspace, to_builtin
from ttc_jax.models.params import abstract_model, random_params
from ttc_jax.sharding import ShardingRules, make_mesh
from ttc_jax.training.loop import TrainConfig, fit
from ttc_jax.training.objectives import lm_loss

log = logging.getLogger(__name__)

STAGES = (
    "data",
    "policy",
    "policy_14x",
    "prm_labels",
    "prm",
    "revision_data",
    "revision",
    "verifier_data",
    "verifier",
    "export",
    "evaluate",
)
# The stages whose questions are split over several processes -> the stages whose models
# they read (`Workspace.model_dir`; "export": the export folder).
SPLIT_STAGES = {
    "prm_labels": ("policy",),
    "revision_data": ("policy",),
    "verifier_data": ("revision",),
    "evaluate": ("export",),
}
# The shipped checkpoints: folder name -> the stage that trains it.
CHECKPOINT_STAGES = {
    "policy": "policy",
    "policy_14x": "policy_14x",
    "prm": "prm",
    "revision": "revision",
    "revision_verifier": "verifier",
}


def package_checkpoints_dir() -> Path:
    return Path(str(resources.files("ttc_jax.embedded"))) / "checkpoints"


def replace_folders(sources: dict[str, Path], destination: Path) -> None:
    """Copies each ``sources[name]`` folder to ``destination / name``, replacing what was
    there; each is copied under a temporary name and renamed, so a copy killed midway never
    leaves a half-copied model under its name."""
    destination.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        target = destination / name
        staging = destination / f"{name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)


def parameter_count(params) -> int:
    import jax

    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


# -- stages -------------------------------------------------------------------------------


def stage_data(ws: Workspace) -> None:
    """The tokenizer every model of the world shares."""
    ws.write_tokenizer()


def train_policy(ws: Workspace, stage: str) -> None:
    """A policy trained from scratch on reference solutions."""
    section = ws.config[stage]
    cfg = ws.model_config(section.model)
    graphdef, _ = abstract_model(cfg, jnp.float32)
    params = random_params(cfg, "float32", make_mesh(1, 1), ShardingRules(), ws.config.seed)
    train = TrainConfig.from_dict(section.train)
    result = fit(
        stage,
        params,
        lm_loss(graphdef),
        reference_solution_batches(ws),
        train,
        ws.stage_dir(stage) / "checkpoints",
    )
    record = {
        "parameters": parameter_count(result.params),
        "training_tokens": result.tokens,
        "training_steps": result.steps,
        "training_seconds": round(result.seconds, 1),
    }
    ws.save_model(stage, cfg, result.params, record)


def stage_export(ws: Workspace) -> None:
    """Copies the five trained models into the export folder (`Workspace.export_dir`)."""
    sources = {name: ws.model_dir(stage) for name, stage in CHECKPOINT_STAGES.items()}
    replace_folders(sources, ws.export_dir)
    log.info("export: checkpoints written to %s", ws.export_dir)


def stage_functions():
    from ttc_jax.embedded import evaluation, revision_stages, verifier_stages

    return {
        "data": stage_data,
        "policy": lambda ws: train_policy(ws, "policy"),
        "policy_14x": lambda ws: train_policy(ws, "policy_14x"),
        "prm_labels": verifier_stages.stage_prm_labels,
        "prm": verifier_stages.stage_prm,
        "revision_data": revision_stages.stage_revision_data,
        "revision": revision_stages.stage_revision,
        "verifier_data": revision_stages.stage_verifier_data,
        "verifier": verifier_stages.stage_verifier,
        "export": stage_export,
        "evaluate": evaluation.stage_evaluate,
    }


def selected_stages(spec: str) -> list[str]:
    """``""`` -> every stage; ``"prm,revision"`` -> those, in pipeline order."""
    if not spec:
        return list(STAGES)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    return [stage for stage in STAGES if stage in names]


def run_pipeline(config, command: str) -> Workspace:
    """Runs the selected stages that are not done yet; returns the workspace."""
    from ttc_jax.embedded.revision_stages import check_revision_settings
    from ttc_jax.embedded.verifier_stages import check_backbones

    stages = selected_stages(config.stages)
    check_backbones(config)
    check_revision_settings(config)
    # Every process must run the same pipeline: refused at the start otherwise.
    distributed.check_same("config", to_builtin(config))
    if distributed.is_primary():
        ws = Workspace(config, command)
    else:
        scratch = tempfile.mkdtemp(prefix=f"ttc-train-process{distributed.process_index()}-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        ws = Workspace(config, command, Path(scratch))
    functions = stage_functions()
    started = time.perf_counter()
    # Process 0's work directory decides what is done, for every process.
    done = distributed.broadcast(
        {stage: ws.stage_seconds(stage) for stage in stages if ws.is_done(stage)}
    )
    # Every stage draws its problems from the task version the config names.
    with task.using_version(task.config_version(config)):
        for stage in stages:
            if stage in done:
                log.info("%s: done already (%.0f s), skipped", stage, done[stage])
                continue
            log.info("%s: starting", stage)
            stage_start = time.perf_counter()
            if stage in SPLIT_STAGES:
                share_inputs(ws, stage)
                ws.split = True
                try:
                    functions[stage](ws)
                finally:
                    ws.split = False
            elif distributed.is_primary():
                functions[stage](ws)
            if distributed.is_primary():
                ws.mark_done(stage, time.perf_counter() - stage_start)
            distributed.wait_for_primary(stage)
            log.info("%s: done in %.0f s", stage, time.perf_counter() - stage_start)
    log.info("pipeline: finished in %.0f s this run", time.perf_counter() - started)
    return ws


def share_inputs(ws: Workspace, stage: str) -> None:
    """Process 0 sends the other processes the models ``stage`` reads, into their scratch
    folders (nothing with one process). Each process names its own folder of each model:
    process 0 reads from its, the others write to theirs."""
    folders = [
        ws.export_dir if source == "export" else ws.model_dir(source)
        for source in SPLIT_STAGES[stage]
    ]
    distributed.share_folders([(folder, folder) for folder in folders])
