"""The study on several JAX processes, for real: 2 processes of 4 CPU devices each on
127.0.0.1, joined by `ttc_jax.distributed`, write what one process writes; a killed process
ends the other with a clear error, and a rerun resumes to the rows of an uninterrupted run;
bad settings are clear errors before anything starts."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from ttc_jax import distributed

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("difficulty.jsonl", "summary.json", "strategy_table.json")
# What a process says when it loses the others: ours, or JAX's when its heartbeat sees it.
LOST = ("lost the others", "another task died")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """Every process compiles through one persistent cache, so reruns skip compiling."""
    cache = tmp_path_factory.mktemp("compilation_cache")
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def start(environment, workdirs, outs) -> list[subprocess.Popen]:
    """One process per work directory (one alone, or joined at a free port)."""
    command = [sys.executable, "-m", "tests.distributed_helpers"]
    if len(workdirs) == 1:
        commands = [[*command, str(workdirs[0]), str(outs[0])]]
    else:
        address = f"127.0.0.1:{free_port()}"
        commands = [
            [*command, str(w), str(o), address, str(len(workdirs)), str(k)]
            for k, (w, o) in enumerate(zip(workdirs, outs, strict=True))
        ]
    return [
        subprocess.Popen(
            c, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in commands
    ]


def finish(children: list[subprocess.Popen], timeout: float = 600) -> None:
    try:
        for child in children:
            _, stderr = child.communicate(timeout=timeout)
            assert child.returncode == 0, stderr[-3000:]
    finally:
        stop(children)


def stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


def rows(path: Path) -> list[str]:
    """The rows, in file order, without their wall-clock times."""
    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        row.pop("wall_s")
        out.append(json.dumps(row, sort_keys=True))
    return out


@pytest.fixture(scope="module")
def reference(environment, tmp_path_factory):
    """The tiny study on one process: its work directory and what it ended with."""
    base = tmp_path_factory.mktemp("one_process")
    workdir, out = base / "study", base / "out.json"
    finish(start(environment, [workdir], [out]))
    return workdir, json.loads(out.read_text())


def test_two_processes_write_what_one_writes_and_end_with_its_table(
    reference, environment, tmp_path
):
    ref_dir, ref_out = reference
    # Resuming a study process 0 holds part of (one chunk, and 3 rows of the next): process 1
    # learns the done rows from it.
    workdir, other = tmp_path / "process0", tmp_path / "process1"
    workdir.mkdir()
    shutil.copy(ref_dir / "study.json", workdir)
    done = (ref_dir / "results.jsonl").read_text().splitlines(keepends=True)[:11]
    (workdir / "results.jsonl").write_text("".join(done))
    outs = [tmp_path / "out0.json", tmp_path / "out1.json"]
    finish(start(environment, [workdir, other], outs))

    assert rows(workdir / "results.jsonl") == rows(ref_dir / "results.jsonl")
    for name in OUTPUTS:
        assert (workdir / name).read_text() == (ref_dir / name).read_text(), name
    assert (workdir / "report.md").is_file()
    # Every process ends with the same summary and table; only process 0 writes.
    for out in outs:
        assert json.loads(out.read_text()) == ref_out
    assert not other.exists()


@pytest.mark.parametrize("victim", [1, 0])
def test_a_killed_process_ends_the_other_and_a_rerun_resumes(
    victim, reference, environment, tmp_path
):
    """Killing process 1 fails process 0's next gather; killing process 0, the coordinator,
    makes JAX end process 1. Either way the survivor exits, and one process resumes."""
    ref_dir, ref_out = reference
    workdir = tmp_path / "study"
    outs = [tmp_path / "out0.json", tmp_path / "out1.json"]
    children = start(environment, [workdir, tmp_path / "process1"], outs)
    survivor = children[1 - victim]
    try:
        results = workdir / "results.jsonl"
        deadline = time.time() + 600
        while time.time() < deadline and survivor.poll() is None:
            if results.exists() and results.read_text().count("\n") >= 2:
                break
            time.sleep(0.2)
        assert survivor.poll() is None, "the study ended before it could be killed"
        children[victim].send_signal(signal.SIGKILL)
        killed_at = time.time()
        _, stderr = survivor.communicate(timeout=120)
        waited = time.time() - killed_at
    finally:
        stop(children)
    assert survivor.returncode != 0
    assert any(message in stderr for message in LOST), stderr[-3000:]
    assert waited < 60  # the heartbeat timeout of the helper is 10 s
    assert not any(out.exists() for out in outs)
    assert 0 < len(results.read_text().splitlines()) < len(rows(ref_dir / "results.jsonl"))

    finish(start(environment, [workdir], [outs[0]]))
    assert sorted(rows(results)) == sorted(rows(ref_dir / "results.jsonl"))
    assert json.loads(outs[0].read_text()) == ref_out


# -- bad settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("127.0.0.1:1234", 2, 2), "process_id 2 is outside [0, 2)"),
        (("127.0.0.1:1234", 2, -1), "process_id -1 is outside [0, 2)"),
        (("127.0.0.1:1234", None, 1), "num_processes missing"),
        (("127.0.0.1", 2, 1), "coordinator_address '127.0.0.1' is not HOST:PORT"),
    ],
)
def test_bad_settings_are_refused_before_anything_starts(arguments, message):
    with pytest.raises(distributed.DistributedError, match=re.escape(message)):
        distributed.initialize(*arguments)


def test_detection_outside_a_cluster_says_what_to_give_instead():
    # A fresh process: JAX joins only before its backend starts, which other tests of this
    # process may already have done.
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri")
    }
    probe = (
        "from ttc_jax import distributed\n"
        "try:\n"
        "    distributed.initialize(auto=True, timeout_s=5)\n"
        "except distributed.DistributedError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True, timeout=120
    )
    assert "no cluster detected" in done.stdout, done.stderr


def test_an_unreachable_coordinator_is_an_error_naming_it_within_the_timeout():
    address = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    expected = re.escape(f"could not reach the coordinator at {address} within 1 s")
    with pytest.raises(distributed.DistributedError, match=expected):
        distributed.initialize(address, 2, 1, timeout_s=1)
    assert time.monotonic() - began < 10


def test_nothing_to_join_is_one_process():
    distributed.initialize()
    distributed.initialize("127.0.0.1:1234", 1, 0)
    assert distributed.process_count() == 1 and distributed.is_primary()
    assert distributed.allgather({"a": 1}) == [{"a": 1}]
    assert distributed.broadcast([1, 2]) == [1, 2]


@pytest.mark.parametrize(
    ("command", "arguments", "message"),
    [
        (
            "ttc-study",
            ["--coordinator_address=127.0.0.1:1234", "--num_processes=2", "--process_id=2"],
            "ttc-study: process_id 2 is outside [0, 2) for 2 processes",
        ),
        (
            "ttc-solve",
            ["--num_processes=2", "--question=1+1"],
            "ttc-solve: coordinator_address, process_id missing: give coordinator_address, "
            "num_processes and process_id together, or auto-detection",
        ),
    ],
)
def test_the_commands_refuse_bad_joining_flags_in_one_line(command, arguments, message):
    done = subprocess.run(
        [str(Path(sys.executable).parent / command), "--config=configs/embedded.py", *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [message]


def test_a_single_process_command_refuses_the_joining_flags_in_one_line():
    program = "from ttc_jax.cli import apps; apps.run(lambda argv: print('ran'), 'ttc-x')"
    done = subprocess.run(
        [sys.executable, "-c", program, "--num_processes=2", "--distributed"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == (
        "ttc-x: runs as one process; --num_processes, --distributed is for ttc-study, "
        "ttc-train and ttc-solve"
    )


def test_ttc_bench_refuses_the_joining_flags_in_one_line(capsys):
    from ttc_jax.cli import bench

    for arguments in (["decode", "--num_processes=2"], ["search", "--distributed"]):
        with pytest.raises(SystemExit) as exit_:
            bench.main(arguments)
        flag = arguments[1].split("=")[0]
        assert exit_.value.code == (
            f"ttc-bench: a benchmark times one process's devices; {flag} is for ttc-study and "
            "ttc-train (run ttc-bench on one host)"
        )


def test_deal_share_folders_and_waiting_for_process_0_on_two_processes(environment, tmp_path):
    """Items dealt round-robin and every result on both processes; a folder of process 0
    copied byte for byte to process 1 (process 0's copy left alone); process 1 waits at the
    barrier while process 0 works alone."""
    address = f"127.0.0.1:{free_port()}"
    outs = [tmp_path / "out0.json", tmp_path / "out1.json"]
    command = [sys.executable, "-m", "tests.distributed_helpers", "collectives", str(tmp_path)]
    finish(
        [
            subprocess.Popen(
                [*command, str(out), address, "2", str(k)], cwd=ROOT, env=environment, **PIPES
            )
            for k, out in enumerate(outs)
        ]
    )
    first, second = (json.loads(out.read_text()) for out in outs)
    dealt = [[k, {"k": k, "by": k % 2}] for k in range(5)]
    assert first["dealt"] == second["dealt"] == dealt
    assert first["copied"] is None
    assert second["copied"] == ["empty", "sub/a.bin"] and second["same"]
    assert second["waited"] > 1.5


# -- one mesh across the processes ---------------------------------------------------------


def test_a_global_mesh_splits_the_model_over_processes_and_computes_what_one_process_does(
    environment, tmp_path
):
    """A tiny model on `global_mesh` across 2 processes of 4 devices: its parameters span
    both processes' devices, and every process gets the logits (data 2 within each process,
    the model axis over the processes) and greedy tokens (4 prompts x 2 samples; data 2 within each
    process, model 2 x 2) that one device computes alone."""
    from tests import distributed_helpers
    from ttc_jax.sharding import make_mesh

    address = f"127.0.0.1:{free_port()}"
    outs = [tmp_path / "out0.json", tmp_path / "out1.json"]
    command = [sys.executable, "-m", "tests.distributed_helpers", "global-mesh"]
    finish(
        [
            subprocess.Popen(
                [*command, str(out), address, "2", str(k)],
                cwd=ROOT,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k, out in enumerate(outs)
        ]
    )
    alone = distributed_helpers.tiny_model_outputs(make_mesh(1, 1), make_mesh(1, 1))
    assert alone["qkv_processes"] == [0]
    for out in outs:
        joined = json.loads(out.read_text())
        assert joined["mesh"] == {"data": 2, "model": 4}
        assert joined["qkv_processes"] == [0, 1] and "'model'" in joined["qkv_spec"]
        np.testing.assert_allclose(joined["logits"], alone["logits"], atol=1e-5)
        assert joined["tokens"] == alone["tokens"]


def test_a_global_mesh_needs_a_model_axis_that_splits_over_the_processes():
    from ttc_jax.sharding import global_mesh

    mesh = global_mesh(2, -1)  # one process: a plain mesh of its devices
    assert dict(mesh.shape) == {"data": 2, "model": 4}
    with pytest.raises(ValueError, match="covers all 8 given"):
        global_mesh(2, 2)
    with pytest.raises(ValueError, match="at most one mesh axis"):
        global_mesh(-1, -1)


# -- ttc-train on several processes --------------------------------------------------------

SAMPLING_STAGES = ("prm_labels", "revision_data", "verifier_data")
PIPES = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}


def train_processes(environment, workdir, count: int, *overrides: str) -> list[subprocess.Popen]:
    """``ttc-train`` in quick mode on ``workdir`` as ``count`` joined processes (one alone);
    ``overrides[k]``, if given, is added to process k's command."""
    address = f"127.0.0.1:{free_port()}"
    command = [
        sys.executable, "-m", "ttc_jax.cli.train", "--config=configs/embedded.py:quick",
        f"--config.workdir={workdir}", "--config.max_new_tokens=8",
        "--config.evaluate.questions_per_level=1", "--config.evaluate.revision_length=1",
    ]  # fmt: skip
    children = []
    for k in range(count):
        extra = [overrides[k]] if k < len(overrides) and overrides[k] else []
        if count > 1:
            extra += [f"--coordinator_address={address}", f"--num_processes={count}"]
            extra.append(f"--process_id={k}")
        children.append(subprocess.Popen([*command, *extra], cwd=ROOT, env=environment, **PIPES))
    return children


