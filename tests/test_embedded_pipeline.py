"""`ttc-train` in quick mode, end to end: killed mid-stage with SIGKILL, then resumed."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import ttc_jax
from tests.study_helpers import load_config
from ttc_jax.embedded import task
from ttc_jax.embedded.pipeline import (
    CHECKPOINT_STAGES,
    STAGES,
    package_checkpoints_dir,
    run_pipeline,
)
from ttc_jax.embedded.revision_stages import (
    chain_examples,
    copy_targets,
    hidden_questions,
    warmup_phases,
    with_mends_repeated,
)
from ttc_jax.embedded.ship import ship
from ttc_jax.embedded.workspace import Workspace
from ttc_jax.training.rollouts import Grader

REPO = Path(__file__).resolve().parents[1]


def train_command(workdir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ttc_jax.cli.train",
        "--config",
        f"{REPO / 'configs' / 'embedded.py'}:quick",
        f"--config.workdir={workdir}",
    ]


def folder_digests(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder``: its path -> (modification time, SHA-256)."""
    return {
        str(path.relative_to(folder)): (
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def shipped_before_run() -> dict[str, tuple[int, str]]:
    """The package's shipped checkpoints as they were before the quick run."""
    return folder_digests(package_checkpoints_dir())


@pytest.fixture(scope="module")
def run_cwd(tmp_path_factory) -> Path:
    """The quick run's current directory, empty."""
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, shipped_before_run, run_cwd):
    """A quick run killed during the policy's training, then run again to the end, from an
    empty current directory and with no output_dir given."""
    workdir = tmp_path_factory.mktemp("quick")
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    first = subprocess.Popen(
        train_command(workdir),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=run_cwd,
    )
    killed_after = []
    for line in first.stdout:
        killed_after.append(line)
        # Step 4 is logged after the checkpoint of step 2 was written.
        if "policy: step 4/" in line:
            first.send_signal(signal.SIGKILL)
            break
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, "".join(killed_after)
    assert not (workdir / "policy" / "done.json").exists()
    second = subprocess.run(
        train_command(workdir), env=env, capture_output=True, text=True, cwd=run_cwd, timeout=600
    )
    assert second.returncode == 0, second.stdout + second.stderr
    return workdir, second.stdout + second.stderr


def test_killed_run_resumes_and_finishes(quick_run):
    workdir, log = quick_run
    assert "data: done already" in log
    assert "policy: resumed at step" in log
    assert all((workdir / stage / "done.json").exists() for stage in STAGES)


def test_quick_run_writes_nothing_outside_its_workdir(quick_run, run_cwd, shipped_before_run):
    workdir, _ = quick_run
    assert list(run_cwd.iterdir()) == []
    assert folder_digests(package_checkpoints_dir()) == shipped_before_run
    # The models are in the default export folder (the export stage's own), where evaluate
    # read them and wrote its figures.
    export = workdir / "export"
    assert {p.name for p in export.iterdir()} == {
        *CHECKPOINT_STAGES,
        "evaluation.json",
        "done.json",
    }


def test_ship_replaces_a_checkpoints_folder_with_an_evaluated_export(quick_run, tmp_path):
    export = quick_run[0] / "export"
    destination = tmp_path / "checkpoints"
    (destination / "policy").mkdir(parents=True)
    (destination / "policy" / "stale.json").write_text("{}")
    assert ship(export, destination) == destination

    def contents(folder):
        return {path: digest for path, (_, digest) in folder_digests(folder).items()}

    # The stale file went with the folder it was in; nothing else is left behind.
    shipped = contents(export)
    del shipped["done.json"]  # the export stage's marker, not a shipped file
    assert contents(destination) == shipped
    (tmp_path / "unevaluated").mkdir()
    shutil.copytree(export / "policy", tmp_path / "unevaluated" / "policy")
    with pytest.raises(FileNotFoundError, match=r"lacks policy_14x, prm, .*evaluation\.json"):
        ship(tmp_path / "unevaluated", destination)


def test_export_folder_is_under_the_workdir_unless_absolute(tmp_path):
    config = load_config("embedded", "quick")
    config.workdir = str(tmp_path / "run")
    assert Workspace(config, "ttc-train").export_dir == tmp_path / "run" / "export"
    config.output_dir = str(tmp_path / "elsewhere")
    assert Workspace(config, "ttc-train").export_dir == tmp_path / "elsewhere"
    config.output_dir = ""  # once "the package"; shipping is now its own step
    with pytest.raises(ValueError, match=r"output_dir must name the export folder.*ship"):
        run_pipeline(config, "ttc-train")
    assert not (tmp_path / "run").exists()


def test_exported_models_load_with_their_records(quick_run):
    workdir, _ = quick_run
    export = workdir / "export"
    for name in CHECKPOINT_STAGES:
        folder = export / name
        record = json.loads((folder / "training.json").read_text())
        assert record["command"].startswith("ttc-train ")
        assert record["seed"] == 0 and record["config"]["mode"] == "quick"
        assert record["training_tokens"] > 0 and "machine" in record
        if name in ("prm", "revision_verifier"):
            kind = "ttc_likelihood" if name == "prm" else "ttc_value"
            prm = ttc_jax.load_prm(folder, kind)
            assert 0 <= prm.score("Let x = 1 and y = 2.", [["a) x=1+2=3"]])[0][0] <= 1
        else:
            lm = ttc_jax.load_lm(folder)
            assert lm.tokenizer is not None and lm.config.tie_word_embeddings
    assert (
        json.loads((export / "policy_14x" / "training.json").read_text())["parameters"]
        > (json.loads((export / "policy" / "training.json").read_text())["parameters"])
    )
    # Both policies saw the same reference solutions, token for token.
    tokens = [
        json.loads((export / name / "training.json").read_text())["training_tokens"]
        for name in ("policy", "policy_14x")
    ]
    assert tokens[0] == tokens[1]


def test_verifiers_start_from_their_configured_backbones(quick_run):
    workdir, _ = quick_run
    export = workdir / "export"

    def shape(name):
        config = json.loads((export / name / "config.json").read_text())
        return config["hidden_size"], config["num_hidden_layers"]

    # The PRM is built on the 14x policy; the revision verifier on the policy, two layers up.
    assert shape("prm") == shape("policy_14x") != shape("policy")
    hidden, layers = shape("policy")
    assert shape("revision_verifier") == (hidden, layers + 2)


def test_likelihood_prm_keeps_its_backbone_and_fits_its_head(quick_run):
    workdir, _ = quick_run
    export = workdir / "export"
    prm, policy_14x = (
        load_file(export / name / "model.safetensors") for name in ("prm", "policy_14x")
    )
    decoder = {key for key in prm if key.startswith("model.")}
    assert decoder == set(policy_14x)
    for key in decoder:
        np.testing.assert_array_equal(prm[key], policy_14x[key])
    record = json.loads((export / "prm" / "training.json").read_text())
    assert record["head"] == "likelihood" and record["fit_steps"] > 0
    assert prm["value_head.likelihood_weight"][0] == pytest.approx(record["likelihood_weight"])


def _redo_stage(quick_run, tmp_path, stage: str):
    """A copy of the quick run without ``stage``'s folder, and a quick config that runs that
    stage alone there: (work directory, config)."""
    workdir = tmp_path / "run"
    shutil.copytree(quick_run[0], workdir)
    shutil.rmtree(workdir / stage)
    config = load_config("embedded", "quick")
    config.workdir = str(workdir)
    config.stages = stage
    return workdir, config


def test_value_head_prm_recipe_still_trains(quick_run, tmp_path):
    # The paper's recipe (a fine-tuned value head), here deepened and trained on references
    # first, rebuilt from the quick run's labels.
    workdir, config = _redo_stage(quick_run, tmp_path, "prm")
    config.prm.head = "value"
    config.prm.extra_layers = 2
    config.prm.base_train.update(steps=2, warmup_steps=1, log_every=1, checkpoint_every=2)
    run_pipeline(config, "ttc-train")
    model = workdir / "prm" / "model"
    layers = json.loads((workdir / "policy_14x" / "model" / "config.json").read_text())
    assert json.loads((model / "config.json").read_text())["num_hidden_layers"] == (
        layers["num_hidden_layers"] + 2
    )
    prm = ttc_jax.load_prm(model, "ttc_value")
    assert 0 <= prm.score("Let x = 1 and y = 2.", [["a) x=1+2=3"]])[0][0] <= 1


def _retrain_revision(quick_run, tmp_path, train_settings=(), **settings) -> Path:
    """The quick run's revision model trained again, without warm-up or on-policy rounds,
    with ``revision.<settings>`` and ``revision.train.<train_settings>`` changed; returns its
    folder."""
    workdir, config = _redo_stage(quick_run, tmp_path, "revision")
    config.revision.warmup.epochs = 0.0
    config.revision.on_policy.rounds = 0
    config.revision.update(settings)
    config.revision.train.update(dict(train_settings))
    run_pipeline(config, "ttc-train")
    return workdir / "revision" / "model"


def test_a_deeper_revision_model_starts_as_the_policy(quick_run, tmp_path):
    still = {"epochs": 1, "learning_rate": 0.0, "warmup_steps": 1}
    model = _retrain_revision(quick_run, tmp_path, still, extra_layers=1)
    revision = ttc_jax.load_lm(model)
    policy = ttc_jax.load_lm(quick_run[0] / "policy" / "model")
    assert revision.config.num_layers == policy.config.num_layers + 1
    # The fresh layer adds nothing until training moves it (here, at learning rate 0).
    tokens = np.array([[1, 5, 9, 14, 20]], np.int32)
    np.testing.assert_allclose(revision.logits(tokens), policy.logits(tokens), rtol=1e-5, atol=1e-5)


def test_revision_model_rotary_base_is_saved_with_it(quick_run, tmp_path):
    model = _retrain_revision(quick_run, tmp_path, rope_theta=1e6)
    saved = json.loads((model / "config.json").read_text())
    assert saved["rope_parameters"]["rope_theta"] == 1e6
    assert ttc_jax.load_lm(model).config.rope_theta == 1e6


def test_only_copies_of_the_last_attempt_lose_their_question():
    rows = [
        {"attempts": ["a"], "target": "a"},
        {"attempts": [], "target": "a"},
        {"attempts": ["a", "b"], "target": "a"},
    ]
    assert hidden_questions(rows, 1.0, seed=0).tolist() == [True, False, False]
    assert not hidden_questions(rows, 0.0, seed=0).any()
    assert hidden_questions([], 0.5, seed=0).shape == (0,)
    copies = [{"attempts": ["x"], "target": "x"}] * 1000
    half = hidden_questions(copies, 0.5, seed=0)
    assert 400 < half.sum() < 600
    np.testing.assert_array_equal(half, hidden_questions(copies, 0.5, seed=0))


def test_revision_model_trains_with_hidden_questions(quick_run, tmp_path, caplog):
    caplog.set_level("INFO", logger="ttc_jax.embedded.revision_stages")
    model = _retrain_revision(quick_run, tmp_path, hidden_question_fraction=1.0)
    assert (model / "model.safetensors").exists()
    # The quick run's reference solution is one of its answers, so some examples show it
    # last and have it as their target.
    assert "examples without their question" in caplog.text
    assert "no example has its last attempt" not in caplog.text


def test_warmup_copies_with_the_question_hidden_then_every_last_attempt():
    rows = [
        {"attempts": ["a"], "target": "a"},  # a right attempt kept
        {"attempts": [], "target": "r"},  # no attempt: the reference
        {"attempts": ["a", "b"], "target": "r"},  # a wrong last attempt: the reference
    ]
    assert [r["target"] for r in copy_targets(rows)] == ["a", "r", "b"]
    assert [r["target"] for r in rows] == ["a", "r", "r"]  # the rows themselves unchanged
    [(first, first_rows, first_hidden), (second, second_rows, second_hidden)] = warmup_phases(
        rows, seed=0
    )
    assert (first, second) == ("hidden", "copy")
    assert first_rows == rows and first_hidden.tolist() == [True, False, False]
    assert second_rows == copy_targets(rows) and not second_hidden.any()
    # Only the phases named run, in the same order whatever the order named.
    assert [name for name, *_ in warmup_phases(rows, 0, ("copy",))] == ["copy"]
    assert [name for name, *_ in warmup_phases(rows, 0, ("copy", "hidden"))] == ["hidden", "copy"]


def test_mend_targets_are_the_last_attempts_mended(quick_run, tmp_path):
    workdir, config = _redo_stage(quick_run, tmp_path, "revision_data")
    config.revision_data.target = "mend"
    run_pipeline(config, "ttc-train")
    rows = [
        json.loads(line)
        for path in sorted((workdir / "revision_data" / "chunks").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    grader = Grader()
    with_attempts = [r for r in rows if r["attempts"]]
    assert with_attempts and len(with_attempts) < len(rows)
    mended = 0
    for row in with_attempts:
        assert row["target"] == task.solution_worded_like(row["question"], row["attempts"][-1])
        start, operations = task.parse_question(row["question"])
        _, answer = task.run(start, operations, [False] * len(operations))
        assert grader.correct(row["target"], str(answer))
        mended += row["target"] != row["attempts"][-1]
    # Both kinds are there: right last attempts kept word for word, wrong ones mended.
    assert 0 < mended < len(with_attempts)


def test_chain_examples_mend_each_attempt_for_the_prompt_after_it():
    [problem] = task.problems_of_split(1, 2, 0, "train")
    right = problem.solution
    wrong = right.replace("\\boxed{", "\\boxed{1")
    rows = chain_examples(problem, [[wrong, right], [right]], np.random.default_rng(0), 10)
    by_context = {tuple(r["attempts"]): r["target"] for r in rows}
    assert by_context == {
        (): right,  # before any attempt: the reference
        (wrong,): task.solution_worded_like(problem.problem, wrong),  # the wrong one mended
        (wrong, right): right,  # a right attempt kept word for word
        (right,): right,
    }
    assert by_context[(wrong,)] == right  # the slip was in the answer line only
    # At most max_examples rows, drawn at random, in chain order.
    five = [[f"{problem.solution}\n{i}" for i in range(5)]]
    drawn = chain_examples(problem, five, np.random.default_rng(0), 3)
    assert len(drawn) == 3 and all(len(r["attempts"]) <= 4 for r in drawn)
    lengths = [len(r["attempts"]) for r in drawn]
    assert lengths == sorted(lengths)


def test_mend_repeats_weigh_the_rows_that_mend_a_wrong_attempt():
    [problem] = task.problems_of_split(1, 2, 0, "train")
    right = problem.solution
    wrong = right.replace("\\boxed{", "\\boxed{1")
    rows = chain_examples(problem, [[wrong, right]], np.random.default_rng(0), 10)
    repeated = with_mends_repeated(rows, 3)
    # The first prompt (no attempt) and the one after the right attempt stay single; the
    # one after the wrong attempt comes three times, in place.
    assert [len(r["attempts"]) for r in repeated] == [0, 1, 1, 1, 2]
    assert repeated[1] == repeated[2] == repeated[3] == rows[1]
    assert with_mends_repeated(rows, 1) == rows


def test_on_policy_round_trains_on_the_models_own_chains(quick_run):
    workdir, _ = quick_run
    config = load_config("embedded", "quick")
    rounds = config.revision.on_policy
    rows = [
        json.loads(line)
        for path in sorted((workdir / "revision" / "round1" / "chunks").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    chained = rounds.chains * (rounds.attempts + 1)
    per_question = min(chained, config.revision_data.max_examples_per_question)
    assert len(rows) == 5 * config.revision_data.questions_per_level * per_question
    for row in rows:
        if row["attempts"]:
            assert row["target"] == task.solution_worded_like(row["question"], row["attempts"][-1])
    assert (workdir / "revision" / "round1_checkpoints").is_dir()
    record = json.loads((workdir / "revision" / "model" / "training.json").read_text())
    assert record["config"]["revision"]["on_policy"]["rounds"] == 1


def test_revision_warmup_runs_before_the_training_and_feeds_it(quick_run, tmp_path, caplog):
    workdir, config = _redo_stage(quick_run, tmp_path, "revision")
    config.revision_data.target = "keep"  # the quick data show the reference last at times
    config.revision.warmup.update(epochs=1, learning_rate=1e-2, phases=("hidden", "copy"))
    config.revision.on_policy.rounds = 0
    # The stage's own training stands still, so every change comes from the warm-up.
    config.revision.train.update(epochs=1, learning_rate=0.0, warmup_steps=1)
    caplog.set_level("INFO", logger="ttc_jax")
    run_pipeline(config, "ttc-train")
    for phase in ("hidden", "copy"):
        assert f"revision {phase}: step" in caplog.text
        assert (workdir / "revision" / f"{phase}_checkpoints").is_dir()
    model = load_file(workdir / "revision" / "model" / "model.safetensors")
    policy = load_file(workdir / "policy" / "model" / "model.safetensors")
    assert model.keys() == policy.keys()
    assert any(not np.array_equal(model[name], policy[name]) for name in model)
    # Run again, the finished phases resume at their last step instead of training anew.
    (workdir / "revision" / "done.json").unlink()
    caplog.clear()
    run_pipeline(config, "ttc-train")
    assert "revision hidden: resumed at step" in caplog.text
    assert "revision copy: resumed at step" in caplog.text
    again = load_file(workdir / "revision" / "model" / "model.safetensors")
    assert all(np.array_equal(again[name], model[name]) for name in model)


def test_hidden_questions_without_copies_to_hide_are_named(quick_run, tmp_path, caplog):
    workdir, config = _redo_stage(quick_run, tmp_path, "revision")
    # No example's target is its last attempt: a target no answer has.
    count = 0
    for path in (workdir / "revision_data" / "chunks").glob("*.jsonl"):
        rows = [{**json.loads(line), "target": "a) x=1"} for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        count += len(rows)
    config.revision.hidden_question_fraction = 0.5
    caplog.set_level("INFO", logger="ttc_jax.embedded.revision_stages")
    run_pipeline(config, "ttc-train")
    assert f"0 of {count} examples without their question" in caplog.text
    assert "no example has its last attempt as its target" in caplog.text


@pytest.mark.parametrize(
    "change, message",
    [
        ({"head": "oracle"}, r"prm\.head must be one of .*oracle"),
        ({"extra_layers": 2}, r"keeps its backbone as it is; prm\.extra_layers must be 0"),
        ({"head_fit": {"lr": 0.1}}, r"unknown head-fit settings \['lr'\]"),
    ],
)
def test_a_prm_recipe_that_cannot_be_built_fails_before_any_stage(tmp_path, change, message):
    config = load_config("embedded", "quick")
    config.workdir = str(tmp_path / "run")
    config.prm.update(change)
    with pytest.raises(ValueError, match=message):
        run_pipeline(config, "ttc-train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("stage", ["prm", "verifier"])
def test_unknown_backbone_fails_before_any_stage(tmp_path, stage):
    config = load_config("embedded", "quick")
    config.workdir = str(tmp_path / "run")
    config[stage].backbone = "policy_100x"
    with pytest.raises(ValueError, match=rf"{stage}\.backbone must be one of .*policy_100x"):
        run_pipeline(config, "ttc-train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["context", "target"])
def test_unknown_revision_data_choice_fails_before_any_stage(tmp_path, name):
    config = load_config("embedded", "quick")
    config.workdir = str(tmp_path / "run")
    config.revision_data[name] = "best"
    with pytest.raises(ValueError, match=rf"revision_data\.{name} must be one of .*best"):
        run_pipeline(config, "ttc-train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["extra_layers", "rope_theta"])
def test_negative_revision_setting_fails_before_any_stage(tmp_path, name):
    config = load_config("embedded", "quick")
    config.workdir = str(tmp_path / "run")
    config.revision[name] = -1
    with pytest.raises(ValueError, match=rf"revision\.{name} must be 0 or more, got -1"):
        run_pipeline(config, "ttc-train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_hidden_question_fraction_out_of_range_fails_before_any_stage(tmp_path, fraction):
    config = load_config("embedded", "quick")
    config.workdir = str(tmp_path / "run")
    config.revision.hidden_question_fraction = fraction
    with pytest.raises(
        ValueError, match=rf"hidden_question_fraction must be in \[0, 1\], got {fraction}"
    ):
        run_pipeline(config, "ttc-train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("target", ["keep", "copy"])
def test_keeping_last_attempts_needs_them_in_context(tmp_path, target):
    config = load_config("embedded", "quick")
    config.workdir = str(tmp_path / "run")
    config.revision_data.update(context="incorrect", target=target)
    with pytest.raises(ValueError, match=f"target '{target}' needs context 'any'"):
        run_pipeline(config, "ttc-train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "target, warmup, message",
    [
        ("reference", {"epochs": 1}, r"revision\.warmup needs revision_data\.target in"),
        ("keep", {"epochs": -1}, r"revision\.warmup needs epochs >= 0"),
        ("keep", {"epochs": 1, "learning_rate": 0.0}, r"a positive learning_rate"),
        ("keep", {"epochs": 1, "phases": ("copy", "mix")}, r"warmup\.phases must be one or"),
        ("keep", {"epochs": 1, "phases": ()}, r"warmup\.phases must be one or more of"),
    ],
)
def test_a_warmup_that_cannot_run_fails_before_any_stage(tmp_path, target, warmup, message):
    config = load_config("embedded", "quick")
    config.workdir = str(tmp_path / "run")
    config.revision_data.target = target
    config.revision.warmup.update(warmup)
    with pytest.raises(ValueError, match=message):
        run_pipeline(config, "ttc-train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"rounds": -1}, r"revision\.on_policy needs rounds >= 0"),
        ({"epochs": 0.0}, r"a positive epochs and learning_rate"),
        ({"chains": 0}, r"revision\.on_policy needs chains >= 1 and attempts >= 1"),
        ({"mend_repeats": 0}, r"revision\.on_policy\.mend_repeats must be an integer >= 1"),
    ],
)
def test_on_policy_rounds_that_cannot_run_fail_before_any_stage(tmp_path, change, message):
    config = load_config("embedded", "quick")
    config.workdir = str(tmp_path / "run")
    config.revision.on_policy.update(change)
    with pytest.raises(ValueError, match=message):
        run_pipeline(config, "ttc-train")
    assert not (tmp_path / "run").exists()


def test_evaluation_report(quick_run):
    workdir, log = quick_run
    # Each level logs its parts as they end (a full level takes minutes).
    for part in ("policy samples", "14x policy samples", "PRM scores", "revision chains"):
        assert re.search(f"evaluate: level 2: {part} in \\d+ s", log), part
    report = json.loads((workdir / "export" / "evaluation.json").read_text())
    level = report["levels"]["1"]
    assert 0 <= level["policy"]["pass@1"] <= level["policy"]["pass@2"] <= 1
    assert len(level["revision"]["pass@1_by_attempt"]) == 2
    # The likelihood PRM's own feature, alone, is measured beside it.
    assert "prm_auroc" in level and "prm_likelihood_auroc" in level
    assert "policy level 1 pass@1 >= 0.7" in report["goals"]
