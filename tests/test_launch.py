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
    # Other commands run as given; one host needs no joining.
    [other] = launch("run", "nproc", env=env).stdout.splitlines()
    assert "--distributed" not in other
    [one_host] = launch("run", "ttc-study", env={"ACCELERATOR": "v5litepod-8"}).stdout.splitlines()
    assert "--distributed" not in one_host and "--worker=all" in one_host.split()


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
