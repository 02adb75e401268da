"""The decode loop: extend every live sample until a stop string, EOS or a token budget.

`extend` is one `lax.while_loop` on device over L lanes: the sample rows that can advance,
gathered from the [B, N] state before the loop and scattered back after it, so that ended,
paused and held rows cost nothing. Each step appends each lane's pending token to the KV
cache, samples the next one and checks stop conditions; the host is involved once per call,
not once per token. The loop also stops when the allocated suffix is full and more slots are
allowed (the engine then grows the cache, `grow`, and calls it again with the same output
buffer), and when too few lanes stay live (the engine gathers the live rows into fewer lanes),
so one logical extension spans a few programs, one per lane count and suffix size. Search
calls it once per reasoning step with the step delimiter as the stop string: samples that
reach the delimiter pause (they resume on the next call), samples that emit EOS or exhaust
their budget finish for good.
"""

from __future__ import annotations

import enum
import functools

import jax
import jax.numpy as jnp
from flax import nnx, struct

from ttc_jax.engine import kv_cache
from ttc_jax.engine.kv_cache import KVCache
from ttc_jax.engine.sampling import SamplingMode, SamplingParams, sample_tokens
from ttc_jax.sharding import ShardingRules


class Finish(enum.IntEnum):
    """Why a sample stopped. RUNNING: it can still be extended. FROZEN: set aside by the
    caller (`freeze`), e.g. a search slot with no beam to follow."""

    RUNNING = 0
    EOS = 1
    STOP = 2
    LENGTH = 3
    FROZEN = 4


# The per-sample fields of a `DecodeState` besides the cache's suffix: a new one is added here
# and in the class, and every operation on samples (lanes, reorder, checkpoint) moves it.
SAMPLE_FIELDS = ("pending", "finish", "keys", "stop_state", "num_generated", "logprob")


@struct.dataclass
class DecodeState:
    """Everything a sample needs to continue, for B questions x N samples."""

    cache: KVCache
    pending: jax.Array  # [B, N] int32: sampled, not yet appended to the cache
    # [B, N] int32 (Finish): RUNNING, or why the sample ended for good (EOS or LENGTH); an
    # ended sample is never extended again and reports this reason in every later call.
    finish: jax.Array
    keys: jax.Array  # [B, N, 2] uint32
    stop_state: jax.Array  # [B, N] int32: state of the stop-string automaton
    num_generated: jax.Array  # [B, N] int32
    logprob: jax.Array  # [B, N] float32: summed log-probability of generated tokens
    # Suffix slots the cache may grow to; a sample that reaches it finishes with LENGTH.
    slot_limit: int = struct.field(pytree_node=False)

    @property
    def finished(self) -> jax.Array:
        """[B, N] bool: the sample ended (EOS or budget) and will not be extended again."""
        return self.finish != Finish.RUNNING

    def sample_fields(self) -> dict[str, jax.Array]:
        """Every per-sample field [B, N, ...] but the cache's, by name: gathered, scattered,
        checkpointed and rolled back together (`jax.tree.map` over this dict)."""
        return {name: getattr(self, name) for name in SAMPLE_FIELDS}


@struct.dataclass
class StepOutput:
    """The tokens one extension added, per sample."""

    tokens: jax.Array  # [B, N, R] int32; the first ``count`` are real
    count: jax.Array  # [B, N] int32
    finish: jax.Array  # [B, N] int32 (Finish): why the sample stopped in this call
    logprob: jax.Array  # [B, N] float32: log-probability of this call's tokens
    steps: jax.Array  # [] int32: decode steps run (the lanes of a step advance in lock step)
    lane_steps: jax.Array  # [] int32: lanes computed x decode steps, padding lanes included
    calls: jax.Array  # [] int32: device calls of the decode loop (each one host round trip)

    def sample_fields(self) -> dict[str, jax.Array]:
        """The per-sample outputs [B, N, ...] by name (all but the step counts)."""
        return {
            "tokens": self.tokens,
            "count": self.count,
            "finish": self.finish,
            "logprob": self.logprob,
        }

    @classmethod
    def empty(cls, finish: jax.Array, hold: jax.Array, max_tokens: int) -> StepOutput:
        """Buffers for one extension of samples whose state's ``finish`` is given: samples
        that ended earlier report their reason again, live ones start RUNNING, and live ones
        in ``hold`` [B, N] start paused (STOP), so this extension leaves them as they are."""
        shape = finish.shape
        return cls(
            tokens=jnp.zeros((*shape, max_tokens), jnp.int32),
            count=jnp.zeros(shape, jnp.int32),
            finish=jnp.where(hold & (finish == Finish.RUNNING), Finish.STOP, finish),
            logprob=jnp.zeros(shape, jnp.float32),
            steps=jnp.zeros((), jnp.int32),
            lane_steps=jnp.zeros((), jnp.int32),
            calls=jnp.zeros((), jnp.int32),
        )


