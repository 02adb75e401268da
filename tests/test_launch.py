"""launch/tpu_vm.sh: the gcloud commands it builds, and the remote commands it sends run
through a stand-in gcloud that executes them locally in a fake VM home."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "launch" / "tpu_vm.sh"

# Logs its arguments, runs an ssh --command in the fake VM home, copies for scp.
FAKE_GCLOUD = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$GCLOUD_LOG"
for argument in "$@"; do
  case $argument in
    --command=*) cd "$HOME" && exec bash -c "${argument#--command=}" ;;
  esac
done
"""


def launch(*arguments: str, env: dict | None = None, dry_run: bool = True):
    environment = {**os.environ, **(env or {})}
    if dry_run:
        environment["DRY_RUN"] = "1"
    return subprocess.run(
        ["bash", str(SCRIPT), *arguments], capture_output=True, text=True, env=environment
    )


@pytest.fixture
def fake_vm(tmp_path):
    """Environment with the stand-in gcloud first on PATH and a home holding the checkout
    folder and virtual environment that ``setup`` makes."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    (home / "ttc_jax").mkdir(parents=True)
    (home / "ttc_jax_venv" / "bin").mkdir(parents=True)
    (home / "ttc_jax_venv" / "bin" / "activate").write_text("export IN_VENV=yes\n")
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(home),
        "GCLOUD_LOG": str(tmp_path / "gcloud.log"),
    }


def test_create_builds_the_gcloud_command_from_the_settings():
    result = launch("create", env={"ACCELERATOR": "v5litepod-8", "ZONE": "z1", "SPOT": "1"})
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith("gcloud compute tpus tpu-vm create ttc-jax ")
    for flag in ("--zone=z1", "--accelerator-type=v5litepod-8", "--spot"):
        assert flag in line.split(), flag


@pytest.mark.parametrize("accelerator", ["tpu", "v3-8", "v4", "v5litepod-x"])
def test_create_refuses_an_accelerator_type_it_does_not_know(accelerator):
    result = launch("create", env={"ACCELERATOR": accelerator})
    assert result.returncode == 2
    assert f"unknown ACCELERATOR '{accelerator}'" in result.stderr and result.stdout == ""


def test_a_multi_host_slice_runs_on_every_worker_and_reads_worker_0():
    """A v4-32 (4 hosts): every worker sets up and starts the study, each joining the others
    with --distributed; the log and the results come from worker 0, which writes them."""
    env = {"ACCELERATOR": "v4-32", "TPU_NAME": "pod"}
    [create] = launch("create", env=env).stdout.splitlines()
    assert "--accelerator-type=v4-32" in create.split()
    setup = launch("setup", env=env).stdout.splitlines()
    assert all("--worker=all" in line.split() for line in setup[1:])
    [start] = launch(
        "start", "ttc-study", "--config", "configs/embedded.py", env=env
    ).stdout.splitlines()
    words = shlex.split(start)
    assert words[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod"]
    assert "--worker=all" in words
    [remote] = [w.removeprefix("--command=") for w in words if w.startswith("--command=")]
    detached = shlex.split(remote)
    assert detached[:3] == ["nohup", "bash", "-c"]
    assert detached[3].endswith("&& ttc-study --config configs/embedded.py --distributed")
    [log] = launch("log", env=env).stdout.splitlines()
    assert "--worker=0" in log.split()
    [fetch] = launch("fetch", "embedded_study", "results", env=env).stdout.splitlines()
    assert "--worker=0" in fetch.split() and "pod:ttc_jax/embedded_study" in fetch
    [train] = launch(
        "run", "ttc-train", "--config", "configs/embedded.py", env=env
    ).stdout.splitlines()
    assert train.endswith(r"ttc-train\ --config\ configs/embedded.py\ --distributed")
    # Other commands run as given; one host needs no joining.
    [other] = launch("run", "nproc", env=env).stdout.splitlines()
    assert "--distributed" not in other
    [one_host] = launch("run", "ttc-study", env={"ACCELERATOR": "v5litepod-8"}).stdout.splitlines()
    assert "--distributed" not in one_host and "--worker=all" in one_host.split()


def test_a_v5litepod_8_is_one_host_with_the_v5e_image():
    """v5litepod-8 (one host of 8 v5e chips): its own TPU VM image unless RUNTIME says
    otherwise, and the study runs as one process, sharding over the host's chips."""
    env = {"ACCELERATOR": "v5litepod-8", "ZONE": "us-west4-a"}
    [create] = launch("create", env=env).stdout.splitlines()
    assert "--version=v2-alpha-tpuv5-lite" in create.split()
    assert "--accelerator-type=v5litepod-8" in create.split()
    [custom] = launch("create", env={**env, "RUNTIME": "mine"}).stdout.splitlines()
    assert "--version=mine" in custom.split()
    [v4] = launch("create", env={"ACCELERATOR": "v4-32"}).stdout.splitlines()
    assert "--version=tpu-ubuntu2204-base" in v4.split()
    [start] = launch(
        "start", "ttc-study", "--config", "configs/embedded.py", env=env
    ).stdout.splitlines()
    [remote] = [
        w.removeprefix("--command=") for w in shlex.split(start) if w.startswith("--command=")
    ]
    assert shlex.split(remote)[3].endswith("&& ttc-study --config configs/embedded.py")
    [fetch] = launch("fetch", "embedded_study", ".", env=env).stdout.splitlines()
    assert "--worker=0" in fetch.split() and "--zone=us-west4-a" in fetch.split()


