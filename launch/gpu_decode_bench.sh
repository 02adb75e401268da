#!/usr/bin/env bash
# The decode benchmark's GPU goals in one call: our engine (XLA attention and the Pallas
# kernel), the plain JAX loop and transformers' generate, Llama-3.2-1B shape in bfloat16.
#
#   launch/gpu_decode_bench.sh OUT_DIR [ttc-bench decode flags added to every part]
#
# Runs from a checkout on one CUDA GPU whose python3 already has jax with CUDA, flax, optax,
# orbax-checkpoint, transformers and torch: no virtual environment and no network (the
# benchmark imports nothing else; tests/test_imports.py keeps it so). Each part writes its
# report to OUT_DIR (rewritten after every cell, so a part cut short keeps its finished cells)
# and its log beside it; the tables come last in the output. The parts run in order of what
# the goals need most; budget about 10 minutes on an H100 (compiling dominates the short
# cells), and note that these timings are estimates until a first run replaces them.
set -uo pipefail

out=${1:?usage: launch/gpu_decode_bench.sh OUT_DIR [ttc-bench decode flags]}
shift
extra=("$@")  # e.g. --shape smollm2 --new-tokens 8 for a quick check of the script itself
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}  # the interpreter with jax, flax, transformers and torch

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem \
  --format=csv >"$out/gpu.csv" 2>&1
"$py" -c "import jax, flax, transformers, torch; print('jax', jax.__version__, jax.devices(),
'flax', flax.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)" \
  | tee "$out/versions.txt"

part() {  # part NAME [ttc-bench decode flags...]: one benchmark run; a failure ends only it
  local name=$1
  shift
  echo "== $name: ttc-bench decode $*"
  "$py" -m ttc_jax.cli.bench decode --json "$out/$name.json" "$@" "${extra[@]}" \
    >"$out/$name.table" 2>"$out/$name.log" || echo "== $name failed: see $name.log"
  tail -n 3 "$out/$name.log"
}

# 1. The 70% goal at prompt 256 and the 2x goal at prompt 1536, N=256, against the plain
#    loop in the same process.
part xla_goals --samples 16,64,256 --prompt-lengths 256 --skip-transformers
part xla_long --samples 256 --prompt-lengths 1536 --skip-transformers
# 2. The same cells with the fused attention kernel.
part pallas_goals --attention pallas --samples 16,64,256 --prompt-lengths 256,1536 \
  --skip-transformers --skip-plain-loop
# 3. transformers' generate beside ours (one timed call each; it is 30-100x slower).
part transformers --samples 16,64,256 --prompt-lengths 256 --skip-plain-loop --repeats 1

for table in "$out"/*.table; do
  echo "== $(basename "$table" .table)"
  cat "$table"
done
