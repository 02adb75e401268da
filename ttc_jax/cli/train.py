"""``ttc-train``: the embedded world's training pipeline.

    ttc-train --config configs/embedded.py                  # the full pipeline
    ttc-train --config configs/embedded.py:quick            # toy sizes, about a minute
    ttc-train --config configs/embedded.py --config.stages=evaluate --config.workdir=run
    ttc-train --config configs/embedded.py --distributed   # one process per host (TPU, Slurm)

Stages already done in the work folder are skipped and an interrupted stage resumes, so the
same command restarts a killed run. Progress (loss, tokens/s) is logged as it trains. Every
output lies in the work folder (the finished models in its ``export``); shipping them into the
package is a step of its own: ``python -m ttc_jax.embedded.ship <workdir>/export``.

With the joining flags (``--coordinator_address HOST:PORT --num_processes N --process_id K``
or ``--distributed``) the pipeline runs on several JAX processes: the sampling stages and the
evaluation split their questions over them, process 0 trains and writes everything
(`ttc_jax.embedded.pipeline`, docs/distributed.md).
"""

from __future__ import annotations

import logging
import shlex
import sys

from absl import app
from ml_collections import config_flags

from ttc_jax.cli import apps

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Pipeline config file (configs/embedded.py[:quick]).", lock_config=True
)


def _main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config=configs/embedded.py")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    # Library chatter (orbax's per-save lines, absl's own handler) drowns the progress.
    for name in ("absl", "orbax", "jax"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from ttc_jax.embedded.pipeline import run_pipeline  # jax starts here, after the flags

    command = "ttc-train " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    run_pipeline(config, command)


def main() -> None:
    apps.run(
        _main,
        "ttc-train",
        on_interrupt="finished stages and checkpoints are kept, and the same command resumes",
        multi_process=True,
    )


if __name__ == "__main__":
    main()
