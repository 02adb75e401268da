"""The `hendrycks_math` TFDS builder: build array_record files from a tiny MATH tree and read
them back with tfds.data_source, without TensorFlow."""

import importlib.util
import json
import sys

import pytest

from ttc_jax.math import load_hendrycks_tree

tfds = pytest.importorskip(
    "tensorflow_datasets", reason="tensorflow-datasets is not installed (the 'data' extra)"
)

from ttc_jax.math import tfds_builder  # noqa: E402 - it imports tensorflow_datasets itself

FILES = {
    "test/algebra/1.json": ("Level 1", "Algebra", "What is $1+1$?", "$1+1=\\boxed{2}$."),
    "test/algebra/2.json": ("Level 3", "Algebra", "Solve $x^2=4$.", "So $x=\\boxed{\\pm 2}$."),
    "test/precalculus/7.json": ("Level 5", "Precalculus", "Find it.", "It is $\\boxed{(1, 2)}$."),
    "train/geometry/4.json": ("Level ?", "Geometry", "Angle?", "$\\boxed{90^\\circ}$"),
}


@pytest.fixture
def math_tree(tmp_path):
    root = tmp_path / "MATH"
    for relative, (level, subject, problem, solution) in FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = {"problem": problem, "level": level, "type": subject, "solution": solution}
        path.write_text(json.dumps(fields))
    return root


def _by_id(problems):
    return sorted(problems, key=lambda problem: problem.id)


def test_build_from_manual_dir_and_read_with_data_source(math_tree, tmp_path):
    data_dir = tmp_path / "tfds"
    tfds_builder.build(math_tree, data_dir)
    for split in ("test", "train"):
        read_back = tfds_builder.load_split(data_dir, split)
        assert _by_id(read_back) == load_hendrycks_tree(math_tree, split)
    test_records = tfds.data_source("hendrycks_math", split="test", data_dir=str(data_dir))
    assert len(test_records) == 3
    assert isinstance(test_records[0]["problem"], bytes)
    if importlib.util.find_spec("tensorflow") is None:
        assert "tensorflow" not in sys.modules


def test_build_from_source_dir_in_builder_config(math_tree, tmp_path):
    config = tfds_builder.HendrycksMathConfig(name="local", source_dir=str(math_tree))
    builder = tfds_builder.HendrycksMath(data_dir=str(tmp_path / "tfds"), config=config)
    builder.download_and_prepare(file_format="array_record")
    source = builder.as_data_source(split="train")
    (problem,) = [tfds_builder.problem_from_record(source[index]) for index in range(len(source))]
    assert (problem.id, problem.answer, problem.level) == (
        "train/geometry/4.json",
        "90^\\circ",
        None,
    )


def test_missing_tree_is_reported_with_instructions(tmp_path):
    # TFDS itself refuses a missing manual_dir (AssertionError); a folder without split
    # folders gets this builder's FileNotFoundError. Both carry the instructions.
    with pytest.raises(AssertionError, match="Unpack the MATH release"):
        tfds_builder.build(tmp_path / "nowhere", tmp_path / "tfds")
    not_a_tree = tmp_path / "downloads"
    not_a_tree.mkdir()
    (not_a_tree / "MATH.tar").write_text("")
    with pytest.raises(FileNotFoundError, match="Unpack the MATH release"):
        tfds_builder.build(not_a_tree, tmp_path / "tfds")
