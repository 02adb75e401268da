#!/usr/bin/env bash
# The decode benchmark's GPU goals in one call: our engine with the XLA attention against the
# plain JAX loop, then with the Pallas kernel, at the goal cells (prompt 256: N = 16, 64, 256;
# prompt 1536: N = 256), Llama-3.2-1B shape in bfloat16, best of 2 calls per cell.
#
#   launch/gpu_decode_bench.sh OUT_DIR [ttc-bench decode flags added to every part]
#
# WITH_TRANSFORMERS=1 adds a part with transformers' generate beside ours at prompt 256 (one
# timed call each; its figures on an H100 are already known: 1.2-3.1% of roofline).
# PROFILE=1 adds a part per attention (PROFILE_ATTENTION, default "xla pallas") that traces
# ours at the cells PROFILE_CELLS (default 256x256) into OUT_DIR/traces (read them with
# `ttc-bench trace-summary FILE.trace.json.gz`).
# VARIANT_XLA_FLAGS="..." adds a part: the Pallas cells again with those XLA flags added.
# BUDGET_S=SECONDS skips the optional parts that would start after that many seconds, so a
# run with a hard time limit still ends with its tables.
#
# Compiled programs are cached on disk ($JAX_COMPILATION_CACHE_DIR, by default under /tmp),
# so a later part or a rerun on the same machine skips compiling what an earlier one compiled.
#
# Runs from a checkout on one CUDA GPU whose python3 (or $PYTHON) already has jax with CUDA,
# flax, optax, orbax-checkpoint, transformers, torch and pytest: no virtual environment and no
# network (the benchmark imports nothing else; tests/test_imports.py keeps it so). It first
# runs the Pallas kernel's tests on the GPU. Each part writes its report to OUT_DIR (rewritten
# after every cell, so a part cut short keeps its finished cells) and its log beside it; the
# tables come last in the output. Measured on an H100 (2026-11-26): 155 s for the XLA part
# with the plain loop, 97 s for the Pallas part, 58 s for a traced part of two cells; most of
# it is compiling (one decode program per suffix stage and cell) and drawing random weights.
set -uo pipefail

out=${1:?usage: launch/gpu_decode_bench.sh OUT_DIR [ttc-bench decode flags]}
shift
extra=("$@")  # e.g. --shape smollm2 --new-tokens 8 for a quick check of the script itself
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}  # the interpreter with jax, flax, transformers and torch
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/ttc_jax_compilation_cache}
budget=${BUDGET_S:-0}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem \
  --format=csv >"$out/gpu.csv" 2>&1
"$py" -c "import jax, flax, transformers, torch; print('jax', jax.__version__, jax.devices(),
'flax', flax.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)" \
  | tee "$out/versions.txt"

in_budget() {  # in_budget NAME: false, with a note, once BUDGET_S seconds have passed
  if ((budget > 0 && SECONDS >= budget)); then
    echo "== $1 skipped: ${SECONDS}s passed, BUDGET_S=$budget"
    return 1
  fi
}

part() {  # part NAME [ttc-bench decode flags...]: one benchmark run; a failure ends only it
  local name=$1
  shift
  echo "== $name (at ${SECONDS}s): ttc-bench decode $*"
  "$py" -m ttc_jax.cli.bench decode --json "$out/$name.json" "$@" "${extra[@]}" \
    >"$out/$name.table" 2>"$out/$name.log" || echo "== $name failed: see $name.log"
  tail -n 3 "$out/$name.log"
}

# 0. The fused kernel's tests, compiled for this GPU: float32 products in full precision, so
#    the kernel must match the XLA attention as closely as it does in Pallas' interpreter.
echo "== kernel tests (at ${SECONDS}s): tests/test_pallas_attention.py"
if ! "$py" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
  echo "== kernel tests skipped: JAX sees no GPU"
elif JAX_PLATFORMS=cuda,cpu JAX_DEFAULT_MATMUL_PRECISION=highest "$py" -m pytest -q \
  -p no:cacheprovider tests/test_pallas_attention.py >"$out/kernel_tests.log" 2>&1; then
  tail -n 1 "$out/kernel_tests.log"
else
  echo "== kernel tests FAILED: see kernel_tests.log"
  tail -n 15 "$out/kernel_tests.log"
fi

goals=16x256,64x256,256x256,256x1536
# 1. The 70% goal at prompt 256 and the 2x goal at prompt 1536, against the plain loop.
part xla --cells "$goals" --repeats 2 --skip-transformers
# 2. The same cells with the fused attention kernel.
part pallas --cells "$goals" --repeats 2 --attention pallas --skip-transformers --skip-plain-loop
# 3. Optionally transformers' generate beside ours.
if [[ ${WITH_TRANSFORMERS:-0} == 1 ]] && in_budget transformers; then
  part transformers --cells 16x256,64x256,256x256 --repeats 1 --skip-plain-loop
fi
# 4. Optionally the Pallas part again under more XLA flags, e.g.
#    VARIANT_XLA_FLAGS=--xla_gpu_enable_triton_gemm=false (cuBLAS for every matrix product).
if [[ -n ${VARIANT_XLA_FLAGS:-} ]] && in_budget pallas_variant; then
  echo "== pallas_variant: XLA_FLAGS += $VARIANT_XLA_FLAGS"
  (
    export XLA_FLAGS="${XLA_FLAGS:-} $VARIANT_XLA_FLAGS"
    part pallas_variant --cells "$goals" --repeats 2 --attention pallas --skip-transformers \
      --skip-plain-loop
  )
fi
# 5. Optionally device traces of the PROFILE_CELLS cells, for where the time goes.
if [[ ${PROFILE:-0} == 1 ]]; then
  for attention in ${PROFILE_ATTENTION:-xla pallas}; do
    in_budget "trace_$attention" || continue
    part "trace_$attention" --cells "${PROFILE_CELLS:-256x256}" --repeats 1 --attention "$attention" \
      --skip-transformers --skip-plain-loop --profile "$out/traces"
  done
  for trace in "$out"/traces/*.trace.json.gz; do
    [[ -e $trace ]] || continue
    echo "== $(basename "$trace")"
    # The decode loop's kernels per step (256 new tokens unless the extra flags change it).
    "$py" -m ttc_jax.cli.bench trace-summary "$trace" --top 20 --program jit_extend \
      --steps "${TRACE_STEPS:-256}" || true
  done
fi

for table in "$out"/*.table; do
  echo "== $(basename "$table" .table)"
  cat "$table"
done
echo "== goals (all parts took ${SECONDS}s)"
reports=("$out"/xla.json "$out"/pallas.json)
[[ -e $out/pallas_variant.json ]] && reports+=("$out"/pallas_variant.json)
"$py" -m ttc_jax.cli.bench goals "${reports[@]}" || true
