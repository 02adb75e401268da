#!/usr/bin/env bash
# A Cloud TPU VM for ttc_jax: create it, copy this checkout to it and install, run a command
# there, fetch a folder back, delete it. Uses the gcloud CLI (installed and logged in, with a
# project set: `gcloud config set project ...`).
#
#   launch/tpu_vm.sh create            # the VM (TPU_NAME, ZONE, ACCELERATOR, RUNTIME, SPOT)
#   launch/tpu_vm.sh setup             # copy the committed checkout, install jax[tpu] and it
#   launch/tpu_vm.sh run COMMAND...    # run in the checkout there, e.g. the main job:
#   launch/tpu_vm.sh run ttc-study --config configs/embedded.py
#   launch/tpu_vm.sh start COMMAND...  # the same, detached; its output goes to run.log there
#   launch/tpu_vm.sh log               # the last lines of run.log
#   launch/tpu_vm.sh fetch REMOTE_DIR LOCAL_DIR   # e.g. fetch embedded_study results/
#   launch/tpu_vm.sh delete
#
# Settings (environment): TPU_NAME (default ttc-jax), ZONE (default us-central2-b),
# ACCELERATOR (default v4-8), RUNTIME (the TPU VM image; default tpu-ubuntu2204-base, the
# image of v4 and v5p; v5e wants v2-alpha-tpuv5-lite, v6e v2-alpha-tpuv6e), SPOT=1 for a spot
# VM, LINES_SHOWN (default 40) for `log`. DRY_RUN=1 prints the gcloud commands instead of
# running them.
#
# One host only: ttc_jax runs in one process and shards over that host's chips (4 chips of
# a v4-8 or v5p-8, 8 of a v5litepod-8 or v6e-8: `make_mesh` sees them all). A slice of
# several hosts (v4-16 and up, v5litepod-16 and up) needs one process per host joined by
# `jax.distributed.initialize`, which ttc_jax does not do yet, so `create` refuses it.
set -euo pipefail

name=${TPU_NAME:-ttc-jax}
zone=${ZONE:-us-central2-b}
accelerator=${ACCELERATOR:-v4-8}
runtime=${RUNTIME:-tpu-ubuntu2204-base}
remote_dir=ttc_jax  # the checkout's folder in the VM user's home
venv=ttc_jax_venv  # its virtual environment, beside it
root=$(cd "$(dirname "$0")/.." && pwd)

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Runs its arguments, or prints them (shell-quoted, one command a line) under DRY_RUN=1.
run() {
  if [[ ${DRY_RUN:-0} == 1 ]]; then
    printf '%q ' "$@" | sed 's/ $//'
    echo
  else
    "$@"
  fi
}

# The number after the last dash of an accelerator type is its TensorCores (v4, v5p) or
# chips (v5e, v6e); up to 8 of either is one host.
check_single_host() {
  local cores=${accelerator##*-}
  if ! [[ $cores =~ ^[0-9]+$ ]]; then
    echo "tpu_vm.sh: ACCELERATOR must look like v4-8 or v5litepod-8, got '$accelerator'" >&2
    exit 2
  fi
  if ((cores > 8)); then
    echo "tpu_vm.sh: $accelerator has several hosts; ttc_jax runs on one host (up to 8 chips)" \
      "for now: use v4-8, v5p-8, v5litepod-8 or v6e-8" >&2
    exit 2
  fi
}

ssh_all() {
  run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="$1"
}

command=${1:-}
[[ -n $command ]] || usage
shift
case "$command" in
  create)
    check_single_host
    spot=()
    [[ ${SPOT:-0} == 1 ]] && spot=(--spot)
    run gcloud compute tpus tpu-vm create "$name" --zone="$zone" \
      --accelerator-type="$accelerator" --version="$runtime" "${spot[@]}"
    ;;
  setup)
    # The committed tree (git archive), so local build outputs and work folders stay here.
    archive=$(mktemp --suffix=.tar.gz)
    trap 'rm -f "$archive"' EXIT
    run git -C "$root" archive --format=tar.gz --output="$archive" HEAD
    run gcloud compute tpus tpu-vm scp "$archive" "$name:ttc_jax.tar.gz" --zone="$zone" \
      --worker=all
    # The TPU VM images are Ubuntu 22.04, whose python3 is 3.10; ttc_jax needs 3.11 or 3.12.
    # jax[tpu] brings libtpu; everything else comes from the package index.
    ssh_all "set -e; mkdir -p $remote_dir && tar -xzf ttc_jax.tar.gz -C $remote_dir
command -v python3.11 >/dev/null || { sudo apt-get update -qq \
&& sudo apt-get install -y -qq python3.11 python3.11-venv; }
python3.11 -m venv $venv && $venv/bin/pip install --quiet --upgrade pip
$venv/bin/pip install --quiet 'jax[tpu]' -e './$remote_dir[data]'
$venv/bin/python -c 'import jax; print(jax.devices())'"
    ;;
  run | start)
    (($# > 0)) || usage
    printf -v remote '%q ' "$@"
    remote="source \$HOME/$venv/bin/activate && cd $remote_dir && ${remote% }"
    if [[ $command == start ]]; then
      # Detached, so a dropped connection does not stop it; ttc-train and ttc-study resume
      # where they stopped if it is started again.
      remote="nohup bash -c $(printf '%q' "$remote") > $remote_dir/run.log 2>&1 < /dev/null &"
    fi
    ssh_all "$remote"
    ;;
  log)
    ssh_all "tail -n ${LINES_SHOWN:-40} $remote_dir/run.log"
    ;;
  fetch)
    (($# == 2)) || usage
    run gcloud compute tpus tpu-vm scp --recurse "$name:$remote_dir/$1" "$2" --zone="$zone" \
      --worker=0
    ;;
  delete)
    run gcloud compute tpus tpu-vm delete "$name" --zone="$zone" --quiet
    ;;
  *)
    echo "tpu_vm.sh: unknown command '$command'" >&2
    usage
    ;;
esac
