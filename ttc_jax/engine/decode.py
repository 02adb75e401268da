"""The decode loop: extend every live sample until a stop string, EOS or a token budget.

`extend` is one `lax.while_loop` on device. It appends each sample's pending token to the KV
cache, samples the next one and checks stop conditions, with per-sample done masks; the host
is involved once per call, not once per token. The loop also stops when the allocated suffix is
full and more slots are allowed: the engine then grows the cache (`grow`) and calls it again,
with the same output buffer, so one logical extension spans a few programs, one per suffix
size. Search calls it once per reasoning step with the step delimiter as the stop string:
samples that reach the delimiter pause (they resume on the next call), samples that emit EOS or
exhaust their budget finish for good.
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


@struct.dataclass
class StepOutput:
    """The tokens one extension added, per sample."""

    tokens: jax.Array  # [B, N, R] int32; the first ``count`` are real
    count: jax.Array  # [B, N] int32
    finish: jax.Array  # [B, N] int32 (Finish): why the sample stopped in this call
    logprob: jax.Array  # [B, N] float32: log-probability of this call's tokens
    steps: jax.Array  # [] int32: decode steps run (all samples advance in lock step)

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
    *,
    sampling: SamplingMode,
    return_on_pause: bool = False,
    attention: str = "xla",
    rules: ShardingRules | None = None,
) -> tuple[DecodeState, StepOutput, jax.Array]:
    """Extends every unfinished sample by up to ``R - out.steps`` more tokens (one while loop),
    where ``out.tokens`` is [B, N, R].

    A sample stops when it completes a stop string (STOP: paused for the rest of this
    extension, resumable), emits an EOS id (EOS), reaches ``token_limit`` generated tokens in
    total or the slot limit (LENGTH). The loop also ends when the allocated suffix is full;
    the third result is then True if the extension should go on after `grow`. With
    ``return_on_pause`` it also ends as soon as every sample of some question that decoded in
    this call is paused or ended, so that a search can score that question's step while the
    others decode on. ``attention`` and ``rules`` go to `ttc_jax.engine.kv_cache.append`.
    """
    model = nnx.merge(graphdef, params)
    b, n, max_tokens = out.tokens.shape
    capacity = state.cache.capacity

    def body(carry):
        state, out = carry
        paused = out.finish == Finish.STOP
        active = ~state.finished & ~paused
        hidden, cache = kv_cache.append(
            model, state.cache, state.pending[..., None], active[..., None], attention, rules
        )
        logits = model.logits(hidden.reshape(b * n, 1, -1))[:, 0]  # [B*N, V] float32
        step_keys = jax.vmap(jax.random.fold_in)(
            state.keys.reshape(b * n, 2), state.num_generated.reshape(b * n)
        )
        token = sample_tokens(logits, step_keys, sampling, sampling_params)
        token_logprob = jnp.take_along_axis(
            jax.nn.log_softmax(logits, axis=-1), token[:, None], axis=-1
        )[:, 0]
        token = jnp.where(active, token.reshape(b, n), state.pending)
        token_logprob = jnp.where(active, token_logprob.reshape(b, n), 0.0)

        slot = jnp.arange(max_tokens) == out.count[..., None]
        tokens = jnp.where(active[..., None] & slot, token[..., None], out.tokens)
        count = out.count + active
        num_generated = state.num_generated + active
        is_eos = active & jnp.isin(token, eos_ids)
        completes = active & stop_completes[state.stop_state, token]
        stop_state = jnp.where(active, stop_next_state[state.stop_state, token], state.stop_state)
        at_slot_limit = cache.suffix_len >= state.slot_limit
        at_limit = active & ~is_eos & ((num_generated >= token_limit) | at_slot_limit)
        finish = jnp.where(is_eos, Finish.EOS, out.finish)
        finish = jnp.where(completes & ~is_eos, Finish.STOP, finish)
        # A stop string completed on the last allowed token reports STOP for this call, but
        # the sample has ended all the same: the next call reports LENGTH and decodes nothing
        # (else it would wait at a full, ungrowable suffix for ever).
        finish = jnp.where(at_limit & ~completes, Finish.LENGTH, finish)
        ended = jnp.where(is_eos, Finish.EOS, jnp.where(at_limit, Finish.LENGTH, state.finish))
        state = state.replace(
            cache=cache,
            pending=token,
            finish=ended,
            stop_state=stop_state,
            num_generated=num_generated,
            logprob=state.logprob + token_logprob,
        )
        out = StepOutput(tokens, count, finish, out.logprob + token_logprob, out.steps + 1)
        return state, out

    def live(state, out):
        return ~state.finished & (out.finish != Finish.STOP)

    def wants_more(state, out):
        more = (out.steps < max_tokens) & jnp.any(live(state, out))
        if return_on_pause:
            # Some question that decoded in this call has every sample paused or ended now:
            # its turn to be scored. (A question held throughout decoded nothing.)
            settled = jnp.all(state.finished | (out.finish == Finish.STOP), axis=1)
            more &= ~jnp.any(settled & jnp.any(out.count > 0, axis=1))
        return more

    def cond(carry):
        state, out = carry
        longest_live = jnp.max(jnp.where(live(state, out), state.cache.suffix_len, 0))
        return wants_more(state, out) & (longest_live < capacity)

    state, out = jax.lax.while_loop(cond, body, (state, out))
    return state, out, wants_more(state, out)


@struct.dataclass
class Checkpoint:
    """The per-sample part of a `DecodeState`: enough to undo extensions (`rollback`)."""

    pending: jax.Array
    finish: jax.Array
    keys: jax.Array
    stop_state: jax.Array
    num_generated: jax.Array
    logprob: jax.Array
    suffix_len: jax.Array


def checkpoint(state: DecodeState) -> Checkpoint:
    """Copies of the per-sample fields (the state itself is donated to later calls)."""
    return jax.tree.map(
        jnp.copy,
        Checkpoint(
            state.pending,
            state.finish,
            state.keys,
            state.stop_state,
            state.num_generated,
            state.logprob,
            state.cache.suffix_len,
        ),
    )


def rollback(state: DecodeState, saved: Checkpoint, questions: jax.Array) -> DecodeState:
    """The samples of the questions marked in ``questions`` [B] as they were at ``saved`` (the
    same samples in the same order): what they appended since is past their suffix lengths
    again, unseen, and is overwritten later. Other questions' samples are left as they are."""

    def back(now, then):
        mask = questions.reshape((-1,) + (1,) * (now.ndim - 1))
        return jnp.where(mask, then, now)

    return state.replace(
        cache=state.cache.replace(suffix_len=back(state.cache.suffix_len, saved.suffix_len)),
        pending=back(state.pending, saved.pending),
        finish=back(state.finish, saved.finish),
        keys=back(state.keys, saved.keys),
        stop_state=back(state.stop_state, saved.stop_state),
        num_generated=back(state.num_generated, saved.num_generated),
        logprob=back(state.logprob, saved.logprob),
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
    keys = take(state.keys)
    slots = jnp.broadcast_to(jnp.arange(indices.shape[1]), indices.shape)
    keys = jax.vmap(jax.random.fold_in)(keys.reshape(-1, 2), slots.reshape(-1))
    keys = keys.reshape((*indices.shape, 2))
    return DecodeState(
        cache=kv_cache.reorder(state.cache, indices),
        pending=take(state.pending),
        finish=take(state.finish),
        keys=keys,
        stop_state=take(state.stop_state),
        num_generated=take(state.num_generated),
        logprob=take(state.logprob),
        slot_limit=state.slot_limit,
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

    moved_keys = jnp.take(state.keys.reshape(b * n, 2), sources, axis=0)
    moved_keys = jax.vmap(jax.random.fold_in)(moved_keys, targets % n)
    keys = state.keys.reshape(b * n, 2).at[targets].set(moved_keys, mode="drop")
    return state.replace(
        cache=kv_cache.move_rows(state.cache, sources, targets),
        pending=move(state.pending),
        finish=move(state.finish),
        keys=keys.reshape(state.keys.shape),
        stop_state=move(state.stop_state),
        num_generated=move(state.num_generated),
        logprob=move(state.logprob),
    )
