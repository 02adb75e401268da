"""KV cache with a shared prompt prefix: one stored copy of each prompt, N sample suffixes.

Layout, per layer, for B questions of N samples each (R = B * N sample rows, question-major):
  prefix_k [B, K, D, P], prefix_v [B, K, P, D]   the prompt of each question, stored once
  suffix_k [R, K, D, S], suffix_v [R, K, S, D]   the tokens each sample appended after it
and ``suffix_len`` [B, N]: the tokens each sample has appended, which is also the slot its next
token goes to.

Keys are stored transposed (head_dim before positions) and heads before positions so that both
attention products (scores = q . k, output = weights . v) are batched matrix products in their
canonical form, with two batch axes of real extent: XLA then neither transposes a copy of the
cache in every step nor, because of a unit axis, duplicates the in-place cache update (which
costs a copy of the whole suffix per layer and step).

A query of sample (b, n) attends to ``prefix[b]`` and its own suffix row separately; the two
softmax pieces are merged exactly by log-sum-exp (`ttc_jax.models.attention.merge_partials`).
Reading the prompt once per question instead of once per sample is what makes N = 256 samples
of a 1.5k-token prompt cheap.

On a sliding layer (`ModelConfig.window`) a query sees only keys fewer than ``W`` positions
back, across the prefix and its suffix alike: each query row gets the first prefix slot and
the first suffix slot it may read (`_window_starts`), which both attention implementations
honour, so a sample sees exactly what a full forward pass over its tokens would show it.

Every sample writes at its own position: a sample with nothing to add (finished, or paused at a
step boundary while others are still writing) writes nothing that counts, so a suffix never
holds holes and each sample's slots are exactly its tokens, however different the lengths of
the reasoning steps that search extends samples by. Writes are scatters at each row's
position; the query of slot s sees its row's slots up to s.

The suffix is allocated in stages (`stage_capacity`) and grown by `grow` between decode loops,
and every step reads the whole allocated suffix. A fixed-size read keeps the decode step free of
inner loops with a data-dependent trip count (each costs a device-to-host round trip per
iteration on a GPU), while the staging keeps the read close to the longest suffix.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import PartitionSpec

from ttc_jax.models.attention import (
    causal_mask,
    dense_attention,
    merge_partials,
    partial_softmax,
    window_mask,
)
from ttc_jax.models.transformer import Transformer
from ttc_jax.sharding import ShardingRules

# Suffix slots of the first allocation stage (see `stage_capacity`).
FIRST_STAGE = 64

# How the attention pieces are computed: "xla" (einsums, any backend) or "pallas" (the fused
# kernel of `ttc_jax.engine.pallas_attention`, for GPUs; one-token steps only, longer appends
# fall back to "xla").
ATTENTION_IMPLEMENTATIONS = ("xla", "pallas")


@struct.dataclass
class KVCache:
    prefix_k: tuple[jax.Array, ...]  # per layer [B, K, D, P]
    prefix_v: tuple[jax.Array, ...]  # per layer [B, K, P, D]
    prefix_valid: jax.Array  # [B, P] bool
    prefix_len: jax.Array  # [B] int32: real prompt tokens in the prefix
    suffix_k: tuple[jax.Array, ...]  # per layer [R, K, D, S], R = B * N
    suffix_v: tuple[jax.Array, ...]  # per layer [R, K, S, D]
    suffix_len: jax.Array  # [B, N] int32: tokens appended so far = the next slot to write

    # Logical axes of each field (for shardings); sample rows are split like the questions.
    LOGICAL_AXES: ClassVar[dict[str, tuple[str | None, ...]]] = {
        "prefix_k": ("batch", "kv_heads", "head_dim", "seq"),
        "prefix_v": ("batch", "kv_heads", "seq", "head_dim"),
        "prefix_valid": ("batch", "seq"),
        "prefix_len": ("batch",),
        "suffix_k": ("batch", "kv_heads", "head_dim", "seq"),
        "suffix_v": ("batch", "kv_heads", "seq", "head_dim"),
        "suffix_len": ("batch", "samples"),
    }

    @property
    def num_samples(self) -> int:
        return self.suffix_len.shape[1]

    @property
    def capacity(self) -> int:
        """Suffix slots allocated now (`grow` adds more)."""
        return self.suffix_k[0].shape[-1] if self.suffix_k else 0

    def suffix_valid(self) -> jax.Array:
        """[R, S] bool: the slots each sample row has written."""
        lengths = self.suffix_len.reshape(-1, 1)
        return jnp.arange(self.capacity) < lengths

    def kv_bytes(self, capacity: int | None = None) -> dict[str, int]:
        """Bytes held by the prefix and the suffix parts of the cache; with ``capacity``, the
        bytes it will hold once grown to that many suffix slots."""

        def size(arrays):
            return sum(a.size * a.dtype.itemsize for a in arrays)

        suffix = size(self.suffix_k + self.suffix_v)
        if capacity is not None:
            suffix = suffix // self.capacity * capacity
        return {"prefix": size(self.prefix_k + self.prefix_v), "suffix": suffix}


def stage_capacity(needed: int, limit: int, first: int = FIRST_STAGE) -> int:
    """Suffix slots to allocate so that ``needed`` fit, capped at ``limit``.

    Stages are ``first`` x 1, 2, 3, 4, 6, 8, 12, 16, 24, ...: each step reads every allocated
    slot, so finer stages waste less reading and coarser ones compile fewer decode programs.
    Linear up to 4 x ``first``, then about 1.4x a stage: 12 stages reach 4,096 slots from 64.
    """
    if needed < 1 or limit < 1 or first < 1:
        raise ValueError(f"needed, limit and first must be >= 1, got {needed}, {limit}, {first}")
    size = first
    while size < needed:
        multiple = size // first
        if multiple < 4:
            size += first
        elif multiple & (multiple - 1) == 0:  # a power of two: x1.5 next
            size += size // 2
        else:
            size += size // 3
    return min(size, limit)


def prefill(model: Transformer, tokens, valid, num_samples: int, capacity: int) -> KVCache:
    """Runs prompts [B, P] (left-padded; ``valid`` marks real tokens) into a fresh cache with
    an empty suffix of ``capacity`` slots for each of ``num_samples`` samples."""
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    causal = causal_mask(valid)

    def attend(layer, _, q, k, v):
        window = model.config.window(layer)
        mask = causal if window is None else causal & window_mask(positions, positions, window)
        return dense_attention(q, k, v, mask), (k, v)

    _, prompt_kv = model.run_layers(tokens, positions, attend)
    keys, values = [k for k, _ in prompt_kv], [v for _, v in prompt_kv]
    b = tokens.shape[0]
    cfg = model.config
    dtype = keys[0].dtype if keys else jnp.float32
    rows, kv_heads = b * num_samples, cfg.num_kv_heads
    empty_k = jnp.zeros((rows, kv_heads, cfg.head_dim, capacity), dtype)
    empty_v = jnp.zeros((rows, kv_heads, capacity, cfg.head_dim), dtype)
    return KVCache(
        prefix_k=tuple(k.transpose(0, 2, 3, 1) for k in keys),
        prefix_v=tuple(v.swapaxes(1, 2) for v in values),
        prefix_valid=valid,
        prefix_len=jnp.sum(valid, axis=1).astype(jnp.int32),
        suffix_k=tuple(empty_k for _ in keys),
        suffix_v=tuple(empty_v for _ in keys),
        suffix_len=jnp.zeros((b, num_samples), jnp.int32),
    )


def constrain(cache: KVCache, mesh, rules: ShardingRules) -> KVCache:
    """The cache with each field's sharding pinned (`KVCache.LOGICAL_AXES`) inside jit."""

    def pin(x, axes):
        return jax.lax.with_sharding_constraint(x, rules.sharding(mesh, axes, x.shape))

    fields = {}
    for name, axes in KVCache.LOGICAL_AXES.items():
        value = getattr(cache, name)
        fields[name] = (
            tuple(pin(x, axes) for x in value) if isinstance(value, tuple) else pin(value, axes)
        )
    return cache.replace(**fields)