def initial_state(cache: KVCache, last_prompt_token, keys, slot_limit: int) -> DecodeState:
    """A state whose samples all start from their prompt's last token.

    The prefill stores all but the last prompt token; that token is every sample's first
    pending token, so the first new token is sampled by the same loop as all others.
    """
    b, n = keys.shape[:2]
    pending = jnp.broadcast_to(last_prompt_token[:, None], (b, n)).astype(jnp.int32)
    return DecodeState(
        cache=cache,
        pending=pending,
        finish=jnp.full((b, n), Finish.RUNNING, jnp.int32),
        keys=keys,
        stop_state=jnp.zeros((b, n), jnp.int32),
        num_generated=jnp.zeros((b, n), jnp.int32),
        logprob=jnp.zeros((b, n), jnp.float32),
        slot_limit=slot_limit,
    )


def extend(
    graphdef,
    params,
    state: DecodeState,
    out: StepOutput,
    stop_next_state,
    stop_completes,
    eos_ids,
    token_limit,
    sampling_params: SamplingParams,
    greedy_rows: jax.Array,
    row_budget: jax.Array,
    lanes: jax.Array,
    exit_below: jax.Array,
    settle_below: jax.Array,
    settle_group: jax.Array,
    *,
    sampling: SamplingMode,
    attention: str = "xla",
    rules: ShardingRules | None = None,
) -> tuple[DecodeState, StepOutput, jax.Array]:
    """Extends the sample rows listed in ``lanes`` [L] (row ids, question major; an id of
    B x N or more pads a lane) by up to ``R - out.steps`` more tokens in one while loop,
    where ``out.tokens`` is [B, N, R]. Only the L lanes are computed: their per-sample fields
    and suffixes are gathered before the loop and scattered back after it, and every
    question's prompt is still read once per step for all its lanes. Rows marked in
    ``greedy_rows`` [B, N] take their most likely token whatever ``sampling_params`` say; a
    row that has added ``row_budget`` [B, N] tokens in this extension pauses (STOP).

    A sample stops when it completes a stop string (STOP: paused for the rest of this
    extension, resumable), emits an EOS id (EOS), reaches ``token_limit`` generated tokens in
    total or the slot limit (LENGTH). The loop ends when no lane is live, at the token cap,
    when fewer than ``exit_below`` lanes are live (the caller may then gather the live rows
    into fewer lanes), when some question (or group of ``settle_group`` of its samples) has
    lanes and none of them live while fewer than ``settle_below`` lanes are (a search can
    then score that question's or group's step), or when a live
    lane's suffix is full; the third result is then True: the extension should go on after
    `grow`. ``attention`` and ``rules`` go to `ttc_jax.engine.kv_cache.append_lanes`.
    """
    model = nnx.merge(graphdef, params)
    b, n, max_tokens = out.tokens.shape
    rows = b * n
    safe = jnp.minimum(lanes, rows - 1)
    # The unit whose step is scored together: a question, or a group of ``settle_group``
    # consecutive samples of it (a DVTS subtree).
    groups_per_question = (n + settle_group - 1) // settle_group
    unit = safe // n * groups_per_question + safe % n // settle_group
    real = lanes < rows

    def take(x):
        return jnp.take(x.reshape((rows, *x.shape[2:])), safe, axis=0)

    def put(x, lane_x):
        flat = x.reshape((rows, *x.shape[2:]))
        return flat.at[lanes].set(lane_x, mode="drop").reshape(x.shape)

    lane = jax.tree.map(take, state.sample_fields())
    # A padding lane is never live.
    lane["finish"] = jnp.where(real, lane["finish"], Finish.LENGTH)
    lane_out = jax.tree.map(take, out.sample_fields())
    lane_greedy, lane_budget = take(greedy_rows), take(row_budget)
    suffix = kv_cache.gather_lanes(state.cache, lanes)
    # Lanes are split over the mesh as sample rows are (the partitioner is not left to guess).
    lane, lane_out, lane_greedy, lane_budget = _split_lanes(
        (lane, lane_out, lane_greedy, lane_budget), rules
    )
    suffix = kv_cache.constrain_lanes(suffix, rules)
    width = lanes.shape[0]

    def body(carry):
        lane, lane_out, suffix, steps, lane_steps = carry
        active = (lane["finish"] == Finish.RUNNING) & (lane_out["finish"] != Finish.STOP)
        hidden, suffix = kv_cache.append_lanes(
            model, state.cache, suffix, lane["pending"][:, None], active[:, None], attention, rules
        )
        logits = model.logits(hidden)[:, 0]  # [L, V] float32
        step_keys = jax.vmap(jax.random.fold_in)(lane["keys"], lane["num_generated"])
        token = sample_tokens(logits, step_keys, sampling, sampling_params, lane_greedy)
        token_logprob = jnp.take_along_axis(
            jax.nn.log_softmax(logits, axis=-1), token[:, None], axis=-1
        )[:, 0]
        token = jnp.where(active, token, lane["pending"])
        token_logprob = jnp.where(active, token_logprob, 0.0)

        slot = jnp.arange(max_tokens) == lane_out["count"][:, None]
        tokens = jnp.where(active[:, None] & slot, token[:, None], lane_out["tokens"])
        num_generated = lane["num_generated"] + active
        is_eos = active & jnp.isin(token, eos_ids)
        completes = active & stop_completes[lane["stop_state"], token]
        stop_state = jnp.where(
            active, stop_next_state[lane["stop_state"], token], lane["stop_state"]
        )
        at_slot_limit = suffix.suffix_len >= state.slot_limit
        at_limit = active & ~is_eos & ((num_generated >= token_limit) | at_slot_limit)
        finish = jnp.where(is_eos, Finish.EOS, lane_out["finish"])
        # A row that has added its budget of tokens pauses as at a stop string, so where a
        # step is cut does not depend on when the call returns.
        spent = active & (lane_out["count"] + 1 >= lane_budget)
        finish = jnp.where((completes | spent) & ~is_eos, Finish.STOP, finish)
        # A stop string completed on the last allowed token reports STOP for this call, but
        # the sample has ended all the same: the next call reports LENGTH and decodes nothing
        # (else it would wait at a full, ungrowable suffix for ever).
        finish = jnp.where(at_limit & ~completes, Finish.LENGTH, finish)
        ended = jnp.where(is_eos, Finish.EOS, jnp.where(at_limit, Finish.LENGTH, lane["finish"]))
        lane = dict(
            pending=token,
            finish=ended,
            keys=lane["keys"],
            stop_state=stop_state,
            num_generated=num_generated,
            logprob=lane["logprob"] + token_logprob,
        )
        lane_out = dict(
            tokens=tokens,
            count=lane_out["count"] + active,
            finish=finish,
            logprob=lane_out["logprob"] + token_logprob,
        )
        return lane, lane_out, suffix, steps + 1, lane_steps + width

    def live(lane, lane_out):
        return (lane["finish"] == Finish.RUNNING) & (lane_out["finish"] != Finish.STOP)

    def wants_more(lane, lane_out, steps):
        alive = live(lane, lane_out)
        count = jnp.sum(alive)
        # A unit with lanes, none of them live: its step is done.
        lanes_of = jnp.zeros((rows,), jnp.int32).at[unit].add(real)
        live_of = jnp.zeros((rows,), jnp.int32).at[unit].add(alive)
        settled = jnp.any((lanes_of > 0) & (live_of == 0))
        return (
            (steps < max_tokens)
            & (count > 0)
            & (count >= exit_below)
            & ~(settled & (count < settle_below))
        )

    def cond(carry):
        lane, lane_out, suffix, steps, _ = carry
        longest_live = jnp.max(jnp.where(live(lane, lane_out), suffix.suffix_len, 0))
        capacity = suffix.suffix_k[0].shape[-1]
        return wants_more(lane, lane_out, steps) & (longest_live < capacity)

    carry = (lane, lane_out, suffix, out.steps, out.lane_steps)
    lane, lane_out, suffix, steps, lane_steps = jax.lax.while_loop(cond, body, carry)
    state = state.replace(
        cache=kv_cache.scatter_lanes(state.cache, suffix),
        **jax.tree.map(put, state.sample_fields(), lane),
    )
    out = out.replace(
        **jax.tree.map(put, out.sample_fields(), lane_out),
        steps=steps,
        lane_steps=lane_steps,
        calls=out.calls + 1,
    )
    return state, out, wants_more(lane, lane_out, steps)


