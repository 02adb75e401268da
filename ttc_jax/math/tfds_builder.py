"""TensorFlow Datasets builder `hendrycks_math`: the MATH tree as array_record, no TensorFlow.

The original MATH release cannot be downloaded at run time here, so the builder reads a local
copy of the tree (`<dir>/train|test/<subject>/<n>.json`), named either by the builder config's
`source_dir` or, the TFDS convention, by `DownloadConfig(manual_dir=...)`. It writes
array_record files, which `tfds.data_source` reads back with random access and without
TensorFlow (`as_dataset`/`tfds.load` would need it). Text fields come back as bytes;
`problem_from_record` turns a record back into a `Problem`.

Importing this module imports tensorflow_datasets and registers the builder; the rest of
ttc_jax.math never imports it, so the package works without TFDS installed.
"""

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from ttc_jax.math.datasets import Problem, load_hendrycks_tree

NAME = "hendrycks_math"
# Stored in place of a missing level ("Level ?"), as the feature is a plain int32.
UNKNOWN_LEVEL = 0
_TEXT_FIELDS = ("id", "problem", "solution", "answer", "subject")


@dataclasses.dataclass
class HendrycksMathConfig(tfds.core.BuilderConfig):
    """Builder config; `source_dir`, when set, is the MATH tree to build from."""

    source_dir: str | None = None


class HendrycksMath(tfds.core.GeneratorBasedBuilder):
    """The MATH dataset (Hendrycks et al., 2021), train and test splits, from a local tree."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Problems, solutions, boxed answers, subjects and levels."
    }
    BUILDER_CONFIGS: ClassVar[list[HendrycksMathConfig]] = [HendrycksMathConfig(name="default")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Unpack the MATH release so that <manual_dir>/train/<subject>/<n>.json and "
        "<manual_dir>/test/<subject>/<n>.json exist, or set HendrycksMathConfig.source_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        text_features = {field: tfds.features.Text() for field in _TEXT_FIELDS}
        features = {**text_features, "level": tfds.features.Scalar(dtype=np.int32)}
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            homepage="https://github.com/hendrycks/math",
            description="Competition mathematics problems with step-by-step solutions.",
        )

    def _source_dir(self, dl_manager: tfds.download.DownloadManager) -> Path:
        configured = self.builder_config.source_dir
        return Path(configured) if configured else Path(dl_manager.manual_dir)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        source_dir = self._source_dir(dl_manager)
        splits = [split for split in ("train", "test") if (source_dir / split).is_dir()]
        if not splits:
            raise FileNotFoundError(f"{source_dir}: {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        return {split: self._generate_examples(source_dir, split) for split in splits}

    def _generate_examples(self, source_dir: Path, split: str):
        for problem in load_hendrycks_tree(source_dir, split):
            record = {field: getattr(problem, field) for field in _TEXT_FIELDS}
            level = problem.level if problem.level is not None else UNKNOWN_LEVEL
            yield problem.id, {**record, "level": level}


def build(source_dir: str | Path, data_dir: str | Path) -> HendrycksMath:
    """Builds (once; later calls reuse the files) array_record splits from a local MATH tree."""
    builder = HendrycksMath(data_dir=str(data_dir))
    download_config = tfds.download.DownloadConfig(manual_dir=str(source_dir))
    builder.download_and_prepare(file_format="array_record", download_config=download_config)
    return builder


def problem_from_record(record: dict[str, Any]) -> Problem:
    """A record read through `tfds.data_source` (bytes for text) as a Problem."""
    text = {field: bytes(record[field]).decode("utf-8") for field in _TEXT_FIELDS}
    level = int(record["level"])
    return Problem(**text, level=level if level != UNKNOWN_LEVEL else None)


def load_split(data_dir: str | Path, split: str) -> list[Problem]:
    """All problems of a built split, read with `tfds.data_source` (no TensorFlow needed)."""
    source = tfds.data_source(NAME, split=split, data_dir=str(data_dir), download=False)
    return [problem_from_record(source[index]) for index in range(len(source))]