@struct.dataclass
class LaneSuffix:
    """The suffix rows of L lanes, gathered from a cache for one decode call (`gather_lanes`).

    A decode call computes only the sample rows that can advance: their ids are gathered into
    L lanes, decoded there, and scattered back (`scatter_lanes`). The prefix stays in the
    cache, one copy per question, read by every lane of that question.
    """

    rows: jax.Array  # [L] int32: the sample row of each lane; R (one past the last) pads
    suffix_k: tuple[jax.Array, ...]  # per layer [L, K, D, S]
    suffix_v: tuple[jax.Array, ...]  # per layer [L, K, S, D]
    suffix_len: jax.Array  # [L] int32


def gather_lanes(cache: KVCache, rows: jax.Array) -> LaneSuffix:
    """The suffixes of sample rows ``rows`` [L] (a row id of R or more pads: it reads the
    last row and writes nothing back)."""
    safe = jnp.minimum(rows, cache.suffix_len.size - 1)
    return LaneSuffix(
        rows=rows,
        suffix_k=tuple(jnp.take(x, safe, axis=0) for x in cache.suffix_k),
        suffix_v=tuple(jnp.take(x, safe, axis=0) for x in cache.suffix_v),
        suffix_len=jnp.take(cache.suffix_len.reshape(-1), safe),
    )