def _split_lanes(tree, rules: ShardingRules | None):
    """Per-lane arrays [L, ...] pinned to the mesh in context, lanes split like sample rows."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return tree
    rules = rules or ShardingRules()

    def pin(x):
        spec = rules.spec(("batch",) + (None,) * (x.ndim - 1), x.shape, mesh)
        return jax.lax.with_sharding_constraint(x, spec)

    return jax.tree.map(pin, tree)


@struct.dataclass
class Checkpoint:
    """The per-sample part of a `DecodeState`: enough to undo extensions (`rollback`)."""

    samples: dict[str, jax.Array]  # `DecodeState.sample_fields`
    suffix_len: jax.Array

    @property
    def shape(self) -> tuple[int, ...]:
        """[B, N]: the samples it holds."""
        return self.suffix_len.shape


def checkpoint(state: DecodeState) -> Checkpoint:
    """Copies of the per-sample fields (the state itself is donated to later calls)."""
    return jax.tree.map(jnp.copy, Checkpoint(state.sample_fields(), state.cache.suffix_len))


def rollback(state: DecodeState, saved: Checkpoint, questions: jax.Array) -> DecodeState:
    """The samples of the questions marked in ``questions`` [B] as they were at ``saved`` (the
    same samples in the same order): what they appended since is past their suffix lengths
    again, unseen, and is overwritten later. Other questions' samples are left as they are."""

    def back(now, then):
        mask = questions.reshape((-1,) + (1,) * (now.ndim - 1))
        return jnp.where(mask, then, now)

    return state.replace(
        cache=state.cache.replace(suffix_len=back(state.cache.suffix_len, saved.suffix_len)),
        **jax.tree.map(back, state.sample_fields(), saved.samples),
    )


