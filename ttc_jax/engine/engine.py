"""`Engine`: the compiled prefill and extend programs of one `LanguageModel`, plus bucketing.

Shapes are bucketed (`ttc_jax.bucketing`: question rows and samples to 1, 2, 3, 4, 6, 8, ...,
prompt lengths and the suffix capacity to powers of two, the suffix allocated in a few stages,
the stop automaton's states to a power of two) and sampling values travel as arrays, so that a
study compiles a handful of programs, not one per call or per temperature. Programs are jitted
once per engine and take the parameters as an argument.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ttc_jax.bucketing import bucket_count, bucket_length
from ttc_jax.engine import decode, kv_cache
from ttc_jax.engine.decode import DecodeState, Finish, StepOutput
from ttc_jax.engine.sampling import SamplingConfig, prompt_digest, sample_keys
from ttc_jax.engine.selection import moved_rows, padded_indices
from ttc_jax.engine.stopping import StopTable, build_stop_table, stop_strings
from ttc_jax.lm import LanguageModel
from ttc_jax.models.config import ModelConfig, non_embedding_params

# Fewest lanes a decode call computes (see `lane_plan`): fewer rows hardly make a step
# cheaper, and every lane count is another compiled program.
MIN_LANES = 8
# `min_lanes` that computes every row in every call: one decode program per batch shape.
ALL_ROWS = 2**31 - 1
# Smaller models compute every row (`default_min_lanes`). Beam search, N=16, on 24 of the
# embedded world's questions, 2-core CPU (docs/benchmarks.md): on its 0.13M-parameter policy
# every row beat lanes both cold (31.0 s against 36.9) and compiled (8.1 s against 9.1), the
# same results bit for bit; on its 2.0M-parameter 14x policy lanes lost cold (53.9 s against
# 37.5) and won compiled (11.2 s against 13.3); on SmolLM2 (106M) they brought beam search
# from 3.7x best-of-N's cost a token to 2.1x.
LANES_FROM_PARAMS = 1_000_000
# Size of the on-device EOS id list (padded with -1): a fixed shape keeps one program.
MAX_EOS_IDS = 8
# Fewest states of a stop automaton on device; more round up to a power of two. "\n" needs
# one state, "The answer is" 13: padding keeps one program for most stop sets.
MIN_STOP_STATES = 16


@dataclasses.dataclass(frozen=True)
class Batch:
    """Prompts laid out for the device: left-padded, all but the last token in the prefix."""

    prefix_tokens: np.ndarray  # [B, P] int32
    prefix_valid: np.ndarray  # [B, P] bool
    last_tokens: np.ndarray  # [B] int32
    is_real: np.ndarray  # [B] bool: False for rows that only pad the batch
    digests: np.ndarray  # [B] uint32: `prompt_digest` of each prompt; with the seed, its keys
    num_prompts: int
    longest_prompt: int  # tokens in the longest prompt


class Engine:
    """Sampling programs for one language model: ``Engine(lm)``, or `default_engine(lm)` for
    the one `ttc_jax.generate` uses.

    ``suffix_stage`` is the first suffix allocation in slots (see
    `ttc_jax.engine.kv_cache.stage_capacity`): smaller stages read less of the cache per step
    and compile more programs. ``attention`` is "xla" (any backend) or "pallas" (a fused
    kernel for GPUs, see `ttc_jax.engine.pallas_attention`; it needs stages that are
    multiples of 16). ``min_lanes`` is the fewest lanes a decode call computes (see
    `lane_plan`): each lane count below the batch's rows is another compiled program.
    """

    def __init__(
        self,
        lm: LanguageModel,
        suffix_stage: int = kv_cache.FIRST_STAGE,
        attention: str = "xla",
        min_lanes: int = MIN_LANES,
    ):
        if suffix_stage < 1:
            raise ValueError(f"suffix_stage must be >= 1, got {suffix_stage}")
        if min_lanes < 1:
            raise ValueError(f"min_lanes must be >= 1, got {min_lanes}")
        if attention not in kv_cache.ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"attention must be one of {kv_cache.ATTENTION_IMPLEMENTATIONS}, got {attention!r}"
            )
        if attention == "pallas" and jax.default_backend() not in ("gpu", "cpu"):
            # The kernel is written for Triton; on a CPU it runs interpreted (for tests).
            raise ValueError(f"pallas attention needs a GPU, not {jax.default_backend()!r}")
        if attention == "pallas" and suffix_stage % 16:
            raise ValueError(f"pallas attention needs suffix_stage % 16 == 0: {suffix_stage}")
        self.lm = lm
        self.suffix_stage = suffix_stage
        self.attention = attention
        self.min_lanes = min_lanes
        self._start = jax.jit(
            self._start_fn,
            static_argnames=("num_samples", "capacity", "allocated"),
            compiler_options=lm.compiler_options,
        )
        self._extend = jax.jit(
            functools.partial(decode.extend, lm.graphdef, attention=attention, rules=lm.rules),
            static_argnames=("sampling",),
            donate_argnames=("state", "out"),
            compiler_options=lm.compiler_options,
        )
        self._grow = jax.jit(self._grow_fn, static_argnames=("capacity",))
        # One program for the empty output buffers, not one small eager program per array.
        self._empty_output = jax.jit(StepOutput.empty, static_argnums=(2,))
        self._reorder = jax.jit(decode.reorder, donate_argnames=("state",))
        self._resize = jax.jit(decode.reorder)
        self._move = jax.jit(decode.move_samples, donate_argnames=("state",))
        self._checkpoint = jax.jit(decode.checkpoint)
        self._freeze = jax.jit(decode.freeze, donate_argnames=("state",))
        self._rollback = jax.jit(decode.rollback, donate_argnames=("state",))
        self._put_questions = jax.jit(decode.put_questions, donate_argnames=("state",))
        self._stop_tables: dict[tuple[str, ...], tuple[jax.Array, jax.Array]] = {}

    # -- prompts ------------------------------------------------------------------------------

    def tokenize(self, prompts: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
        """Strings through the tokenizer (with its special tokens); id lists checked as-is."""
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
            raise ValueError("prompts must be a non-empty list of strings or of token id lists")
        vocab = self.lm.config.vocab_size
        ids = []
        for i, prompt in enumerate(prompts):
            if isinstance(prompt, str):
                if self.lm.tokenizer is None:
                    raise ValueError("text prompts need a tokenizer; this model has none")
                prompt = self.lm.tokenizer(prompt)["input_ids"]
            elif not isinstance(prompt, Sequence | np.ndarray) or not all(
                isinstance(t, int | np.integer) and not isinstance(t, bool) for t in prompt
            ):
                raise ValueError(
                    f"prompt {i} is {type(prompt).__name__}: expected a string or a list of "
                    "token ids"
                )
            prompt = [int(t) for t in prompt]
            if not prompt:
                raise ValueError(f"prompt {i} is empty")
            if min(prompt) < 0 or max(prompt) >= vocab:
                raise ValueError(f"prompt {i} has token ids outside [0, {vocab})")
            ids.append(prompt)
        return ids

    def layout(
        self,
        prompt_ids: list[list[int]],
        streams: Sequence[int] | None = None,
        width: int | None = None,
    ) -> Batch:
        """Prompts laid out for `start` (or `admit`). ``streams`` (one int per prompt, default
        0) tell equal prompts apart: a sample's key depends on its prompt's tokens and stream.
        ``width``: the prefix's width in tokens (default: a bucket of the longest prompt);
        `admit` needs the width of the state it admits into."""
        num = len(prompt_ids)
        streams = [0] * num if streams is None else list(streams)
        if len(streams) != num or not all(_is_int(s) and 0 <= s < 2**32 for s in streams):
            raise ValueError(f"streams must be {num} integers in [0, 2**32), got {streams!r}")
        rows = self.lm.padded_batch_size(num)
        longest_body = max(len(p) for p in prompt_ids) - 1
        if width is None:
            width = bucket_length(longest_body)
        elif not _is_int(width) or width < max(1, longest_body):
            raise ValueError(
                f"width {width!r} cannot hold the longest prompt ({longest_body} tokens before "
                "its last)"
            )
        tokens = np.zeros((rows, width), np.int32)
        valid = np.zeros((rows, width), bool)
        last = np.zeros((rows,), np.int32)
        digests = np.zeros((rows,), np.uint32)
        for row, prompt in enumerate(prompt_ids):
            body = prompt[:-1]
            if body:
                tokens[row, width - len(body) :] = body
                valid[row, width - len(body) :] = True
            last[row] = prompt[-1]
            digests[row] = prompt_digest(prompt, streams[row])
        longest = max(len(p) for p in prompt_ids)
        return Batch(tokens, valid, last, np.arange(rows) < num, digests, num, longest)

    # -- device programs ----------------------------------------------------------------------

    def _start_fn(
        self,
        params,
        tokens,
        valid,
        last,
        is_real,
        digests,
        seed,
        num_real,
        *,
        num_samples,
        capacity,
        allocated,
    ):
        model = nnx.merge(self.lm.graphdef, params)
        cache = kv_cache.prefill(model, tokens, valid, num_samples, allocated)
        cache = kv_cache.constrain(cache, self.lm.mesh, self.lm.rules)
        keys = sample_keys(seed, digests, num_samples)
        state = decode.initial_state(cache, last, keys, slot_limit=capacity)
        # Rows and samples that only pad the batch end before they start.
        padding = ~is_real[:, None] | (jnp.arange(num_samples) >= num_real)[None, :]
        return state.replace(finish=jnp.where(padding, Finish.LENGTH, state.finish))

    def _grow_fn(self, state: DecodeState, *, capacity: int) -> DecodeState:
        state = decode.grow(state, capacity)
        return state.replace(cache=kv_cache.constrain(state.cache, self.lm.mesh, self.lm.rules))

    def start(
        self,
        batch: Batch,
        num_samples: int,
        capacity: int,
        seed: int,
        allocate: int | None = None,
    ) -> DecodeState:
        """Prefills every prompt once and returns a state of ``num_samples`` samples each, with
        room for ``capacity`` suffix slots per sample, allocated in stages as they fill.

        ``allocate`` suffix slots are allocated at once (default: the first stage). A caller
        that decodes whole solutions in one call passes ``capacity``: in a large batch some
        sample nearly always passes the first stage, and each stage the cache grows to costs a
        decode program compiled for its size.

        The state holds `padded_samples(num_samples)` samples per prompt; the extra ones end
        before they start. Sample n of a prompt draws from a key set by ``seed``, the prompt's
        tokens and n alone (`ttc_jax.engine.sampling.sample_keys`).
        """
        check_count(num_samples, "num_samples")
        check_count(capacity, "capacity")
        if not _is_int(seed) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
        self.check_context(batch.longest_prompt, capacity)
        if allocate is None:
            allocate = self.suffix_stage
        elif not _is_int(allocate) or not 1 <= allocate <= capacity:
            raise ValueError(
                f"allocate must be an integer in [1, capacity={capacity}], got {allocate!r}"
            )
        with jax.set_mesh(self.lm.mesh):
            return self._prefill_batch(
                batch,
                seed,
                num_samples,
                capacity,
                kv_cache.stage_capacity(allocate, capacity, self.suffix_stage),
            )

    def _prefill_batch(self, batch, seed, num_samples, capacity, allocated) -> DecodeState:
        """A fresh state of ``batch``'s prompts (the program `start` and `admit` share)."""
        return self._start(
            self.lm.params,
            batch.prefix_tokens,
            batch.prefix_valid,
            batch.last_tokens,
            batch.is_real,
            batch.digests,
            jnp.uint32(seed),
            jnp.int32(num_samples),
            num_samples=self.padded_samples(num_samples),
            capacity=capacity,
            allocated=allocated,
        )

    def admit(
        self,
        state: DecodeState,
        slots: Sequence[int],
        batch: Batch,
        num_samples: int,
        seed: int,
    ) -> DecodeState:
        """``state`` with the questions at ``slots`` replaced by ``batch``'s prompts (laid out
        by `layout` with ``width`` the state's prefix width), for a pool of questions that
        fills the rows of ended questions while the others go on.

        An admitted prompt's samples start as `start` would start them with this ``seed``
        (the same keys: the seed, the prompt's tokens and stream, the sample's index), with
        the state's suffix limit and allocation and ``num_samples`` samples each (the count
        the state was started with), so what they generate
        does not depend on when or beside what they were admitted. Each slot must hold a
        question whose samples have all ended. ``state`` is consumed.
        """
        check_live(state, "admit")
        rows, samples = state.pending.shape
        check_count(num_samples, "num_samples")
        if self.padded_samples(num_samples) != samples:
            raise ValueError(
                f"admit: {num_samples} samples a question do not fit a state of {samples}"
            )
        given = slots
        slots = [int(s) for s in np.asarray(slots).reshape(-1) if _is_int(s)]
        if len(slots) != batch.num_prompts or len(slots) != np.size(given):
            raise ValueError(
                f"admit: {batch.num_prompts} prompts need as many question slots, got {given!r}"
            )
        if len(set(slots)) != len(slots) or not all(0 <= s < rows for s in slots):
            raise ValueError(f"admit: slots must be distinct questions in [0, {rows}), got {slots}")
        width = state.cache.prefix_valid.shape[1]
        if batch.prefix_tokens.shape[1] != width:
            raise ValueError(
                f"admit: the prompts are laid out {batch.prefix_tokens.shape[1]} tokens wide, "
                f"the state's prefix is {width} (layout(..., width={width}))"
            )
        running = np.asarray(state.finish)[slots] == Finish.RUNNING
        if running.any():
            busy = sorted({slots[i] for i in np.nonzero(running)[0]})
            raise ValueError(f"admit: questions {busy} still have samples running")
        self.check_context(batch.longest_prompt, state.slot_limit)
        padded = slots + [rows] * (batch.prefix_tokens.shape[0] - len(slots))  # rows: dropped
        with jax.set_mesh(self.lm.mesh):
            fresh = self._prefill_batch(
                batch, seed, num_samples, state.slot_limit, state.cache.capacity
            )
            return self._put_questions(state, fresh, jnp.asarray(padded, jnp.int32))

    @staticmethod
    def padded_samples(num_samples: int) -> int:
        """Samples per prompt a state of ``num_samples`` holds (a `bucket_count`)."""
        return bucket_count(num_samples)

    def check_context(self, prompt_tokens: int, new_tokens: int) -> None:
        """A clear error, before any compute, when a prompt and its continuation would not
        fit the model's context (``max_position_embeddings``)."""
        context = self.lm.config.max_position_embeddings
        if prompt_tokens + new_tokens > context:
            raise ValueError(
                f"a prompt of {prompt_tokens} tokens plus {new_tokens} new tokens exceeds the "
                f"model's context of {context} tokens; shorten the prompt or max_new_tokens"
            )

    def extend(
        self,
        state: DecodeState,
        *,
        max_tokens: int,
        token_limit: int,
        sampling: SamplingConfig,
        stop: Sequence[str] = (),
        hold=None,
        return_on_pause: bool = False,
        settle_group: int | None = None,
        greedy=None,
        budget=None,
    ) -> tuple[DecodeState, StepOutput]:
        """Extends every live sample by up to ``max_tokens`` tokens (see
        `ttc_jax.engine.decode.extend`); ``state`` is donated (do not reuse it). Samples
        marked in ``hold`` ([questions, N] bool) stay as they are (reported as STOP); those
        marked in ``greedy`` (the same shape) take their most likely token whatever
        ``sampling`` says (a lookahead's rollouts beside samples of other questions). A
        sample pauses (STOP) once it has added ``budget`` ([questions, N] ints >= 1;
        default: no cap but ``max_tokens``) tokens in this call (a search's cap on a step's
        length, the same whenever the call returns). With
        ``return_on_pause`` the call returns once some question's samples are all paused or
        ended (with one not ended) and fewer than half the lanes are live; with
        ``settle_group`` too, once some group of that many consecutive samples of a question
        (a DVTS subtree: N a multiple of it) is.

        Each device call computes only the live rows, gathered into lanes (`lane_plan`); when
        fewer than half the lanes are live they are gathered into fewer, and when a live row
        fills its suffix the cache grows. The host waits for the device once per such
        call, not once per token.
        """
        check_live(state, "extend")
        with jax.set_mesh(self.lm.mesh):
            args, static = self.extend_arguments(
                state,
                max_tokens=max_tokens,
                token_limit=token_limit,
                sampling=sampling,
                stop=stop,
                hold=hold,
                return_on_pause=return_on_pause,
                settle_group=settle_group,
                greedy=greedy,
                budget=budget,
            )
            params, state, out, *rest, lanes, exit_below, settle_below, group = args
            while True:
                state, out, more = self._extend(
                    params, state, out, *rest, lanes, exit_below, settle_below, group, **static
                )
                if bool(more):
                    # A live sample filled its allocation: grow, and go on with the same lanes.
                    needed = state.cache.capacity + 1
                    capacity = kv_cache.stage_capacity(needed, state.slot_limit, self.suffix_stage)
                    state = self._grow(state, capacity=capacity)
                    continue
                live = live_rows(state, out)
                if not live.any() or int(out.steps) >= max_tokens:
                    return state, out
                if return_on_pause and settled_groups(live, out, int(group)).any():
                    return state, out
                lanes, exit_below, settle_below = lane_plan(live, return_on_pause, self.min_lanes)

    def extend_arguments(
        self,
        state: DecodeState,
        *,
        max_tokens: int,
        token_limit: int,
        sampling: SamplingConfig,
        stop: str | Sequence[str] = (),
        hold=None,
        return_on_pause: bool = False,
        settle_group: int | None = None,
        greedy=None,
        budget=None,
    ) -> tuple[tuple, dict]:
        """Checked positional and static arguments of the first call of the compiled decode
        loop (the parameters, ``state``, a fresh output buffer, ..., the lanes): `extend` runs
        them, tests trace them."""
        check_count(max_tokens, "max_tokens")
        check_count(token_limit, "token_limit")
        sampling.check_vocab(self.lm.config.vocab_size)
        next_state, completes = self.stop_table(stop_strings(stop))
        held = self._sample_mask(state, hold, "hold")
        samples = state.pending.shape[1]
        group = samples if settle_group is None else check_count(settle_group, "settle_group")
        if samples % group:
            raise ValueError(
                f"settle_group must divide the state's {samples} samples, got {settle_group}"
            )
        with jax.set_mesh(self.lm.mesh):
            out = self._empty_output(state.finish, held, max_tokens)
        args = (
            self.lm.params,
            state,
            out,
            next_state,
            completes,
            self.eos_ids,
            jnp.int32(token_limit),
            sampling.params(),
            self._sample_mask(state, greedy, "greedy"),
            self._row_budget(state, budget, max_tokens),
            *lane_plan(live_rows(state, out), return_on_pause, self.min_lanes),
            jnp.int32(group),
        )
        static = {"sampling": sampling.mode(self.lm.config.vocab_size)}
        return args, static

    def new_tokens(
        self, out: StepOutput, num_prompts: int, num_samples: int | None = None
    ) -> list[list[list[int]]]:
        """Token ids each sample added in one `extend` call: ``[prompt][sample] -> ids`` for
        the first ``num_samples`` samples (default: all the state holds), EOS included."""
        tokens, counts = np.asarray(out.tokens), np.asarray(out.count)
        samples = tokens.shape[1] if num_samples is None else num_samples
        return [
            [tokens[b, j, : counts[b, j]].tolist() for j in range(samples)]
            for b in range(num_prompts)
        ]

    def text_of(self, ids: Sequence[int]) -> str:
        """Decoded text of generated ids, without the text of special tokens: neither a final
        EOS ("<|im_end|>") nor one sampled mid-solution ("x=x+<bos>3") is part of the answer,
        of what a grader reads, or of a step a PRM should read. The ids keep every sampled
        token (the cache holds them, and the stop strings are matched on their texts)."""
        if self.lm.tokenizer is None:
            raise ValueError("texts need a tokenizer; this model has none")
        # An EOS id from the model's config need not be a special token of its tokenizer.
        if ids and ids[-1] in self.eos_id_set:
            ids = ids[:-1]
        return self.lm.tokenizer.decode(ids, skip_special_tokens=True)

    def step_texts(
        self, out: StepOutput, num_prompts: int, num_samples: int | None = None
    ) -> list[list[str]]:
        """Text of the step each sample added in one `extend` call: ``[prompt][sample]``,
        without a final EOS token's text.

        Not cut at the stop string: a token that completes the delimiter may carry more text
        ("\n\nThe"), and that text is already in the sample's cache, so it belongs to this
        step for the next one to read on consistently.
        """
        return [
            [self.text_of(ids) for ids in samples]
            for samples in self.new_tokens(out, num_prompts, num_samples)
        ]

    def reorder(self, state: DecodeState, indices, moved=None) -> DecodeState:
        """Sample n' of question b continues sample ``indices[b, n']`` (beam selection,
        fan-out; see `ttc_jax.engine.decode.reorder` and `ttc_jax.engine.selection`). Rows
        past ``indices``' questions only pad the batch and follow sample 0. Only the
        questions listed in ``moved`` (question indices, or a [questions, N] bool mask of
        samples; default: all) are selecting: the other samples stay as they are, whatever
        their indices say, and only the moved rows are copied. ``state``
        is consumed: with as many samples as before it is donated, so its memory is reused;
        with another count (N' != N) there is nothing to reuse and it is copied."""
        check_live(state, "reorder")
        rows, samples = state.pending.shape
        padded = padded_indices(indices, rows, samples)
        with jax.set_mesh(self.lm.mesh):
            if moved is not None and padded.shape[1] == samples:
                sources, targets = moved_rows(padded, moved, rows)
                return self._move(state, jnp.asarray(sources), jnp.asarray(targets))
            if padded.shape[1] == samples:
                return self._reorder(state, jnp.asarray(padded))
            return self._resize(state, jnp.asarray(padded))

    def freeze(self, state: DecodeState, frozen) -> DecodeState:
        """``state`` with the samples marked in ``frozen`` [questions, N] (bool; rows past the
        questions stay as they are) ended for good (`Finish.FROZEN`). ``state`` is consumed."""
        check_live(state, "freeze")
        padded = self._sample_mask(state, frozen, "frozen")
        with jax.set_mesh(self.lm.mesh):
            return self._freeze(state, padded)

    @staticmethod
    def _sample_mask(state: DecodeState, mask, name: str) -> jax.Array:
        """A [questions, N] bool mask padded to the state's rows (padding rows: False)."""
        rows, samples = state.pending.shape
        padded = np.zeros((rows, samples), bool)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.ndim != 2 or mask.shape[0] > rows or mask.shape[1] != samples:
                raise ValueError(f"{name} must be [questions (at most {rows}), {samples}] booleans")
            padded[: mask.shape[0]] = mask.astype(bool)
        return jnp.asarray(padded)

    @staticmethod
    def _row_budget(state: DecodeState, budget, max_tokens: int) -> jax.Array:
        """[rows, N] int32: the most tokens each sample may add in one call (padding rows and
        ``budget=None``: ``max_tokens``)."""
        rows, samples = state.pending.shape
        padded = np.full((rows, samples), max_tokens, np.int32)
        if budget is not None:
            budget = np.asarray(budget)
            if (
                budget.ndim != 2
                or budget.shape[0] > rows
                or budget.shape[1] != samples
                or not np.issubdtype(budget.dtype, np.integer)
                or (budget.size and budget.min() < 1)
            ):
                raise ValueError(
                    f"budget must be [questions (at most {rows}), {samples}] integers >= 1"
                )
            padded[: budget.shape[0]] = np.minimum(budget, max_tokens)
        return jnp.asarray(padded)

    @staticmethod
    def _question_mask(state: DecodeState, questions, name: str) -> jax.Array:
        """Question indices (or None: all) as a [rows] bool mask."""
        rows = state.pending.shape[0]
        if questions is None:
            return jnp.ones((rows,), bool)
        chosen = np.zeros((rows,), bool)
        indices = np.asarray(questions, int).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= rows):
            raise ValueError(f"{name} must be question indices in [0, {rows})")
        chosen[indices] = True
        return jnp.asarray(chosen)

    def checkpoint(self, state: DecodeState) -> decode.Checkpoint:
        """What `rollback` needs to undo later extensions of these samples (lookahead
        rollouts): a copy of the per-sample fields, not of the cache."""
        check_live(state, "checkpoint")
        return self._checkpoint(state)

    def rollback(self, state: DecodeState, saved: decode.Checkpoint, questions=None) -> DecodeState:
        """The samples of ``questions`` (indices; default: all) as they were at ``saved`` (no
        reorder in between); other questions' samples stay as they are. ``state`` is
        consumed."""
        check_live(state, "rollback")
        if saved.shape != state.pending.shape:
            raise ValueError(
                f"a checkpoint of {saved.shape} samples cannot roll back a state of "
                f"{state.pending.shape}"
            )
        mask = self._question_mask(state, questions, "questions")
        with jax.set_mesh(self.lm.mesh):
            return self._rollback(state, saved, mask)

    # -- vocabulary tables --------------------------------------------------------------------

    @functools.cached_property
    def eos_ids(self) -> jax.Array:
        ids = set(self.lm.config.eos_token_ids)
        tokenizer = self.lm.tokenizer
        if tokenizer is not None and tokenizer.eos_token_id is not None:
            ids.add(int(tokenizer.eos_token_id))
        ids = sorted(ids)[:MAX_EOS_IDS]
        return jnp.asarray(ids + [-1] * (MAX_EOS_IDS - len(ids)), jnp.int32)

    @functools.cached_property
    def eos_id_set(self) -> frozenset[int]:
        return frozenset(int(i) for i in np.asarray(self.eos_ids) if i >= 0)

    @functools.cached_property
    def token_texts(self) -> list[str]:
        """Text of every token id on its own ("" past the tokenizer's vocabulary)."""
        tokenizer = self.lm.tokenizer
        if tokenizer is None:
            raise ValueError("stop strings need a tokenizer; this model has none")
        known = min(len(tokenizer), self.lm.config.vocab_size)
        texts = tokenizer.batch_decode([[i] for i in range(known)])
        return texts + [""] * (self.lm.config.vocab_size - known)

    def stop_table(self, stop: tuple[str, ...]) -> tuple[jax.Array, jax.Array]:
        """The device automaton of a stop set (built once per engine and set), its states
        padded to a power of two of at least `MIN_STOP_STATES` (padding states are never
        reached), so that most stop sets share one program."""
        if stop not in self._stop_tables:
            vocab = self.lm.config.vocab_size
            if stop:
                table = build_stop_table(self.token_texts, stop)
            else:
                table = StopTable(np.zeros((1, vocab), np.int32), np.zeros((1, vocab), bool))
            states = max(MIN_STOP_STATES, bucket_length(table.num_states, 1))
            padding = ((0, states - table.num_states), (0, 0))
            self._stop_tables[stop] = (
                jnp.asarray(np.pad(table.next_state, padding)),
                jnp.asarray(np.pad(table.completes, padding)),
            )
        return self._stop_tables[stop]