def constrain_lanes(lanes: LaneSuffix, rules: ShardingRules | None) -> LaneSuffix:
    """The lanes' suffixes pinned to the mesh in context: lanes split like sample rows, heads
    like the cache's."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return lanes
    rules = rules or ShardingRules()

    def pin(x, axes):
        return jax.lax.with_sharding_constraint(x, rules.spec(axes, x.shape, mesh))

    return lanes.replace(
        rows=pin(lanes.rows, ("batch",)),
        suffix_k=tuple(pin(x, KVCache.LOGICAL_AXES["suffix_k"]) for x in lanes.suffix_k),
        suffix_v=tuple(pin(x, KVCache.LOGICAL_AXES["suffix_v"]) for x in lanes.suffix_v),
        suffix_len=pin(lanes.suffix_len, ("batch",)),
    )


def scatter_lanes(cache: KVCache, lanes: LaneSuffix) -> KVCache:
    """``cache`` with the lanes' suffixes written back to their rows (padding lanes dropped)."""

    def put(x, lane_x):
        return x.at[lanes.rows].set(lane_x, mode="drop")

    return cache.replace(
        suffix_k=tuple(map(put, cache.suffix_k, lanes.suffix_k)),
        suffix_v=tuple(map(put, cache.suffix_v, lanes.suffix_v)),
        suffix_len=put(cache.suffix_len.reshape(-1), lanes.suffix_len).reshape(
            cache.suffix_len.shape
        ),
    )


def append(
    model: Transformer,
    cache: KVCache,
    tokens,
    valid,
    attention: str = "xla",
    rules: ShardingRules | None = None,
) -> tuple[jax.Array, KVCache]:
    """Appends tokens [B, N, T] to every sample's suffix, each at its own position.

    ``valid`` [B, N, T] marks, per sample, a prefix of the T tokens as real (a sample adding
    fewer, or none, pads the rest); each sample's real tokens go to its slots
    ``suffix_len .. suffix_len + count - 1``. Returns the final hidden states [B, N, T, E] and
    the cache. The caller keeps ``suffix_len + count <= capacity`` (`grow` first if needed);
    padding that would land past the capacity is dropped. ``attention``: one of
    `ATTENTION_IMPLEMENTATIONS`. ``rules`` (default `ShardingRules()`) says how the cache is
    split over the mesh in context; the Pallas kernel runs on each device's share.
    """
    b, n, t = tokens.shape
    suffix = LaneSuffix(None, cache.suffix_k, cache.suffix_v, cache.suffix_len.reshape(b * n))
    hidden, suffix = _append_rows(
        model, cache, suffix, tokens.reshape(b * n, t), valid.reshape(b * n, t), attention, rules
    )
    cache = cache.replace(
        suffix_k=suffix.suffix_k,
        suffix_v=suffix.suffix_v,
        suffix_len=suffix.suffix_len.reshape(b, n),
    )
    return hidden.reshape(b, n, t, -1), cache


