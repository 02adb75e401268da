"""Ships a pipeline run's export into the package: the models `embedded.checkpoint_path` loads.

    python -m ttc_jax.embedded.ship embedded_run/export

``ttc-train`` writes only into its work directory, so a run, a trial or the tests never
replace the shipped models by accident; shipping is this deliberate step. It takes an export
that `evaluate` has measured (the five model folders and ``evaluation.json``) and replaces
the package's copies, each folder whole.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from ttc_jax.embedded.pipeline import CHECKPOINT_STAGES, package_checkpoints_dir, replace_folders

EVALUATION = "evaluation.json"


def ship(export: str | os.PathLike, destination: Path | None = None) -> Path:
    """Copies ``export``'s five models and its evaluation into ``destination`` (default: the
    package's checkpoints folder); returns the destination."""
    export = Path(export)
    missing = [name for name in (*CHECKPOINT_STAGES, EVALUATION) if not (export / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{export} lacks {', '.join(missing)}: ship the export folder of a run whose "
            "export and evaluate stages are done"
        )
    destination = destination or package_checkpoints_dir()
    replace_folders({name: export / name for name in CHECKPOINT_STAGES}, destination)
    staging = destination / f"{EVALUATION}.tmp"
    shutil.copyfile(export / EVALUATION, staging)
    os.replace(staging, destination / EVALUATION)
    return destination


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ttc_jax.embedded.ship",
        description="Replace the embedded world's shipped checkpoints by a run's export.",
    )
    parser.add_argument("export", help="a run's export folder, e.g. embedded_run/export")
    args = parser.parse_args(argv)
    try:
        destination = ship(args.export)
    except FileNotFoundError as error:
        parser.exit(1, f"{parser.prog}: {error}\n")
    print(f"shipped {args.export} into {destination}")


if __name__ == "__main__":
    main()