def evaluation(workdir: Path) -> str:
    """evaluation.json without what differs between runs (the command and its seconds)."""
    report = json.loads((workdir / "export" / "evaluation.json").read_text())
    report.pop("command"), report.pop("seconds")
    return json.dumps(report)


@pytest.mark.slow
def test_ttc_train_on_two_processes_writes_what_one_process_writes(environment, tmp_path):
    """The sampling stages and the evaluation of a quick run (the shipped models standing in
    for its trained ones) on 2 processes: process 0 writes the same chunk files, byte for
    byte, and the same evaluation.json as one process; process 1 writes nothing of its own
    and leaves no scratch folder."""
    from tests.distributed_helpers import shipped_world

    alone, joined = tmp_path / "alone", tmp_path / "joined"
    for workdir in (alone, joined):
        shipped_world(workdir)
    finish(train_processes(environment, alone, 1))
    scratch = set(Path(tempfile.gettempdir()).glob("ttc-train-process1-*"))
    finish(train_processes(environment, joined, 2))
    for stage in SAMPLING_STAGES:
        written = sorted((alone / stage / "chunks").glob("*.jsonl"))
        assert len(written) == 2, stage  # two chunks: one for each process
        for path in written:
            assert (joined / stage / "chunks" / path.name).read_bytes() == path.read_bytes()
        assert (joined / stage / "done.json").is_file()
    assert evaluation(joined) == evaluation(alone)
    assert set(Path(tempfile.gettempdir()).glob("ttc-train-process1-*")) == scratch


