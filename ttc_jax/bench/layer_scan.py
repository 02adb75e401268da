"""Layers unrolled or scanned: what each costs to compile and to run.

`Transformer.run_layers` unrolls its layers in Python, so a program's size, and its compile
time, grow with depth. Scanning one layer's body over stacked weights (``jax.lax.scan``)
compiles one layer instead, but each iteration then slices its weights out of the stack.
This benchmark measures both on the same weights in a decode-shaped program (``steps`` steps
of one token for ``rows`` rows in a loop, each step the whole layer stack with the token
attending to itself) and reports trace, compile and run time, so the choice is made on
figures (docs/benchmarks.md, "Layers unrolled or scanned"). Attention over a KV cache is the
same in both and is left out.

Scanning needs layers of one kind: a model whose layers differ in window or RoPE base
(Gemma 3's local and global layers) is refused.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
from flax import nnx

from ttc_jax.lm import LanguageModel
from ttc_jax.models.attention import causal_mask, dense_attention


@dataclasses.dataclass(frozen=True)
class LayerVariantCost:
    name: str  # "unrolled" or "scanned"
    trace_s: float  # tracing and lowering
    compile_s: float  # XLA's compile
    run_ms: float  # one call, best of the repeats
    ms_per_step: float
    max_abs_diff: float  # of the final hidden states against the unrolled program's


def _one_kind_of_layer(lm: LanguageModel) -> None:
    cfg = lm.config
    kinds = {(cfg.window(i), cfg.local_rope(i)) for i in range(cfg.num_layers)}
    if len(kinds) > 1:
        raise ValueError(
            f"layers of {len(kinds)} kinds (window, RoPE base): scanning needs one kind"
        )


def measure_layer_scan(
    lm: LanguageModel, rows: int = 64, steps: int = 32, repeats: int = 3
) -> list[LayerVariantCost]:
    """Times the decode-shaped program with the layers unrolled, then scanned."""
    _one_kind_of_layer(lm)
    if min(rows, steps, repeats) < 1:
        raise ValueError(f"rows, steps and repeats must be >= 1, got {rows}, {steps}, {repeats}")
    model = nnx.merge(lm.graphdef, lm.params)
    layer_def = nnx.split(model.layers[0])[0]
    stacked = jax.tree.map(
        lambda *xs: jnp.stack(xs), *(nnx.split(layer)[1] for layer in model.layers)
    )
    tokens = jnp.ones((rows, 1), jnp.int32)
    positions = jnp.zeros((rows, 1), jnp.int32)
    valid = jnp.ones((rows, 1), bool)
    mask = causal_mask(valid)  # each token sees itself

    def unrolled_step(params, _, tokens):
        return nnx.merge(lm.graphdef, params).hidden_states(tokens, positions, valid)

    def scanned_step(params, stacked, tokens):
        m = nnx.merge(lm.graphdef, params)
        cos, sin = m.rope(positions, lm.config.local_rope(0))

        def layer_body(x, layer_state):
            layer = nnx.merge(layer_def, layer_state)
            q, k, v = layer.attention_inputs(x, cos, sin)
            return layer.finish(x, dense_attention(q, k, v, mask)), None

        x, _ = jax.lax.scan(layer_body, m.embed_tokens(tokens), stacked)
        return m.final_norm(x)

    def program(step):
        def run(params, stacked):
            def body(i, total):
                return total + step(params, stacked, tokens + i)

            zeros = jnp.zeros((rows, 1, lm.config.hidden_size), lm.dtype)
            return jax.lax.fori_loop(0, steps, body, zeros)

        return jax.jit(run, compiler_options=lm.compiler_options)

    results, reference = [], None
    for name, step in (("unrolled", unrolled_step), ("scanned", scanned_step)):
        start = time.perf_counter()
        lowered = program(step).lower(lm.params, stacked)
        traced = time.perf_counter()
        compiled = lowered.compile()
        compiled_at = time.perf_counter()
        times = []
        for _ in range(repeats):
            call = time.perf_counter()
            out = compiled(lm.params, stacked).block_until_ready()
            times.append(time.perf_counter() - call)
        reference = out if reference is None else reference
        best = min(times)
        results.append(
            LayerVariantCost(
                name,
                traced - start,
                compiled_at - traced,
                best * 1e3,
                best * 1e3 / steps,
                float(jnp.max(jnp.abs(out.astype(jnp.float32) - reference))),
            )
        )
    return results


def format_layer_scan(costs: list[LayerVariantCost]) -> str:
    base = costs[0]
    lines = ["| layers | trace s | compile s | ms/step | x unrolled | max abs diff |"]
    lines.append("|---|---|---|---|---|---|")
    for c in costs:
        lines.append(
            f"| {c.name} | {c.trace_s:.2f} | {c.compile_s:.2f} | {c.ms_per_step:.1f} | "
            f"{c.ms_per_step / base.ms_per_step:.2f} | {c.max_abs_diff:.1e} |"
        )
    return "\n".join(lines)
