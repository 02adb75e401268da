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
#   launch/tpu_vm.sh log               # the last lines of run.log (worker 0's)
#   launch/tpu_vm.sh fetch REMOTE_DIR LOCAL_DIR   # from worker 0, e.g. fetch embedded_study .
#   launch/tpu_vm.sh delete
#
# Settings (environment): TPU_NAME (default ttc-jax), ZONE (default us-central2-b),
# ACCELERATOR (default v4-8), RUNTIME (the TPU VM image; by default the accelerator's:
# tpu-ubuntu2204-base for v4 and v5p, v2-alpha-tpuv5-lite for v5e, v2-alpha-tpuv6e for v6e;
# v5e and v6e live in other zones than v4, e.g. ZONE=us-west4-a for v5e), SPOT=1 for a spot
# VM, LINES_SHOWN (default 40) for `log`. DRY_RUN=1 prints the gcloud commands instead of
# running them.
#
# One host (v4-8, v5p-8, v5litepod-8, v6e-8): one process shards over the host's chips. A
# slice of several hosts (v4-16, v5p-16, v5litepod-16, v6e-16 and up) runs one process per
# host: setup, run and start go to every worker (--worker=all), and run and start add
# --distributed to ttc-study, ttc-train and ttc-solve, so each worker joins the others as JAX
# detects them and process 0 (worker 0) writes the results (docs/distributed.md). So `log`
# and `fetch` read worker 0. ACCELERATOR must be the slice's for run and start too.
set -euo pipefail

name=${TPU_NAME:-ttc-jax}
zone=${ZONE:-us-central2-b}
accelerator=${ACCELERATOR:-v4-8}
case "$accelerator" in  # each generation's TPU VM image
  v5litepod-*) default_runtime=v2-alpha-tpuv5-lite ;;
  v6e-*) default_runtime=v2-alpha-tpuv6e ;;
  *) default_runtime=tpu-ubuntu2204-base ;;
esac
runtime=${RUNTIME:-$default_runtime}
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

# Whether the slice has several hosts (exits on an accelerator type it does not know). The
# number after the dash is TensorCores (v4, v5p) or chips (v5e, v6e); up to 8 is one host.
multi_host() {
  if ! [[ $accelerator =~ ^(v4|v5p|v5litepod|v6e)-([0-9]+)$ ]]; then
    echo "tpu_vm.sh: unknown ACCELERATOR '$accelerator': use v4-N, v5p-N, v5litepod-N or" \
      "v6e-N (e.g. v4-8, v4-32)" >&2
    exit 2
  fi
  ((BASH_REMATCH[2] > 8))
}

ssh_on() {
  run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker="$1" --command="$2"
}

command=${1:-}
[[ -n $command ]] || usage
shift
case "$command" in
  create)
    multi_host || true # refuses an unknown type before anything runs
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
    ssh_on all "set -e; mkdir -p $remote_dir && tar -xzf ttc_jax.tar.gz -C $remote_dir
command -v python3.11 >/dev/null || { sudo apt-get update -qq \
&& sudo apt-get install -y -qq python3.11 python3.11-venv; }
python3.11 -m venv $venv && $venv/bin/pip install --quiet --upgrade pip
$venv/bin/pip install --quiet 'jax[tpu]' -e './$remote_dir[data]'
$venv/bin/python -c 'import jax; print(jax.devices())'"
    ;;
  run | start)
    (($# > 0)) || usage
    if multi_host && [[ $1 =~ ^ttc-(study|train|solve)$ ]]; then
      set -- "$@" --distributed
    fi
    printf -v remote '%q ' "$@"
    remote="source \$HOME/$venv/bin/activate && cd $remote_dir && ${remote% }"
    if [[ $command == start ]]; then
      # Detached, so a dropped connection does not stop it; ttc-train and ttc-study resume
      # where they stopped if it is started again.
      remote="nohup bash -c $(printf '%q' "$remote") > $remote_dir/run.log 2>&1 < /dev/null &"
    fi
    ssh_on all "$remote"
    ;;
  log)
    ssh_on 0 "tail -n ${LINES_SHOWN:-40} $remote_dir/run.log"
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
