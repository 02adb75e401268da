"""A tiny study run as one of several JAX processes, for tests/test_distributed.py:

    python -m tests.distributed_helpers WORKDIR OUT [COORDINATOR NUM_PROCESSES PROCESS_ID]

joins the other processes (none without the last three arguments), runs the study on 4 CPU
devices of its own and writes the summary and fitted strategy table it ends with to ``OUT``
(every process, so the test can compare them). A lost peer ends it as the commands do.
"""

from __future__ import annotations

import json
import os
import sys

# Before JAX starts: a process holds 4 devices, as a host of a pod slice holds several.
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


def main(argv: list[str]) -> None:
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
