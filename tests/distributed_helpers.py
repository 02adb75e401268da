"""A tiny study run as one of several JAX processes, for tests/test_distributed.py:

    python -m tests.distributed_helpers WORKDIR OUT [COORDINATOR NUM_PROCESSES PROCESS_ID]

joins the other processes (none without the last three arguments), runs the study on 4 CPU
devices of its own and writes the summary and fitted strategy table it ends with to ``OUT``
(every process, so the test can compare them). A lost peer ends it as the commands do.

    python -m tests.distributed_helpers global-mesh OUT [COORDINATOR NUM_PROCESSES PROCESS_ID]

runs a tiny model on global meshes (`ttc_jax.sharding.global_mesh`) across the processes
instead, and writes its logits and greedy tokens to ``OUT``;

    python -m tests.distributed_helpers collectives FOLDER OUT COORDINATOR NUM_PROCESSES ID

writes what `collectives_run` sees.
"""

from __future__ import annotations

import json
import os
import sys

# Before JAX starts: a process holds 4 devices, as a host of a pod slice holds several (not
# when a test imports this module: its process keeps the 8 devices of tests/conftest.py).
if __name__ == "__main__":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

from ttc_jax import distributed

# Short enough for the fault test to see a dead process's heartbeat missed in seconds.
HEARTBEAT_TIMEOUT_S = 10
LABELS = ("majority", "best_of_n_weighted")
QUESTIONS = 8


def tiny_distributed_config(workdir: str):
    """Budgets 1 and 2, three labels, no revisions; ``max_rows`` 4 so every stage has
    several chunks to deal over the processes."""
    from tests import study_helpers

    config = study_helpers.tiny_config(workdir)
    config.budgets = (1, 2)
    config.strategies = LABELS
    config.revision_ratios = False
    config.difficulty.samples = 4
    config.max_rows = 4
    return config


def run(workdir: str) -> tuple[dict, dict]:
    """The tiny study's summary and strategy table."""
    import jax

    import ttc_jax.sharding
    from tests import study_helpers
    from ttc_jax.study import Study
    from ttc_jax.study.report import strategy_table

    # The tiny models are built on the default mesh, the first of jax.devices(): process 0's
    # device on every process. Each process's models belong on its own first device.
    ttc_jax.sharding.make_mesh.__defaults__ = (1, 1, jax.local_devices())
    models = study_helpers.tiny_models()
    models.revision = models.revision_verifier = None
    problems = study_helpers.PROBLEMS[:QUESTIONS]
    study = Study(tiny_distributed_config(workdir), models, problems, progress=False)
    summary = study.run()
    return summary, strategy_table(study, summary)


GLOBAL_PROMPTS = ([1, 2, 3], [4, 5, 6, 7], [9, 8], [30, 31, 32, 33, 34])


def global_mesh_run() -> dict:
    """A tiny model's logits on a global mesh of 2 devices per process (data 2 within each
    process, its model axis over the processes) and greedy tokens on one of every device
    (data 2, the model axis over 2 devices of each process)."""
    import jax

    from ttc_jax.sharding import global_mesh

    logits_mesh = global_mesh(2, jax.process_count(), devices=_first(2))
    return tiny_model_outputs(logits_mesh, global_mesh(2, -1))


def tiny_model_outputs(logits_mesh, tokens_mesh) -> dict:
    """Logits of a few rows on one mesh, greedy tokens of `GLOBAL_PROMPTS` on another,
    gathered to every process, with where the model's parameters lie."""
    import numpy as np
    from jax.experimental import multihost_utils

    from tests.engine_helpers import tiny_lm
    from ttc_jax.engine.generate import generate

    lm = tiny_lm(mesh=logits_mesh)
    tokens = np.random.RandomState(1).randint(0, 64, (3, 9))
    # The logits' vocabulary is split over processes: gathered to every process.
    logits = np.asarray(multihost_utils.process_allgather(lm.logits(tokens), tiled=True))
    qkv = lm.params["layers"][0]["attn"]["qkv_proj"]
    lm = tiny_lm(mesh=tokens_mesh)
    samples = generate(lm, list(GLOBAL_PROMPTS), n=2, max_new_tokens=8, temperature=0)
    return {
        "logits": logits.tolist(),
        "tokens": [[s.token_ids for s in row] for row in samples],
        "qkv_processes": sorted({d.process_index for d in qkv.sharding.device_set}),
        "qkv_spec": str(qkv.sharding.spec),
        "mesh": dict(lm.mesh.shape),
    }


