#!/usr/bin/env bash
# ttc_jax on a Slurm GPU cluster: submit a batch job whose tasks (one per GPU, or one per node)
# each run the same command as one JAX process, joined as JAX detects Slurm. Run it from a
# checkout on a shared filesystem with its virtual environment (jax[cuda12] and ttc_jax
# installed: `pip install 'jax[cuda12]' -e '.[data]'`).
#
#   launch/slurm_gpu.sh submit COMMAND...  # sbatch the job, e.g. the main job on 2 nodes:
#   NODES=2 launch/slurm_gpu.sh submit ttc-study --config configs/embedded.py
#   launch/slurm_gpu.sh step COMMAND...    # what the job runs: srun COMMAND on every task
#
# Settings (environment): NODES (default 1), GPUS_PER_NODE (default 8), PROCESS_PER (gpu, the
# default, or node), PARTITION, ACCOUNT, TIME (default 04:00:00), JOB_NAME (default ttc-jax),
# VENV (the virtual environment, default .venv in the checkout), OUTPUT (the job's log,
# default slurm-%j.out in the checkout). DRY_RUN=1 prints the commands instead of running
# them: for submit, the sbatch command and then the srun command the job will run.
#
# PROCESS_PER=gpu runs NODES x GPUS_PER_NODE tasks; JAX gives each the GPU of its local rank
# (every task sees all its node's GPUs). PROCESS_PER=node runs one task per node driving all
# of its GPUs (JAX_LOCAL_DEVICE_IDS lists them: JAX's Slurm detection alone would give it one).
# With more than one task, ttc-study, ttc-train and ttc-solve get --distributed: each task
# joins the others as jax.distributed detects them (SLURM_JOB_ID, SLURM_PROCID, SLURM_NTASKS,
# SLURM_STEP_NODELIST; the coordinator is task 0 on the first node), and process 0 writes
# the results (docs/distributed.md). srun ends the whole step when one task fails.
set -euo pipefail

# Inside the job sbatch runs a copy of this script, so the checkout comes in the environment.
root=${TTC_JAX_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
nodes=${NODES:-1}
gpus=${GPUS_PER_NODE:-8}
per=${PROCESS_PER:-gpu}
venv=${VENV:-$root/.venv}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
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

positive() {  # positive NAME VALUE: exits unless VALUE is a whole number of at least 1
  if ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
    echo "slurm_gpu.sh: $1 must be a whole number of at least 1, not '$2'" >&2
    exit 2
  fi
}

positive NODES "$nodes"
positive GPUS_PER_NODE "$gpus"
case "$per" in
  gpu) tasks_per_node=$gpus ;;
  node) tasks_per_node=1 ;;
  *)
    echo "slurm_gpu.sh: PROCESS_PER must be gpu or node, not '$per'" >&2
    exit 2
    ;;
esac

# srun: every task activates the environment and runs the command from the checkout.
step() {
  if ((nodes * tasks_per_node > 1)) && [[ $1 =~ ^ttc-(study|train|solve)$ ]]; then
    set -- "$@" --distributed
  fi
  local environment=()
  if [[ $per == node ]]; then
    environment=(env "JAX_LOCAL_DEVICE_IDS=$(seq -s, 0 $((gpus - 1)))")
  fi
  run "${environment[@]}" srun --nodes="$nodes" --ntasks-per-node="$tasks_per_node" \
    --kill-on-bad-exit=1 --chdir="$root" \
    bash -c 'source "$0/bin/activate" && exec "$@"' "$venv" "$@"
}

command=${1:-}
[[ -n $command ]] || usage
shift
(($# > 0)) || usage
case "$command" in
  submit)
    exported="ALL,TTC_JAX_ROOT=$root,NODES=$nodes,GPUS_PER_NODE=$gpus,PROCESS_PER=$per"
    exported+=",VENV=$venv"
    options=(--job-name="${JOB_NAME:-ttc-jax}" --nodes="$nodes"
      --ntasks-per-node="$tasks_per_node" --gpus-per-node="$gpus" --time="${TIME:-04:00:00}"
      --chdir="$root" --output="${OUTPUT:-$root/slurm-%j.out}"
      --export="$exported")
    [[ -n ${PARTITION:-} ]] && options+=(--partition="$PARTITION")
    [[ -n ${ACCOUNT:-} ]] && options+=(--account="$ACCOUNT")
    # The job runs this script's step with the same settings.
    run sbatch "${options[@]}" "$root/launch/slurm_gpu.sh" step "$@"
    if [[ ${DRY_RUN:-0} == 1 ]]; then
      step "$@"
    fi
    ;;
  step)
    step "$@"
    ;;
  *)
    echo "slurm_gpu.sh: unknown command '$command'" >&2
    usage
    ;;
esac
