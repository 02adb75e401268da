"""A fused attention piece for GPUs (Pallas on Triton): scores never leave the chip.

The XLA attention of `ttc_jax.engine.kv_cache` writes every score to device memory, reads it
back for the softmax and again for the weighted sum. When N samples x G query heads share one
prompt, those scores outweigh the prompt's keys and values many times over (N=256, G=4 over
a 1,536-token prompt: 12.6 M float32 scores per layer and step against 0.4 M key/value
elements). This kernel computes the same piece (`ttc_jax.models.attention.partial_softmax`
followed by the weighted sum, unnormalised, with its running max and sum) flash-attention
style: each program keeps a block of queries in registers and streams the keys and values
once, in blocks, up to the last written slot.

Layouts are those of the engine's cache: keys transposed [Bt, K, D, S], values [Bt, K, S, D],
queries [Bt, K, M, D] (M query rows per kv head), validity [Bt, S]. Both pieces fit: the shared
prefix (Bt = questions, M = samples x group) and the sample suffixes (Bt = sample rows,
M = group). On a sliding-window layer each query row also has a first slot it may read
([Bt, M]); key blocks before every row's first slot are skipped. On a CPU the kernel runs in
Pallas' interpreter, which is how it is tested.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from ttc_jax.models.attention import MASKED_LOGIT

# Triton's matrix instructions need at least 16 rows; smaller query blocks are padded.
MIN_BLOCK_Q = 16
# Programs to aim for: about two per streaming multiprocessor of an H100 (132). With fewer
# (a shared prompt read by few query blocks), the key range is split among programs and the
# pieces merged afterwards, as flash-decoding does.
TARGET_PROGRAMS = 264


def _piece_kernel(
    q_ref,
    k_ref,
    v_ref,
    valid_ref,
    end_ref,
    first_ref,
    o_ref,
    m_ref,
    l_ref,
    *,
    block_k,
    split_blocks,
):
    q = q_ref[...]  # [block_q, D]
    block_q, head_dim = q.shape
    scale = head_dim**-0.5
    end = end_ref[()]
    first = first_ref[...]  # [block_q]: each query row's first readable slot
    # This program's share of the keys, less the blocks before every row's first slot.
    first_block = jnp.maximum(pl.program_id(3) * split_blocks, first.min() // block_k)

    def body(index, carry):
        attended, peak, total = carry
        slots = pl.ds(index * block_k, block_k)
        keys = k_ref[:, slots]  # [D, block_k]
        # The last block may reach past ``end``: those slots are unwritten or not ours.
        in_range = index * block_k + jnp.arange(block_k) < end
        valid = (valid_ref[slots] != 0) & in_range  # [block_k]
        visible = valid[None, :] & (index * block_k + jnp.arange(block_k) >= first[:, None])
        logits = plgpu.dot(q, keys) * scale  # [block_q, block_k] float32
        logits = jnp.where(visible, logits, MASKED_LOGIT)
        new_peak = jnp.maximum(peak, logits.max(axis=1))
        correction = jnp.exp(peak - new_peak)
        weights = jnp.exp(logits - new_peak[:, None])
        values = v_ref[slots, :]  # [block_k, D]
        attended = attended * correction[:, None] + plgpu.dot(weights.astype(values.dtype), values)
        return attended, new_peak, total * correction + weights.sum(axis=1)

    last_block = jnp.minimum(pl.cdiv(end, block_k), (pl.program_id(3) + 1) * split_blocks)
    init = (
        jnp.zeros((block_q, head_dim), jnp.float32),
        jnp.full((block_q,), MASKED_LOGIT, jnp.float32),
        jnp.zeros((block_q,), jnp.float32),
    )
    attended, peak, total = jax.lax.fori_loop(first_block, last_block, body, init)
    o_ref[...] = attended
    m_ref[...] = peak
    l_ref[...] = total


def block_size(length: int, largest: int = 64) -> int:
    """The largest power of two up to ``largest`` dividing ``length`` (at least 16)."""
    size = largest
    while size > 16 and length % size:
        size //= 2
    if length % size:
        raise ValueError(f"key length {length} is not a multiple of 16")
    return size


@functools.partial(jax.jit, static_argnames=("block_q", "interpret"))
def attention_piece(
    q, keys_t, values, valid, end, first=None, *, block_q: int = 64, interpret: bool = False
):
    """One unnormalised softmax-attention piece over the first ``end`` slots.

    q [Bt, K, M, D], keys_t [Bt, K, D, S], values [Bt, K, S, D], valid [Bt, S] bool,
    end [] int32 (slots at and after ``end`` are never read), first [Bt, M] int32 or None
    (query row m reads no slot before ``first[:, m]``: a sliding window) -> (attended
    [Bt, K, M, D], max [Bt, K, M, 1], sum [Bt, K, M, 1]), all float32, as
    `ttc_jax.models.attention.partial_softmax` and a weighted sum would give.
    """
    batch, kv_heads, rows, head_dim = q.shape
    if not interpret and (head_dim < 16 or head_dim & (head_dim - 1)):
        raise ValueError(f"the kernel needs a power-of-two head_dim >= 16, got {head_dim}")
    length = keys_t.shape[-1]
    block_q = max(MIN_BLOCK_Q, min(block_q, pl.next_power_of_2(rows)))
    padded_rows = pl.cdiv(rows, block_q) * block_q
    q = jnp.pad(q, [(0, 0), (0, 0), (0, padded_rows - rows), (0, 0)])
    if first is None:
        first = jnp.zeros((batch, rows), jnp.int32)
    # Padding rows read nothing, so they never hold back the skipping of early blocks.
    first = jnp.pad(
        first.astype(jnp.int32), [(0, 0), (0, padded_rows - rows)], constant_values=length
    )
    block_k = block_size(length)
    splits = key_splits(batch * kv_heads * (padded_rows // block_q), length // block_k)
    kernel = functools.partial(
        _piece_kernel, block_k=block_k, split_blocks=length // block_k // splits
    )
    grid = (batch, kv_heads, padded_rows // block_q, splits)

    def rows_of(b, h, i, split):
        return b, h, i, 0

    attended, peak, total = pl.pallas_call(
        kernel,
        grid=grid,
        in_specs=[
            pl.BlockSpec((None, None, block_q, head_dim), rows_of),
            pl.BlockSpec((None, None, head_dim, length), lambda b, h, i, split: (b, h, 0, 0)),
            pl.BlockSpec((None, None, length, head_dim), lambda b, h, i, split: (b, h, 0, 0)),
            pl.BlockSpec((None, length), lambda b, h, i, split: (b, 0)),
            pl.BlockSpec((), lambda b, h, i, split: ()),
            pl.BlockSpec((None, block_q), lambda b, h, i, split: (b, i)),
        ],
        out_specs=[
            pl.BlockSpec(
                (None, None, None, block_q, head_dim), lambda b, h, i, split: (b, h, split, i, 0)
            ),
            pl.BlockSpec((None, None, None, block_q), lambda b, h, i, split: (b, h, split, i)),
            pl.BlockSpec((None, None, None, block_q), lambda b, h, i, split: (b, h, split, i)),
        ],
        out_shape=[
            jax.ShapeDtypeStruct((batch, kv_heads, splits, padded_rows, head_dim), jnp.float32),
            jax.ShapeDtypeStruct((batch, kv_heads, splits, padded_rows), jnp.float32),
            jax.ShapeDtypeStruct((batch, kv_heads, splits, padded_rows), jnp.float32),
        ],
        # Triton's parameters select the Triton backend (not Mosaic GPU) on a GPU.
        compiler_params=plgpu.CompilerParams(num_warps=4, num_stages=2),
        interpret=interpret,
        name="attention_piece",
    )(q, keys_t, values, valid.astype(jnp.int8), jnp.asarray(end, jnp.int32), first)
    # Merge the splits' pieces by log-sum-exp; a split past ``end`` holds (0, -1e30, 0) and
    # drops out.
    merged_peak = peak.max(axis=2, keepdims=True)
    scale = jnp.exp(peak - merged_peak)
    attended = (attended * scale[..., None]).sum(axis=2)
    total = (total * scale).sum(axis=2)
    return attended[:, :, :rows], merged_peak[:, :, 0, :rows, None], total[:, :, :rows, None]


def key_splits(programs: int, key_blocks: int) -> int:
    """How many programs share one query block's keys: the largest divisor of ``key_blocks``
    that keeps the grid near `TARGET_PROGRAMS`."""
    limit = max(1, TARGET_PROGRAMS // programs)
    return max(d for d in range(1, key_blocks + 1) if key_blocks % d == 0 and d <= limit)
