"""XLA options for the programs that compute with a model's weights (prefill, decode, PRM
scores, logits), so that a sample depends only on its own inputs.

XLA:CPU picks an implementation for each product and reduction by its shape, and the
implementations round differently:

- it hands some to YNNPACK and keeps others in its own code: the softmax sum over a prompt's
  keys went to YNNPACK at 128 key slots and stayed in XLA's code at 64;
- Eigen, which runs the products YNNPACK does not take, splits a product across its threads
  along the summed axis for some shapes and not for others.

The key slots are the longest prompt of the batch and a product's rows are the lanes of the
call, so on SmolLM2 a question's log-probabilities changed in their last bits with the
questions decoded beside it, and near-ties were sampled differently. Without YNNPACK and
with Eigen on one thread a question's tokens and log-probabilities are bitwise the same alone
or in company, on XLA's default CPU client, at every prompt width and lane count tried
(tests/test_search_smollm2.py; the exceptions measured are in docs/engine.md), and a warm
SmolLM2 call on two cores took 24.9 s against 27.3 s with YNNPACK for products only.
Programs compiled without YNNPACK hold more kernels, hence more of the process's memory
mappings: `ttc_jax.program_cache` keeps a long run under the kernel's limit.
Accelerators keep their own defaults.
"""

from __future__ import annotations

from jax.sharding import Mesh

_CPU_OPTIONS = {
    # An empty list: no operation goes to YNNPACK.
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_cpu_multi_thread_eigen": False,
}


def model_program_options(mesh: Mesh) -> dict[str, str | bool] | None:
    """`jax.jit`'s ``compiler_options`` for a program computing on ``mesh``'s devices: the
    CPU options above on CPU devices, none on accelerators."""
    platform = mesh.devices.flat[0].platform
    return dict(_CPU_OPTIONS) if platform == "cpu" else None
