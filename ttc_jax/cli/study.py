"""``ttc-study --config configs/embedded.py``: the compute-optimal study, the main job.

Runs (or resumes) the study a config describes and writes its results, summary, report,
figures and strategy table to the config's work directory. Any field can be overridden on
the command line (``--config.budgets='(1,4,16)'``; for configs/embedded.py, whose study sits
under ``study``, ``--config.study.workdir=...``). A bad override, an unknown strategy or a
missing model path is a one-line error before any compute.
"""

from __future__ import annotations

import sys

from ml_collections import config_flags

from ttc_jax.cli import apps
from ttc_jax.errors import CheckpointError

CONFIG = config_flags.DEFINE_config_file(
    "config", None, "a study config file (configs/embedded.py, configs/palm2_math.py, ...)"
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.exit(f"ttc-study: unexpected arguments {' '.join(argv[1:])}")
    if CONFIG.value is None:
        sys.exit("ttc-study: --config is required, e.g. --config configs/embedded.py")
    from ttc_jax.study import run_study
    from ttc_jax.study.config import study_section

    try:
        run_study(study_section(CONFIG.value))
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        sys.exit(f"ttc-study: {e}")


def entry() -> None:
    apps.run(
        main,
        "ttc-study",
        on_interrupt="every finished row is kept, and the same command resumes the study",
        multi_process=True,
    )


if __name__ == "__main__":
    entry()