def append_lanes(
    model: Transformer,
    cache: KVCache,
    lanes: LaneSuffix,
    tokens,
    valid,
    attention: str = "xla",
    rules: ShardingRules | None = None,
) -> tuple[jax.Array, LaneSuffix]:
    """`append` for the rows gathered in ``lanes``: tokens and ``valid`` are [L, T]; the
    prefix is read from ``cache`` (one copy per question), the suffixes from the lanes.
    Returns hidden states [L, T, E] and the lanes' new suffixes."""
    return _append_rows(model, cache, lanes, tokens, valid, attention, rules)


def _append_rows(model, cache: KVCache, suffix: LaneSuffix, tokens, valid, attention, rules):
    """The body of `append` and `append_lanes` over R' rows: every sample row of the cache in
    order (``suffix.rows`` None), or the lanes listed in ``suffix.rows``.

    The prefix part of attention runs on the grid of every question's N samples, so that each
    prompt is read once for all its samples: lanes scatter their queries into that grid (rows
    without a lane hold zeros) and gather their pieces back.
    """
    if attention not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention must be one of {ATTENTION_IMPLEMENTATIONS}, got {attention!r}")
    r, t = tokens.shape
    num_questions = cache.prefix_len.shape[0]
    grid_rows = cache.suffix_len.size  # B x N sample rows
    samples = grid_rows // num_questions
    rows = suffix.rows
    fused = attention == "pallas" and t == 1
    start = suffix.suffix_len  # [R']: each row's first new slot
    slots = start[:, None] + jnp.arange(t)  # [R', T]
    question = (jnp.arange(r) if rows is None else jnp.minimum(rows, grid_rows - 1)) // samples
    prefix_len = cache.prefix_len[question]  # [R']
    positions = prefix_len[:, None] + slots  # [R', T]
    capacity = suffix.suffix_k[0].shape[-1] if suffix.suffix_k else 0
    # [R', 1, 1, T, S]: the query at slot start + i sees its row's slots up to its own.
    suffix_mask = (jnp.arange(capacity) <= slots[:, :, None])[:, None, None]
    prefix_mask = cache.prefix_valid[:, None, None, :]  # [B, 1, 1, P]
    row_ids = jnp.arange(r)[:, None]
    piece = _piece_per_device(rules or ShardingRules()) if fused else None
    cfg = model.config

    def to_grid(x):
        """[R', ...] per row -> [B * N, ...] per sample row of the grid (zeros without a lane)."""
        if rows is None:
            return x
        return jnp.zeros((grid_rows, *x.shape[1:]), x.dtype).at[rows].set(x, mode="drop")

    def from_grid(x):
        return x if rows is None else jnp.take(x, jnp.minimum(rows, grid_rows - 1), axis=0)

    starts = {}
    for window in {cfg.window(i) for i in range(cfg.num_layers)} - {None}:
        prefix_start, suffix_start = _window_starts(cache, positions, prefix_len, window)
        starts[window] = (to_grid(prefix_start).reshape(num_questions, samples, t), suffix_start)

    def attend(layer, layer_cache, q, k, v):
        kv_heads, head_dim = k.shape[-2], k.shape[-1]
        group = q.shape[2] // kv_heads
        # New keys and values [R', T, K, D] scattered to each row's slots (in place on a
        # donated cache); slots past the capacity (padding only) are dropped.
        layer_k, layer_v = layer_cache
        layer_k = layer_k.at[row_ids, :, :, slots].set(k, mode="drop")
        layer_v = layer_v.at[row_ids, :, slots, :].set(v, mode="drop")
        grouped = q.reshape(r, t, kv_heads, group, head_dim)
        window_starts = starts.get(cfg.window(layer))
        if fused:
            prefix = _fused_prefix(piece, to_grid(grouped), cache, layer, window_starts)
            parts = [
                tuple(from_grid(x) for x in prefix),
                _fused_suffix(piece, grouped, layer_k, layer_v, start, window_starts),
            ]
        else:
            layer_prefix_mask, layer_suffix_mask = prefix_mask, suffix_mask
            if window_starts is not None:
                prefix_start, suffix_start = window_starts
                layer_prefix_mask = prefix_mask & _from_slot(
                    prefix_start, group, cache.prefix_valid.shape[1]
                )
                layer_suffix_mask = suffix_mask & (
                    jnp.arange(capacity) >= suffix_start[:, None, None, :, None]
                )
            prefix = _prefix_part(
                to_grid(grouped), cache.prefix_k[layer], cache.prefix_v[layer], layer_prefix_mask
            )
            parts = [
                tuple(from_grid(x) for x in prefix),
                _suffix_part(grouped, layer_k, layer_v, layer_suffix_mask),
            ]
        out = merge_partials(parts)  # [R', K, G * T, D]
        out = out.reshape(r, kv_heads, group, t, head_dim).transpose(0, 3, 1, 2, 4)
        return out.reshape(r, t, -1, head_dim).astype(q.dtype), (layer_k, layer_v)

    layer_caches = zip(suffix.suffix_k, suffix.suffix_v, strict=True)
    hidden, layer_caches = model.run_layers(
        tokens, positions.astype(jnp.int32), attend, layer_caches
    )
    suffix = suffix.replace(
        suffix_k=tuple(k for k, _ in layer_caches),
        suffix_v=tuple(v for _, v in layer_caches),
        suffix_len=suffix.suffix_len + jnp.sum(valid, axis=-1).astype(jnp.int32),
    )
    return hidden, suffix