def shipped_world(workdir) -> None:
    """A quick-mode ``ttc-train`` work directory whose training stages are done with the
    package's shipped models (no training in tests), so its sampling stages and evaluation
    are left to run."""
    import shutil

    from tests.study_helpers import load_config
    from ttc_jax.embedded.pipeline import CHECKPOINT_STAGES, package_checkpoints_dir
    from ttc_jax.embedded.workspace import Workspace

    config = load_config("embedded", "quick")
    config.workdir = str(workdir)
    ws = Workspace(config, "shipped")
    ws.write_tokenizer()
    for name, stage in CHECKPOINT_STAGES.items():
        shutil.copytree(package_checkpoints_dir() / name, ws.model_dir(stage))
        shutil.copytree(package_checkpoints_dir() / name, ws.export_dir / name)
    for stage in ("data", *CHECKPOINT_STAGES.values(), "export"):
        ws.mark_done(stage, 0)


def _first(n: int) -> list:
    """Each process's first ``n`` devices."""
    import jax

    return [d for p in range(jax.process_count()) for d in _local(p)[:n]]


def _local(process: int) -> list:
    import jax

    return [d for d in jax.devices() if d.process_index == process]


def collectives_run(folder: str) -> dict:
    """What `distributed.deal`, `share_folders` and `wait_for_primary` give this process:
    process 0 shares a folder of two files (one empty), then works alone for 2 s while the
    others wait."""
    import time
    from pathlib import Path

    import jax

    index = jax.process_index()
    dealt = list(distributed.deal(range(5), lambda k: {"k": k, "by": jax.process_index()}))
    source, target = Path(folder) / "source", Path(folder) / f"copy{index}"
    if index == 0:
        (source / "sub").mkdir(parents=True)
        (source / "sub" / "a.bin").write_bytes(bytes(range(256)) * 3)
        (source / "empty").write_bytes(b"")
    distributed.share_folders([(source, target)])
    started = time.monotonic()
    if index == 0:
        time.sleep(2)
    distributed.wait_for_primary("alone")
    return {
        "dealt": dealt,
        "copied": sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
        if target.exists()
        else None,
        "same": target.exists()
        and (target / "sub" / "a.bin").read_bytes() == bytes(range(256)) * 3,
        "waited": time.monotonic() - started,
    }


def main(argv: list[str]) -> None:
    if argv[0] == "collectives":
        distributed.initialize(argv[3], int(argv[4]), int(argv[5]), timeout_s=60)
        with open(argv[2], "w") as file:
            json.dump(collectives_run(argv[1]), file)
        return
    if argv[0] == "global-mesh":
        if len(argv) > 2:
            distributed.initialize(argv[2], int(argv[3]), int(argv[4]), timeout_s=60)
        with open(argv[1], "w") as file:
            json.dump(global_mesh_run(), file)
        return
    workdir, out = argv[:2]
    if len(argv) > 2:
        address, count, index = argv[2], int(argv[3]), int(argv[4])
        distributed.initialize(
            address, count, index, timeout_s=60, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S
        )
    try:
        summary, table = run(workdir)
    except distributed.PeerLostError as e:
        distributed.exit_lost(e, "distributed_helpers")
    with open(out, "w") as file:
        json.dump({"summary": summary, "table": table}, file, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