def test_unknown_or_missing_commands_print_the_usage():
    for arguments in (["launch"], [], ["run"], ["fetch", "only_one"]):
        result = launch(*arguments)
        assert result.returncode == 2, arguments
        assert "launch/tpu_vm.sh create" in result.stderr, arguments


def test_setup_copies_the_committed_tree_and_installs_with_python_3_11():
    result = launch("setup", env={"TPU_NAME": "mine"})
    assert result.returncode == 0, result.stderr
    archive, copy, install = result.stdout.splitlines()
    assert archive.startswith("git -C") and archive.endswith(" HEAD")
    assert copy.startswith("gcloud compute tpus tpu-vm scp") and "mine:ttc_jax.tar.gz" in copy
    assert "python3.11 -m venv ttc_jax_venv" in install and "jax[tpu]" in install


def test_run_sends_its_words_intact_into_the_checkout_with_the_environment(fake_vm):
    result = launch(
        "run", "bash", "-c", 'echo "$IN_VENV" "$PWD"; printf "[%s]" "$@"', "_", "a b", "c$d'e",
        env=fake_vm, dry_run=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == f"yes {fake_vm['HOME']}/ttc_jax"
    assert second == "[a b][c$d'e]"
    assert "--worker=all" in Path(fake_vm["GCLOUD_LOG"]).read_text()


def test_start_detaches_and_log_shows_its_output(fake_vm):
    result = launch("start", "echo", "started in", "the venv", env=fake_vm, dry_run=False)
    assert result.returncode == 0, result.stderr
    run_log = Path(fake_vm["HOME"]) / "ttc_jax" / "run.log"
    deadline = time.time() + 30
    while time.time() < deadline and not (run_log.exists() and run_log.read_text()):
        time.sleep(0.1)
    assert run_log.read_text() == "started in the venv\n"
    shown = launch("log", env=fake_vm, dry_run=False)
    assert shown.stdout == "started in the venv\n"


# -- launch/slurm_gpu.sh -----------------------------------------------------------------------

SLURM_SCRIPT = SCRIPT.parent / "slurm_gpu.sh"

# sbatch: takes the settings of --export, runs a copy of the script (as Slurm does) in the
# --chdir folder as job FAKE_JOB_ID.
FAKE_SBATCH = """#!/usr/bin/env bash
printf 'sbatch %s\\n' "$*" >> "$SLURM_LOG"
while [[ $1 == --* ]]; do
  case $1 in
    --export=*) IFS=, read -ra pairs <<< "${1#--export=}"
      for pair in "${pairs[@]}"; do [[ $pair == ALL ]] || export "$pair"; done ;;
    --chdir=*) cd "${1#--chdir=}" ;;
  esac
  shift
done
cp "$1" "$SLURM_SPOOL/job_script"
shift
SLURM_JOB_ID=$FAKE_JOB_ID exec bash "$SLURM_SPOOL/job_script" "$@"
"""

# srun: --nodes x --ntasks-per-node tasks on this machine, each with the variables JAX's Slurm
# detection reads (the first node, the coordinator's, is 127.0.0.1), output to task_K.log.
FAKE_SRUN = """#!/usr/bin/env bash
printf 'srun %s\\n' "$*" >> "$SLURM_LOG"
nodes=1 per=1
while [[ $1 == --* ]]; do
  case $1 in
    --nodes=*) nodes=${1#*=} ;;
    --ntasks-per-node=*) per=${1#*=} ;;
    --chdir=*) cd "${1#--chdir=}" ;;
  esac
  shift
done
n=$((nodes * per)) pids=()
for ((k = 0; k < n; k++)); do
  SLURM_PROCID=$k SLURM_LOCALID=$((k % per)) SLURM_NODEID=$((k / per)) SLURM_NTASKS=$n \\
    SLURM_STEP_NODELIST=127.0.0.1 SLURM_STEP_NUM_NODES=$nodes \\
    "$@" > "$SLURM_SPOOL/task_$k.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""


def slurm(*arguments: str, env: dict | None = None, dry_run: bool = True):
    environment = {**os.environ, **(env or {})}
    if dry_run:
        environment["DRY_RUN"] = "1"
    return subprocess.run(
        ["bash", str(SLURM_SCRIPT), *arguments], capture_output=True, text=True, env=environment
    )


def test_a_two_node_slurm_job_runs_one_joining_process_per_gpu():
    """2 nodes of 4 GPUs: sbatch asks for 4 tasks a node, and the job's srun runs the study
    on all 8, each joining with --distributed as JAX detects Slurm (one GPU each)."""
    env = {"NODES": "2", "GPUS_PER_NODE": "4", "PARTITION": "a100", "VENV": "/opt/env"}
    result = slurm("submit", "ttc-study", "--config", "configs/embedded.py", env=env)
    assert result.returncode == 0, result.stderr
    sbatch, srun = (shlex.split(line) for line in result.stdout.splitlines())
    assert sbatch[0] == "sbatch"
    for option in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=a100"):
        assert option in sbatch, option
    [export] = [w for w in sbatch if w.startswith("--export=")]
    assert export.split(",")[0] == "--export=ALL" and "NODES=2" in export.split(",")
    script = sbatch.index(str(SLURM_SCRIPT))
    assert sbatch[script + 1 :] == ["step", "ttc-study", "--config", "configs/embedded.py"]
    assert srun[:4] == ["srun", "--nodes=2", "--ntasks-per-node=4", "--kill-on-bad-exit=1"]
    assert srun[-5:] == [
        "/opt/env",
        "ttc-study",
        "--config",
        "configs/embedded.py",
        "--distributed",
    ]
    # Inside the job the step prints the same srun command.
    [step] = slurm(
        "step", "ttc-study", "--config", "configs/embedded.py", env=env
    ).stdout.splitlines()
    assert shlex.split(step) == srun


def test_one_process_per_node_sees_all_its_gpus_and_one_task_needs_no_joining():
    env = {"NODES": "2", "GPUS_PER_NODE": "8", "PROCESS_PER": "node"}
    _, srun = slurm(
        "submit", "ttc-train", "--config", "configs/embedded.py", env=env
    ).stdout.splitlines()
    words = shlex.split(srun)
    assert words[:3] == ["env", "JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7", "srun"]
    assert "--ntasks-per-node=1" in words and words[-1] == "--distributed"
    _, alone = slurm("submit", "ttc-study", env={"PROCESS_PER": "node"}).stdout.splitlines()
    assert "--distributed" not in alone and "--ntasks-per-node=1" in alone
    _, solve = slurm("submit", "ttc-solve", "--question=q", env={"NODES": "2"}).stdout.splitlines()
    assert shlex.split(solve)[-2:] == ["--question=q", "--distributed"]
    _, other = slurm("submit", "nvidia-smi", env={"NODES": "2"}).stdout.splitlines()
    assert shlex.split(other)[-1] == "nvidia-smi"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NODES": "0"}, "NODES must be a whole number of at least 1, not '0'"),
        ({"GPUS_PER_NODE": "x"}, "GPUS_PER_NODE must be a whole number"),
        ({"PROCESS_PER": "host"}, "PROCESS_PER must be gpu or node, not 'host'"),
    ],
)
def test_slurm_settings_are_checked_before_submitting(env, message):
    result = slurm("submit", "ttc-study", env=env)
    assert result.returncode == 2 and message in result.stderr and result.stdout == ""
    for arguments in ([], ["submit"], ["cancel", "x"]):
        result = slurm(*arguments)
        assert result.returncode == 2 and "slurm_gpu.sh submit" in result.stderr, arguments


def free_slurm_job_id() -> int:
    """A job id whose coordinator port (JAX's rule: 61440 + id % 4096) is free here."""
    import socket

    for port in range(61440 + os.getpid() % 4000, 65536):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return 100_000 + port - 61440
    raise RuntimeError("no free port")


# Joins as JAX detects Slurm, then gathers every process's index through a JAX collective.
SLURM_PROBE = """
import os, sys
from ttc_jax import distributed
distributed.initialize(auto=True, timeout_s=60)
print(distributed.process_index(), distributed.process_count(), distributed.allgather(
    distributed.process_index()), os.environ.get("JAX_LOCAL_DEVICE_IDS"), sys.prefix)
"""


def test_a_submitted_job_joins_its_tasks_as_jax_detects_slurm(tmp_path):
    """For real, through stand-in sbatch and srun that start the tasks on this machine: a
    2-node job, one process per node, whose tasks join by JAX's Slurm detection alone and
    run a collective, inside the checkout's virtual environment."""
    import sys

    bin_dir, spool = tmp_path / "bin", tmp_path / "spool"
    bin_dir.mkdir()
    spool.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JAX_COORDINATOR"))
    }
    env = {
        **environment,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_LOG": str(tmp_path / "slurm.log"),
        "SLURM_SPOOL": str(spool),
        "FAKE_JOB_ID": str(free_slurm_job_id()),
        "NODES": "2",
        "GPUS_PER_NODE": "2",
        "PROCESS_PER": "node",
        "VENV": sys.prefix,
    }
    result = subprocess.run(
        ["bash", str(SLURM_SCRIPT), "submit", "python", "-c", SLURM_PROBE],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180,
    )  # fmt: skip
    logs = [(spool / f"task_{k}.log").read_text() for k in range(2)]
    assert result.returncode == 0, (result.stderr, logs)
    for k, log in enumerate(logs):
        assert log.splitlines()[-1] == f"{k} 2 [0, 1] 0,1 {sys.prefix}", log
    calls = Path(env["SLURM_LOG"]).read_text()
    assert calls.startswith("sbatch ") and "\nsrun --nodes=2 --ntasks-per-node=1 " in calls