def test_processes_with_different_configs_are_refused_at_the_start(environment, tmp_path):
    """Process 1 started with another seed: both processes end in one line before any stage."""
    children = train_processes(
        environment, tmp_path / "run", 2, "--config.stages=data", "--config.seed=1"
    )
    try:
        errors = [child.communicate(timeout=300)[1] for child in children]
    finally:
        stop(children)
    for child, stderr in zip(children, errors, strict=True):
        assert child.returncode == 1, stderr[-3000:]
        assert stderr.strip().splitlines()[-1] == (
            "ttc-train: processes 1 run with another config than process 0: start every "
            "process with the same command and files"
        )
    assert not (tmp_path / "run" / "data").exists()


# -- ttc-solve on one mesh across processes ------------------------------------------------


@pytest.mark.slow
def test_ttc_solve_on_a_global_mesh_of_two_processes_answers_as_one_process(environment, tmp_path):
    """ttc-solve with tiny random checkpoints, its models on one mesh over 2 processes' 8
    devices: process 0 prints the answer, bin, strategy and accounting one process prints
    (wall times aside; the difficulty score to float32 rounding); process 1 prints nothing."""
    from tests import prm_checkpoints, search_helpers
    from tests.study_helpers import load_config
    from ttc_jax.models.export import save_causal_lm

    policy = search_helpers.tiny_policy()
    save_causal_lm(tmp_path / "policy", policy.config, policy.params)
    policy.tokenizer.save_pretrained(tmp_path / "policy")
    prm_checkpoints.write_checkpoint("ttc_value", tmp_path / "prm")
    table = load_config("palm2_math").strategy_table.to_dict()
    table["difficulty"]["samples"] = 2
    table["budgets"] = [2]
    table["table"] = {b: {"2": "best_of_n_weighted"} for b in table["table"]}
    (tmp_path / "table.json").write_text(json.dumps(table))
    command = [
        sys.executable, "-m", "ttc_jax.cli.solve", "--config=configs/palm2_math.py",
        f"--config.models.policy={tmp_path / 'policy'}", f"--config.models.prm={tmp_path / 'prm'}",
        "--config.models.prm_kind=ttc_value", "--config.models.dtype=float32",
        f"--config.strategy_table_file={tmp_path / 'table.json'}",
        "--config.search.prompt.num_shots=0", "--config.search.max_new_tokens=8",
        f"--question={search_helpers.QUESTIONS[0]}", "--budget=2",
    ]  # fmt: skip
    alone = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    joining = [f"--coordinator_address=127.0.0.1:{free_port()}", "--num_processes=2"]
    four_devices = {**environment, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    children = [
        subprocess.Popen(
            [*command, *joining, f"--process_id={k}"], cwd=ROOT, env=four_devices, **PIPES
        )
        for k in range(2)
    ]
    try:
        printed = [child.communicate(timeout=600)[0] for child in children]
    finally:
        stop(children)
    assert [child.returncode for child in children] == [0, 0]
    # The gloo library of CPU collectives prints its connections to stdout too, from other
    # threads: the answer is the JSON object from its first line "{" to its last "}".
    lines = [text.splitlines() for text in printed]
    assert "{" not in lines[1]
    start, end = lines[0].index("{"), len(lines[0]) - lines[0][::-1].index("}")

    def without_times(text: str) -> dict:
        result = json.loads(text)
        for part in ("accounting", "estimate_accounting", "strategy_accounting"):
            result[part].pop("wall_s")
        return result

    joined = without_times("\n".join(lines[0][start:end]))
    expected = without_times(alone.stdout)
    # The PRM's scores are sums split over 8 devices instead of one: equal to float32 rounding.
    assert joined.pop("difficulty_score") == pytest.approx(expected.pop("difficulty_score"))
    assert joined == expected