def live_rows(state: DecodeState, out: StepOutput) -> np.ndarray:
    """[B, N] bool: the samples an extension can still advance (not ended, not paused)."""
    return (np.asarray(state.finish) == Finish.RUNNING) & (np.asarray(out.finish) != Finish.STOP)


def settled_groups(live: np.ndarray, out: StepOutput, group: int) -> np.ndarray:
    """[B, N / group] bool: groups of ``group`` consecutive samples of a question (all N: the
    question) that decoded in this extension and have no live sample left."""
    b, n = live.shape
    decoded = np.asarray(out.count).reshape(b, n // group, group).sum(axis=2) > 0
    return decoded & ~live.reshape(b, n // group, group).any(axis=2)


def lane_plan(
    live: np.ndarray, settle: bool, min_lanes: int = MIN_LANES
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The lanes of one decode call for the live rows ``live`` [B, N], and when it ends.

    Lanes: the live rows' ids (question major), padded with the id B x N (a lane that writes
    nothing) to a power of two of at least ``min_lanes``, so that few programs compile (each
    lane count is one more decode program per suffix stage, and on a CPU compiling them costs
    more than finer sizes save), and to no more lanes than the B x N rows, nor fewer than
    `MIN_LANES`. The call ends once fewer than half its lanes are live (``exit_below``; never
    at the fewest lanes) and then goes on with the live rows in fewer lanes; with ``settle``
    (a search scoring steps), at the fewest lanes, it also ends as soon as some question has
    no live lane (``settle_below``), so that its step is scored. ``min_lanes`` >= B x N
    computes every row in every call.
    """
    rows = np.flatnonzero(live.reshape(-1)).astype(np.int32)
    # Never fewer than MIN_LANES, whatever ``min_lanes``: a product of one row rounds
    # differently from the same row among others (docs/engine.md, "Batch shape and float
    # bits").
    fewest = max(MIN_LANES, min(min_lanes, live.size))
    width = max(fewest, min(live.size, 1 << max(0, len(rows) - 1).bit_length()))
    lanes = np.full((width,), live.size, np.int32)
    lanes[: len(rows)] = rows
    exit_below = width // 2 if width > fewest else 0
    settle_below = width + 1 if settle and width == fewest else 0
    return jnp.asarray(lanes), jnp.int32(exit_below), jnp.int32(settle_below)


_DEFAULT_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def default_min_lanes(config: ModelConfig) -> int:
    """`MIN_LANES` for a model of at least `LANES_FROM_PARAMS` non-embedding parameters;
    `ALL_ROWS` for a smaller one, whose rows cost less to compute than more programs cost to
    compile."""
    return MIN_LANES if non_embedding_params(config) >= LANES_FROM_PARAMS else ALL_ROWS


def default_engine(lm: LanguageModel) -> Engine:
    """The engine of ``lm`` with default options (lanes by `default_min_lanes`), built once
    per model (its compiled programs and stop tables are reused by every later call)."""
    if lm not in _DEFAULT_ENGINES:
        _DEFAULT_ENGINES[lm] = Engine(lm, min_lanes=default_min_lanes(lm.config))
    return _DEFAULT_ENGINES[lm]


def check_count(value, name: str) -> int:
    """``value`` if it is an integer >= 1; a clear error naming ``name`` otherwise."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_live(state: DecodeState, operation: str) -> None:
    """A clear error for a state whose arrays were donated to an earlier call."""
    if any(leaf.is_deleted() for leaf in jax.tree.leaves(state) if isinstance(leaf, jax.Array)):
        raise ValueError(
            f"cannot {operation}: this DecodeState was consumed (donated) by an earlier "
            "extend or reorder; continue from the state that call returned"
        )