def _window_starts(cache: KVCache, positions, prefix_len, window: int):
    """The first prefix slot and the first suffix slot each query may read on a layer with
    this window: keys at positions after ``query position - window``.

    ``positions`` [R', T] are the queries' (of rows whose prompts hold ``prefix_len`` [R']
    tokens). Prefix slot p holds position
    ``p - (P - prefix_len)`` (prompts are left-padded), suffix slot s position
    ``prefix_len + s``. Returns ([R', T], [R', T]) int32.
    """
    lowest = positions - window + 1  # the earliest position a query sees
    padding = (cache.prefix_valid.shape[1] - prefix_len)[:, None]
    prefix_start = lowest + padding
    suffix_start = lowest - prefix_len[:, None]
    return prefix_start.astype(jnp.int32), suffix_start.astype(jnp.int32)


def _query_starts(prefix_start, group: int):
    """Prefix starts [B, N, T] -> [B, N * G * T], one per query as `_prefix_queries` orders
    them."""
    b, n, t = prefix_start.shape
    return jnp.broadcast_to(prefix_start[:, :, None, :], (b, n, group, t)).reshape(b, -1)


def _from_slot(prefix_start, group: int, width: int):
    """Prefix mask [B, 1, N * G * T, P]: the slots each query may read, those from its start
    on."""
    return jnp.arange(width) >= _query_starts(prefix_start, group)[:, None, :, None]


def _prefix_queries(grouped, num_questions):
    """Queries [R, T, K, G, D] -> [B, K, N * G * T, D]: all of a question's queries per kv head."""
    r, t, kv_heads, group, head_dim = grouped.shape
    n = r // num_questions
    queries = grouped.reshape(num_questions, n, t, kv_heads, group, head_dim)
    queries = queries.transpose(0, 3, 1, 4, 2, 5)
    return queries.reshape(num_questions, kv_heads, n * group * t, head_dim)