def freeze(state: DecodeState, frozen: jax.Array) -> DecodeState:
    """The state with the samples marked in ``frozen`` [B, N] ended (FROZEN): never extended
    again, whatever they were doing."""
    return state.replace(finish=jnp.where(frozen, Finish.FROZEN, state.finish))


def grow(state: DecodeState, capacity: int) -> DecodeState:
    """The state with its cache's suffix grown to ``capacity`` slots."""
    return state.replace(cache=kv_cache.grow(state.cache, capacity))


def reorder(state: DecodeState, indices: jax.Array) -> DecodeState:
    """Sample n' of question b continues sample ``indices[b, n']`` (beam selection, fan-out).

    Copies get fresh keys (folded with their new slot) so that duplicates diverge.
    """
    take = functools.partial(kv_cache.gather_samples, indices=indices)
    samples = jax.tree.map(take, state.sample_fields())
    slots = jnp.broadcast_to(jnp.arange(indices.shape[1]), indices.shape)
    keys = jax.vmap(jax.random.fold_in)(samples["keys"].reshape(-1, 2), slots.reshape(-1))
    samples["keys"] = keys.reshape((*indices.shape, 2))
    return DecodeState(
        cache=kv_cache.reorder(state.cache, indices), slot_limit=state.slot_limit, **samples
    )


def move_samples(state: DecodeState, sources: jax.Array, targets: jax.Array) -> DecodeState:
    """Sample row ``targets[i]`` continues sample row ``sources[i]`` (rows question major; a
    target past the last row is dropped), with a fresh key folded with its new slot, as
    `reorder` gives the moved samples; all other samples stay as they are."""
    b, n = state.pending.shape

    def move(x):
        flat = x.reshape((b * n, *x.shape[2:]))
        flat = flat.at[targets].set(jnp.take(flat, sources, axis=0), mode="drop")
        return flat.reshape(x.shape)

    samples = jax.tree.map(move, state.sample_fields())
    moved_keys = jnp.take(state.keys.reshape(b * n, 2), sources, axis=0)
    moved_keys = jax.vmap(jax.random.fold_in)(moved_keys, targets % n)
    keys = state.keys.reshape(b * n, 2).at[targets].set(moved_keys, mode="drop")
    samples["keys"] = keys.reshape(state.keys.shape)
    return state.replace(cache=kv_cache.move_rows(state.cache, sources, targets), **samples)


def put_questions(state: DecodeState, fresh: DecodeState, slots: jax.Array) -> DecodeState:
    """``state`` with the questions at ``slots`` [k] replaced by ``fresh``'s k questions, cache
    and samples (a slot of B or more writes nothing): new prompts admitted into the rows of
    questions that ended, beside the others mid-way."""
    samples = jax.tree.map(
        lambda whole, part: whole.at[slots].set(part, mode="drop"),
        state.sample_fields(),
        fresh.sample_fields(),
    )
    return state.replace(cache=kv_cache.put_questions(state.cache, fresh.cache, slots), **samples)