def _prefix_rows(x, num_rows):
    """A prefix piece [B, K, N * M, X] -> [R, K, M, X], M = G * T queries per row."""
    b, kv_heads, queries, width = x.shape
    n = num_rows // b
    x = x.reshape(b, kv_heads, n, queries // n, width).transpose(0, 2, 1, 3, 4)
    return x.reshape(num_rows, kv_heads, queries // n, width)


def _suffix_queries(grouped):
    """Queries [R, T, K, G, D] -> [R, K, G * T, D]."""
    r, t, kv_heads, group, head_dim = grouped.shape
    return grouped.transpose(0, 2, 3, 1, 4).reshape(r, kv_heads, group * t, head_dim)


def _piece_per_device(rules: ShardingRules):
    """`attention_piece` for the mesh in context.

    XLA's partitioner cannot split a kernel call, so on a mesh of several devices each device
    runs the kernel on its own questions (or sample rows) and kv heads, as the cache is split.
    """
    from ttc_jax.engine.pallas_attention import attention_piece

    mesh = jax.sharding.get_abstract_mesh()
    piece = functools.partial(attention_piece, interpret=_interpreted(mesh))
    if mesh.empty or mesh.size == 1:
        return piece

    def per_device(q, keys_t, values, valid, end, first):
        # q [Bt, K, M, D], keys_t [Bt, K, D, S], values [Bt, K, S, D]: one split for all.
        split = rules.spec(("batch", "kv_heads", None, None), q.shape, mesh)
        rows_split = PartitionSpec(split[0], None)
        if first is None:
            first = jnp.zeros((q.shape[0], q.shape[2]), jnp.int32)
        return jax.shard_map(
            piece,
            mesh=mesh,
            in_specs=(split, split, split, rows_split, PartitionSpec(), rows_split),
            out_specs=(split, split, split),
            check_vma=False,  # a Pallas call carries no per-device type information
        )(q, keys_t, values, valid, end, first)

    return per_device


def _interpreted(mesh) -> bool:
    """Whether the kernel runs in Pallas' interpreter: on CPU devices (tests, not speed). The
    mesh's own devices decide, since a model may sit on the CPU of a machine with a GPU."""
    device = None if mesh.empty else getattr(mesh, "abstract_device", None)
    return (jax.default_backend() if device is None else device.platform) == "cpu"


def _fused_prefix(piece, grouped, cache: KVCache, layer, window_starts):
    """The prefix piece of a one-token step from the fused kernel, for the grid's queries
    ``grouped`` [B * N, 1, K, G, D]; on a sliding layer (``window_starts`` from
    `_window_starts`) no slot before a query's window is read. Pieces [B * N, K, G, ...]."""
    rows, _, _, group, _ = grouped.shape
    prefix_first = None
    if window_starts is not None:
        prefix_first = _query_starts(window_starts[0], group)
    prefix = piece(
        _prefix_queries(grouped, cache.prefix_len.shape[0]),
        cache.prefix_k[layer],
        cache.prefix_v[layer],
        cache.prefix_valid,
        cache.prefix_valid.shape[1],
        prefix_first,
    )
    return tuple(_prefix_rows(x, rows) for x in prefix)


def _fused_suffix(piece, grouped, suffix_k, suffix_v, start, window_starts):
    """The suffix piece of a one-token step from the fused kernel: only written slots are read
    (``start`` [R']: each row's slot of this step's token)."""
    r, _, _, group, _ = grouped.shape
    suffix_first = None
    if window_starts is not None:
        suffix_first = jnp.broadcast_to(window_starts[1], (r, group))  # one token: T = 1
    capacity = suffix_k.shape[-1]
    return piece(
        _suffix_queries(grouped),
        suffix_k,
        suffix_v,
        jnp.arange(capacity) <= start[:, None],
        jnp.max(start) + 1,
        suffix_first,
    )


def _prefix_part(grouped, keys, values, mask):
    """Attention piece of queries [R, T, K, G, D] over the shared prefix (keys [B, K, D, P],
    values [B, K, P, D], mask [B, 1, 1, P]) -> pieces [R, K, G * T, ...].

    One product per (question, kv head) whose rows are all N x G x T queries of the question,
    so the prefix is read once for all its samples.
    """
    r, head_dim = grouped.shape[0], grouped.shape[-1]
    queries = _prefix_queries(grouped, keys.shape[0])
    logits = head_dim**-0.5 * jnp.einsum(
        "bkmd,bkdp->bkmp", queries, keys, preferred_element_type=jnp.float32
    )
    weights, peak, total = partial_softmax(logits, mask)
    attended = jnp.einsum(
        "bkmp,bkpd->bkmd", weights.astype(values.dtype), values, preferred_element_type=jnp.float32
    )
    return _prefix_rows(attended, r), _prefix_rows(peak, r), _prefix_rows(total, r)


def _suffix_part(grouped, keys, values, mask):
    """Attention piece of queries [R, T, K, G, D] over each row's own suffix (keys
    [R, K, D, S], values [R, K, S, D], mask [R, 1, 1, T, S]) -> pieces [R, K, G * T, ...].

    Reads every allocated slot: the staged allocation keeps that close to the slots written.
    """
    r, t, _, group, head_dim = grouped.shape
    logits = head_dim**-0.5 * jnp.einsum(
        "rkmd,rkds->rkms", _suffix_queries(grouped), keys, preferred_element_type=jnp.float32
    )
    mask = jnp.broadcast_to(mask, (r, 1, group, t, mask.shape[-1])).reshape(r, 1, group * t, -1)
    weights, peak, total = partial_softmax(logits, mask)
    attended = jnp.einsum(
        "rkms,rksd->rkmd", weights.astype(values.dtype), values, preferred_element_type=jnp.float32
    )
    return attended, peak, total


def grow(cache: KVCache, capacity: int) -> KVCache:
    """The cache with ``capacity`` suffix slots per sample; the new slots are empty."""
    extra = capacity - cache.capacity
    if extra < 0:
        raise ValueError(f"cannot shrink a suffix of {cache.capacity} slots to {capacity}")

    def pad(x, axis):
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, extra)
        return jnp.pad(x, widths)

    return cache.replace(
        suffix_k=tuple(pad(x, 3) for x in cache.suffix_k),
        suffix_v=tuple(pad(x, 2) for x in cache.suffix_v),
    )


def gather_samples(x: jax.Array, indices: jax.Array) -> jax.Array:
    """x [B, N, ...] -> [B, N', ...] with row (b, n') = x[b, indices[b, n']]."""
    return jnp.take_along_axis(x, indices.reshape(indices.shape + (1,) * (x.ndim - 2)), 1)


def reorder(cache: KVCache, indices: jax.Array) -> KVCache:
    """Suffixes gathered by ``indices`` [B, N'] (sample n' of question b takes the suffix of
    sample ``indices[b, n']``): beam selection and fan-out in one gather per array. N' may
    differ from N; the shared prefix is untouched."""
    rows = (jnp.arange(indices.shape[0])[:, None] * cache.num_samples + indices).reshape(-1)
    return cache.replace(
        suffix_k=tuple(jnp.take(x, rows, axis=0) for x in cache.suffix_k),
        suffix_v=tuple(jnp.take(x, rows, axis=0) for x in cache.suffix_v),
        suffix_len=gather_samples(cache.suffix_len, indices),
    )


def move_rows(cache: KVCache, sources: jax.Array, targets: jax.Array) -> KVCache:
    """Sample row ``targets[i]`` takes the suffix of row ``sources[i]`` (rows are question
    major, R = B x N); a target past the last row is dropped (padding). Only the moved rows
    are read and written, in place on a donated cache: selection for a few questions of a
    large batch costs those questions' rows, not the whole cache."""

    def move(x):
        return x.at[targets].set(jnp.take(x, sources, axis=0), mode="drop")

    lengths = cache.suffix_len.reshape(-1)
    return cache.replace(
        suffix_k=tuple(move(x) for x in cache.suffix_k),
        suffix_v=tuple(move(x) for x in cache.suffix_v),
        suffix_len=move(lengths).reshape(cache.suffix_len.shape),
    )


def put_questions(cache: KVCache, fresh: KVCache, slots: jax.Array) -> KVCache:
    """``cache`` with the questions at ``slots`` [k] replaced by ``fresh``'s k questions: their
    prompt prefixes and every sample's suffix. A slot of B or more (padding) writes nothing.
    Both caches hold the same samples a question, prefix width and suffix capacity; the other
    questions' entries are left as they are (in place on a donated cache)."""
    b, n = cache.suffix_len.shape

    def put(whole, part):
        return whole.at[slots].set(part, mode="drop")

    def put_rows(whole, part):  # [B * N, ...]: question-major sample rows
        grid = whole.reshape(b, n, *whole.shape[1:])
        grid = put(grid, part.reshape(-1, n, *part.shape[1:]))
        return grid.reshape(whole.shape)

    return KVCache(
        prefix_k=tuple(map(put, cache.prefix_k, fresh.prefix_k)),
        prefix_v=tuple(map(put, cache.prefix_v, fresh.prefix_v)),
        prefix_valid=put(cache.prefix_valid, fresh.prefix_valid),
        prefix_len=put(cache.prefix_len, fresh.prefix_len),
        suffix_k=tuple(map(put_rows, cache.suffix_k, fresh.suffix_k)),
        suffix_v=tuple(map(put_rows, cache.suffix_v, fresh.suffix_v)),
        suffix_len=put(cache.suffix_len, fresh.suffix_len),
    )
