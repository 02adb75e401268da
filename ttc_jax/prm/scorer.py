"""`PRM`: batched, jitted step scores, in full or incrementally inside a search.

Full scoring (`PRM.score`, `PRM.score_batch`) runs one causal forward pass over each
candidate's whole token sequence and reads the head at every step's scored token.

Incremental scoring keeps the PRM's own shared-prefix KV cache (`ttc_jax.engine.kv_cache`):

    state = prm.start(questions, num_candidates)           # prefill each question once
    state, scores = prm.score_step(state, new_steps)        # [B][N] texts -> [B, N] scores
    state, scores = prm.score_steps(state, steps_lists)     # [B][N] lists -> [B][N] lists
    state = prm.reorder(state, indices)                     # follow the search's beams
    saved = state.checkpoint(); ...; state = prm.rollback(state, saved)  # undo a lookahead

`score_steps` appends only the new steps' tokens, for every question and candidate in one
jitted call (each candidate at its own cache position; only the rows of questions with new
steps run), and reads each new step's score. Both
paths use the same piecewise token ids (see `ttc_jax.prm.kinds`), so incremental scores equal
full rescoring. Chunk lengths, batch rows and the cache capacity are bucketed, so a search
compiles a handful of programs. ``PRMState.processed`` counts the tokens the PRM ran per
question, for compute accounting.

A ``ttc_likelihood`` PRM's head also reads the backbone's log-likelihood, as a language model,
of the solution so far: the sum over every step token but each step's first, whose
probability would come from the previous piece's last position (another call, when scoring
incrementally) and which says only that a step begins. ``PRMState.likelihood`` carries the sum
from call to call.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from ttc_jax.bucketing import bucket_length, round_up
from ttc_jax.engine import kv_cache
from ttc_jax.engine.kv_cache import KVCache
from ttc_jax.engine.selection import moved_mask, moved_rows, padded_indices
from ttc_jax.lm import LanguageModel
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.params import Params, random_tree
from ttc_jax.prm.heads import LikelihoodValueHead, abstract_head
from ttc_jax.prm.kinds import PRMFormat, build_format
from ttc_jax.sharding import ShardingRules

# Suffix slots a fresh incremental state reserves per candidate; it doubles when full.
DEFAULT_CAPACITY = 256
# Attention scores (rows x heads x width x width) one `score_batch` call may hold: 512 MiB
# in float32. More rows are scored in several calls.
SCORE_BATCH_ELEMENTS = 2**27
# Random heads draw from their own stream, independent of the backbone's draws for one seed.
_HEAD_STREAM = (1,)


def headless(cfg: ModelConfig) -> ModelConfig:
    """The decoder of a PRM, without an LM head.

    A `Transformer` with tied embeddings holds no ``lm_head``; a PRM never asks its backbone
    for vocabulary logits, so tying is only a way to leave the head out.
    """
    return cfg.replace(tie_word_embeddings=True)


@dataclasses.dataclass(frozen=True)
class PRMState:
    """Incremental scoring state of B questions x N candidates.

    The cache is donated to the next `PRM.score_steps`, `PRM.reorder` or `PRM.rollback`: use
    each state once. Host-side arrays cover the padded rows too (rows past ``num_questions``
    are padding).
    """

    cache: KVCache
    num_questions: int
    steps_done: np.ndarray  # [rows, N] int: steps scored so far (first and later steps differ)
    lengths: np.ndarray  # [rows, N] int: tokens so far, question included
    suffix_tokens: np.ndarray  # [rows, N] int: step tokens in the cache (``cache.suffix_len``)
    # [rows] int: tokens the PRM has run per question (its question once, then every appended
    # step token, rolled back or not): the verifier's compute.
    processed: np.ndarray
    # [rows, N] float32: the backbone's log-likelihood of each candidate's steps so far (see
    # the module docstring; zeros for heads that do not read it).
    likelihood: np.ndarray

    @property
    def num_candidates(self) -> int:
        return self.steps_done.shape[1]

    def candidate_fields(self) -> dict[str, np.ndarray]:
        """Every per-candidate host field [rows, N] by name: gathered by a reorder, rolled
        back and reset by an admission together, so a new field is listed once
        (`CANDIDATE_FIELDS`)."""
        return {name: getattr(self, name) for name in CANDIDATE_FIELDS}

    def checkpoint(self) -> PRMCheckpoint:
        """What `PRM.rollback` needs to undo later steps (host copies; the cache is kept)."""
        return PRMCheckpoint({name: x.copy() for name, x in self.candidate_fields().items()})

    @staticmethod
    def fresh_fields(lengths: np.ndarray) -> dict[str, np.ndarray]:
        """The candidate fields of questions with no steps yet, whose candidates hold
        ``lengths`` [rows, N] tokens (their question's)."""
        return {
            "steps_done": np.zeros(lengths.shape, np.int64),
            "lengths": lengths,
            "suffix_tokens": np.zeros(lengths.shape, np.int64),
            "likelihood": np.zeros(lengths.shape, np.float32),
        }


# `PRMState`'s per-candidate host fields, in `PRMState.candidate_fields`.
CANDIDATE_FIELDS = ("steps_done", "lengths", "suffix_tokens", "likelihood")


@dataclasses.dataclass(frozen=True)
class PRMCheckpoint:
    fields: dict[str, np.ndarray]  # copies of `PRMState.candidate_fields`


class PRM:
    """A process reward model: a head-less decoder, its score head and its input format.

    Build one with `ttc_jax.load_prm`, or `PRM.random` for tests and benchmarks.
    ``backbone.logits`` are not the checkpoint's LM logits (the LM head is not loaded); use
    `score` and the incremental API.
    """

    def __init__(self, backbone: LanguageModel, fmt: PRMFormat, head_graphdef, head_params: Params):
        self.backbone = backbone
        self.format = fmt
        self.head_graphdef = head_graphdef
        self.head_params = head_params
        graphdefs = (backbone.graphdef, head_graphdef)
        # The programs that compute with the weights compile with the model's XLA options.
        compute = functools.partial(jax.jit, compiler_options=backbone.compiler_options)
        self._full = compute(functools.partial(_full_scores, *graphdefs))
        self._features = compute(functools.partial(_full_features, backbone.graphdef))
        self._prefill = compute(
            functools.partial(_prefill, backbone.graphdef),
            static_argnames=("num_candidates", "capacity"),
        )
        self._append = compute(
            functools.partial(_append_scores, *graphdefs), donate_argnames=("cache",)
        )
        self._append_rows = compute(
            functools.partial(_append_row_scores, *graphdefs), donate_argnames=("cache",)
        )
        # Donation lets a same-size reorder reuse the cache's memory; a reorder that changes
        # the candidate count (or a growing cache) has new shapes and nothing to reuse.
        self._reorder = jax.jit(kv_cache.reorder, donate_argnames=("cache",))
        self._resize = jax.jit(kv_cache.reorder)
        self._move = jax.jit(kv_cache.move_rows, donate_argnames=("cache",))
        self._grow = jax.jit(kv_cache.grow, static_argnames=("capacity",))
        self._put_questions = jax.jit(kv_cache.put_questions, donate_argnames=("cache",))
        self._set_lengths = jax.jit(
            lambda cache, lengths: cache.replace(suffix_len=lengths), donate_argnames=("cache",)
        )

    @classmethod
    def random(
        cls,
        config: ModelConfig,
        kind: str,
        tokenizer: Any,
        dtype="float32",
        mesh: Mesh | None = None,
        rules: ShardingRules | None = None,
        seed: int = 0,
        **format_options: Any,
    ) -> PRM:
        """A PRM of family ``kind`` with random weights of ``config``'s shape, like
        `LanguageModel.random` (tests and benchmarks; no checkpoint and no torch needed).

        ``tokenizer`` must suit the kind (a chat template for ``rlhflow`` and
        ``qwen_math_prm``) and fit ``config.vocab_size``; ``format_options`` are those of
        `ttc_jax.load_prm`. The default mesh is the first device alone.
        """
        fmt = build_format(kind, tokenizer, **format_options)
        if len(tokenizer) > config.vocab_size:
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} tokens, more than the config's "
                f"vocab_size of {config.vocab_size}"
            )
        backbone = LanguageModel.random(headless(config), dtype, mesh, rules, seed, tokenizer)
        head = abstract_head(fmt.readout, config.hidden_size, backbone.dtype)
        head_params = random_tree(head.specs, backbone.mesh, backbone.rules, seed, _HEAD_STREAM)
        return cls(backbone, fmt, head.graphdef, head_params)

    @property
    def kind(self) -> str:
        return self.format.kind

    # -- full scoring -------------------------------------------------------------------------

    def score(self, question: str, steps: Sequence[Sequence[str]]) -> list[list[float]]:
        """Scores every step of every candidate solution of one question.

        ``steps[c]`` is candidate c's list of step strings; ``result[c][s]`` is the PRM's
        probability in [0, 1] that step s of candidate c is correct (given the steps before).
        """
        return self.score_batch([question], [steps])[0]

    def score_batch(
        self, questions: Sequence[str], candidates: Sequence[Sequence[Sequence[str]]]
    ) -> list[list[list[float]]]:
        """`score` for many questions in one batch: ``candidates[question][candidate][step]``
        in, ``result[question][candidate][step]`` out."""
        scores = self._full_pass(questions, candidates, self._full_scores_of)
        return [[row.astype(float).tolist() for row in rows] for rows in scores]

    def step_features(
        self, questions: Sequence[str], candidates: Sequence[Sequence[Sequence[str]]]
    ) -> list[list[np.ndarray]]:
        """What the head reads at each step, for fitting a head on a fixed backbone:
        ``result[question][candidate]`` is [steps, hidden + 1] float32, the backbone's hidden
        state at each scored token and, last, the log-likelihood of the steps so far."""
        return self._full_pass(
            questions,
            candidates,
            lambda *arrays: self._features(self.backbone.params, *arrays),
        )

    def _full_scores_of(self, tokens, valid, score_at, counted):
        return self._full(self.backbone.params, self.head_params, tokens, valid, score_at, counted)

    def _full_pass(self, questions, candidates, run_rows) -> list[list[np.ndarray]]:
        """``run_rows(tokens, valid, score_at, counted)`` over every candidate's full token
        sequence, in chunks; its [rows, steps, ...] output split back into
        ``[question][candidate]`` arrays of the candidate's steps."""
        _check_strings(questions, "questions")
        if len(candidates) != len(questions):
            raise ValueError(
                f"{len(questions)} questions but {len(candidates)} lists of candidates"
            )
        rows, score_at, counted_at = [], [], []
        for question, question_candidates in zip(questions, candidates, strict=True):
            question_ids = self.format.question_ids(question)
            for candidate in _check_candidates(question_candidates):
                ids = list(question_ids)
                positions, counted = [], []
                for index, step in enumerate(candidate):
                    step_ids, offset = self.format.step_ids(step, index)
                    positions.append(len(ids) + offset)
                    counted.extend(range(len(ids) + 1, len(ids) + len(step_ids)))
                    ids.extend(step_ids)
                rows.append(ids)
                score_at.append(positions)
                counted_at.append(counted)
        self._check_length(max(len(r) for r in rows))
        max_steps = bucket_length(max(len(p) for p in score_at), 1)
        # Rows of one length bucket run together at that width: short candidates are not
        # padded to the longest. A full forward pass holds [rows, heads, width, width]
        # attention scores, so rows go through in chunks that keep that under
        # SCORE_BATCH_ELEMENTS.
        widths = [full_pass_width(len(r)) for r in rows]
        outputs = [None] * len(rows)
        heads = self.backbone.config.num_heads
        for width in sorted(set(widths)):
            members = [i for i, w in enumerate(widths) if w == width]
            per_call = max(1, SCORE_BATCH_ELEMENTS // (heads * width**2))
            for start in range(0, len(members), per_call):
                chunk = members[start : start + per_call]
                num_rows = self.backbone.padded_batch_size(len(chunk))
                tokens = np.zeros((num_rows, width), np.int32)
                valid = np.zeros((num_rows, width), bool)
                counted = np.zeros((num_rows, width), bool)
                positions = np.zeros((num_rows, max_steps), np.int32)
                for r, i in enumerate(chunk):
                    tokens[r, : len(rows[i])] = rows[i]
                    valid[r, : len(rows[i])] = True
                    counted[r, counted_at[i]] = True
                    positions[r, : len(score_at[i])] = score_at[i]
                with jax.set_mesh(self.backbone.mesh):
                    output = np.asarray(run_rows(tokens, valid, positions, counted))
                for r, i in enumerate(chunk):
                    outputs[i] = output[r]
        results, r = [], 0
        for question_candidates in candidates:
            results.append([outputs[r + c][: len(s)] for c, s in enumerate(question_candidates)])
            r += len(question_candidates)
        return results

    def input_length(self, question: str, steps: Sequence[str]) -> int:
        """Tokens `score` runs for one candidate: the question part and every step's."""
        return len(self.format.question_ids(question)) + sum(
            len(self.format.step_ids(step, index)[0]) for index, step in enumerate(steps)
        )

    # -- incremental scoring ------------------------------------------------------------------

    def start(
        self,
        questions: Sequence[str],
        num_candidates: int,
        capacity: int = DEFAULT_CAPACITY,
        room_for: Sequence[str] = (),
    ) -> PRMState:
        """Prefills each question once, shared by ``num_candidates`` candidates with no steps.

        ``capacity`` is the initial number of step-token slots per candidate; it grows (to the
        next power of two) when a step would not fit. ``room_for``: questions to be admitted
        later (`admit`), whose length the prefix must also hold.
        """
        _check_strings(questions, "questions")
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
        question_ids = [self.format.question_ids(q) for q in questions]
        longest = max(len(ids) for ids in question_ids)
        longest = max([longest, *(len(self.format.question_ids(q)) for q in room_for)])
        self._check_length(longest)
        width = bucket_length(longest)
        cache, lengths = self._prefill_questions(
            question_ids, width, num_candidates, bucket_length(capacity)
        )
        return PRMState(
            cache,
            len(questions),
            processed=lengths[:, 0].copy(),
            **PRMState.fresh_fields(lengths),
        )

    def admit(self, state: PRMState, slots: Sequence[int], questions: Sequence[str]) -> PRMState:
        """``state`` with the questions at ``slots`` replaced by ``questions``, each with its
        candidates and no steps, and the other questions as they are: a streaming pool's
        admission, as `ttc_jax.engine.Engine.admit` makes it for the policy. A question must
        fit the state's prefix width. An admitted question's ``processed`` count starts
        afresh (read the old one first). ``state`` is consumed."""
        _check_strings(questions, "questions")
        rows, num_candidates = state.steps_done.shape
        slots = [int(s) for s in slots]
        if len(slots) != len(questions):
            raise ValueError(f"admit: {len(questions)} questions need as many slots, got {slots}")
        if len(set(slots)) != len(slots) or not all(0 <= s < rows for s in slots):
            raise ValueError(f"admit: slots must be distinct questions in [0, {rows}), got {slots}")
        question_ids = [self.format.question_ids(q) for q in questions]
        width = state.cache.prefix_valid.shape[1]
        longest = max(len(ids) for ids in question_ids)
        if longest > width:
            raise ValueError(
                f"admit: a question of {longest} tokens does not fit the state's prefix of "
                f"{width}; start the pool with its longest question"
            )
        fresh, lengths = self._prefill_questions(
            question_ids, width, num_candidates, state.cache.capacity
        )
        padded = slots + [rows] * (lengths.shape[0] - len(slots))  # rows: dropped
        with jax.set_mesh(self.backbone.mesh):
            cache = self._put_questions(state.cache, fresh, jnp.asarray(padded, jnp.int32))

        def put(whole, values):
            whole = whole.copy()
            whole[slots] = values[: len(slots)]
            return whole

        fresh_fields = PRMState.fresh_fields(lengths)
        return dataclasses.replace(
            state,
            cache=cache,
            num_questions=max(state.num_questions, max(slots) + 1),
            processed=put(state.processed, lengths[:, 0]),
            **{name: put(x, fresh_fields[name]) for name, x in state.candidate_fields().items()},
        )

    def _prefill_questions(
        self, question_ids: list[list[int]], width: int, num_candidates: int, capacity: int
    ) -> tuple[KVCache, np.ndarray]:
        """Each question's tokens, right-aligned in ``width``, run into a fresh cache of
        ``num_candidates`` empty suffixes of ``capacity`` slots; and the tokens each candidate
        holds so far [rows, N] (its question's)."""
        num_rows = self.backbone.padded_batch_size(len(question_ids))
        tokens = np.zeros((num_rows, width), np.int32)
        valid = np.zeros((num_rows, width), bool)
        lengths = np.zeros((num_rows, num_candidates), np.int64)
        for row, ids in enumerate(question_ids):
            tokens[row, width - len(ids) :] = ids
            valid[row, width - len(ids) :] = True
            lengths[row] = len(ids)
        with jax.set_mesh(self.backbone.mesh):
            cache = self._prefill(
                self.backbone.params,
                tokens,
                valid,
                num_candidates=num_candidates,
                capacity=capacity,
            )
        return cache, lengths

    def score_step(
        self, state: PRMState, new_steps: Sequence[Sequence[str | None]]
    ) -> tuple[PRMState, np.ndarray]:
        """Appends one new step per candidate and scores it.

        ``new_steps[b][n]`` is the next step of candidate n of question b, or None when that
        candidate adds nothing this round (its score is NaN and its state unchanged). Returns
        the new state and scores [B, N] float32. ``state`` is consumed.
        """
        lists = [[[] if step is None else [step] for step in steps] for steps in new_steps]
        state, scores = self.score_steps(state, lists)
        table = np.full((state.num_questions, state.num_candidates), np.nan, np.float32)
        for b, candidates in enumerate(scores):
            for c, candidate in enumerate(candidates):
                if candidate:
                    table[b, c] = candidate[0]
        return state, table

    def score_steps(
        self, state: PRMState, new_steps: Sequence[Sequence[Sequence[str]]]
    ) -> tuple[PRMState, list[list[list[float]]]]:
        """Appends any number of new steps per candidate, in one call, and scores each.

        ``new_steps[b][n]`` lists the next steps of candidate n of question b (maybe none).
        Returns the new state and ``scores[b][n]``, one per new step. ``state`` is consumed.
        """
        rows, n = state.steps_done.shape
        if len(new_steps) != state.num_questions or any(len(s) != n for s in new_steps):
            raise ValueError(f"new_steps must be [{state.num_questions} questions][{n} candidates]")
        pieces = {}
        for b, candidates in enumerate(new_steps):
            for c, steps in enumerate(candidates):
                if isinstance(steps, str):
                    raise ValueError(f"new_steps[{b}][{c}] is a string, not a list of steps")
                ids, offsets, counts = [], [], []
                for index, step in enumerate(steps):
                    if not isinstance(step, str):
                        raise ValueError(
                            f"new_steps[{b}][{c}][{index}] is {type(step).__name__}, not a str"
                        )
                    step_ids, offset = self.format.step_ids(
                        step, int(state.steps_done[b, c]) + index
                    )
                    offsets.append(len(ids) + offset)
                    counts.extend(range(len(ids) + 1, len(ids) + len(step_ids)))
                    ids.extend(step_ids)
                if ids:
                    pieces[b, c] = (ids, offsets, counts)
        scores = [[[] for _ in range(n)] for _ in range(state.num_questions)]
        if not pieces:
            return state, scores
        chunk = bucket_length(max(len(ids) for ids, _, _ in pieces.values()))
        most_steps = bucket_length(max(len(at) for _, at, _ in pieces.values()), 1)
        tokens = np.zeros((rows, n, chunk), np.int32)
        valid = np.zeros((rows, n, chunk), bool)
        counted = np.zeros((rows, n, chunk), bool)
        score_at = np.zeros((rows, n, most_steps), np.int32)
        steps_done, lengths = state.steps_done.copy(), state.lengths.copy()
        suffix_tokens, processed = state.suffix_tokens.copy(), state.processed.copy()
        for (b, c), (ids, offsets, counts) in pieces.items():
            tokens[b, c, : len(ids)] = ids
            valid[b, c, : len(ids)] = True
            counted[b, c, counts] = True
            score_at[b, c, : len(offsets)] = offsets
            steps_done[b, c] += len(offsets)
            lengths[b, c] += len(ids)
            suffix_tokens[b, c] += len(ids)
            processed[b] += len(ids)
        self._check_length(int(lengths.max()))
        cache = state.cache
        # A search scores the questions whose candidates all ended a step, often a few of
        # many: only their rows run, gathered from the cache and written back. Their count is
        # padded to a power of two, so that a search compiles few programs.
        active = sorted({b for b, _ in pieces})
        running = round_up(bucket_length(len(active), 1), self.backbone.data_parallelism)
        with jax.set_mesh(self.backbone.mesh):
            needed = int(suffix_tokens.max())
            if needed > cache.capacity:
                cache = self._grow(cache, capacity=bucket_length(needed))
            arrays = (tokens, valid, score_at, counted, state.likelihood)
            if running < rows:
                sources = np.array(active + active[:1] * (running - len(active)))
                # Padding rows write past the last row: dropped.
                targets = np.array(active + [rows] * (running - len(active)))
                cache, part, part_likelihood = self._append_rows(
                    self.backbone.params,
                    self.head_params,
                    cache,
                    jnp.asarray(sources),
                    jnp.asarray(targets),
                    *(x[sources] for x in arrays),
                )
                table = np.zeros(score_at.shape, np.float32)
                table[active] = np.asarray(part)[: len(active)]
                likelihood = state.likelihood.copy()
                likelihood[active] = np.asarray(part_likelihood)[: len(active)]
            else:
                cache, table, likelihood = self._append(
                    self.backbone.params, self.head_params, cache, *arrays
                )
        table = np.asarray(table)
        for (b, c), (_, offsets, _) in pieces.items():
            scores[b][c] = table[b, c, : len(offsets)].astype(float).tolist()
        next_state = PRMState(
            cache,
            state.num_questions,
            steps_done,
            lengths,
            suffix_tokens,
            processed,
            np.asarray(likelihood),
        )
        return next_state, scores

    def reorder(self, state: PRMState, indices, moved=None) -> PRMState:
        """Candidate n' of question b continues candidate ``indices[b, n']`` (beam selection or
        fan-out; N' may differ from N), as `ttc_jax.engine.Engine.reorder` takes them (see
        `ttc_jax.engine.selection`): only the questions or samples in ``moved`` (default:
        all) change. ``state`` is consumed."""
        rows = state.steps_done.shape[0]
        padded = padded_indices(indices, rows, state.num_candidates)
        same_size = padded.shape[1] == state.num_candidates
        if moved is not None and same_size:
            keep = ~moved_mask(moved, rows, padded.shape[1])
            padded[keep] = np.nonzero(keep)[1]  # the others follow themselves
        with jax.set_mesh(self.backbone.mesh):
            if moved is not None and same_size:
                sources, targets = moved_rows(padded, moved, rows)
                cache = self._move(state.cache, jnp.asarray(sources), jnp.asarray(targets))
            else:
                gather = self._reorder if same_size else self._resize
                cache = gather(state.cache, jnp.asarray(padded))

        return dataclasses.replace(
            state,
            cache=cache,
            **{
                name: np.take_along_axis(x, padded, axis=1)
                for name, x in state.candidate_fields().items()
            },
        )

    def rollback(self, state: PRMState, saved: PRMCheckpoint, questions=None) -> PRMState:
        """The candidates of ``questions`` (indices; default: all) as they were at ``saved``
        (same candidates, no reorder in between): later steps are forgotten (their cache
        slots are overwritten later); other questions' candidates stay as they are. The
        tokens forgotten steps cost stay counted in ``processed``. ``state`` is consumed."""
        if saved.fields["steps_done"].shape != state.steps_done.shape:
            raise ValueError(
                f"a checkpoint of {saved.fields['steps_done'].shape} candidates cannot roll "
                f"back a state of {state.steps_done.shape}"
            )
        rows = np.zeros(state.steps_done.shape[0], bool)
        if questions is None:
            rows[:] = True
        else:
            rows[np.asarray(questions, int).reshape(-1)] = True

        def back(now, then):
            return np.where(rows[:, None], then, now)

        fields = {name: back(x, saved.fields[name]) for name, x in state.candidate_fields().items()}
        with jax.set_mesh(self.backbone.mesh):
            suffix_len = jnp.asarray(fields["suffix_tokens"], jnp.int32)
            cache = self._set_lengths(state.cache, suffix_len)
        return dataclasses.replace(state, cache=cache, **fields)

    # -- helpers ------------------------------------------------------------------------------

    def _check_length(self, length: int) -> None:
        """A clear error, before any compute, for a sequence past the PRM's context (a sliding
        window shorter than the input is fine: the full pass and the cache honour it)."""
        config = self.backbone.config
        if length > config.max_position_embeddings:
            raise ValueError(
                f"a PRM input of {length} tokens exceeds the PRM's context of "
                f"{config.max_position_embeddings} tokens"
            )


def full_pass_width(length: int) -> int:
    """Padded width of a full-scoring row: a power of two up to 256, then a multiple of 128.
    Full scoring costs the square of the width (dense causal attention), so long rows (a
    revision prompt with its history) are padded less than `bucket_length` would, for a few
    more compiled programs."""
    return bucket_length(length) if length <= 256 else round_up(length, 128)


def _check_strings(texts: Sequence[str], what: str) -> None:
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"{what} must be a non-empty list of strings")


def _check_candidates(candidates: Sequence[Sequence[str]]) -> Sequence[Sequence[str]]:
    if isinstance(candidates, str) or not candidates:
        raise ValueError("steps must be a non-empty list of candidates, each a list of steps")
    for c, candidate in enumerate(candidates):
        if isinstance(candidate, str):
            raise ValueError(
                f"candidate {c} is a string; give each candidate as a list of step strings"
            )
        if not candidate:
            raise ValueError(f"candidate {c} has no steps to score")
        for s, step in enumerate(candidate):
            if not isinstance(step, str):
                raise ValueError(f"step {s} of candidate {c} is {type(step).__name__}, not a str")
    return candidates


def _token_log_likelihoods(model, hidden, tokens, counted):
    """log p(token t | the tokens before it) at the ``counted`` positions, 0 elsewhere:
    hidden [..., T, E], tokens and counted [..., T] -> [..., T] float32. A counted token's
    predecessor must lie in the same row (position 0 is never counted)."""
    lead, (length, width) = hidden.shape[:-2], hidden.shape[-2:]
    logits = model.logits(hidden.reshape(-1, length, width)).reshape(*lead, length, -1)
    log_probs = jax.nn.log_softmax(logits[..., :-1, :], axis=-1)
    picked = jnp.take_along_axis(log_probs, tokens[..., 1:, None], axis=-1)[..., 0]
    picked = jnp.pad(picked, [(0, 0)] * len(lead) + [(1, 0)])
    return jnp.where(counted, picked, 0.0)


def _scored_full(model, tokens, valid, score_at, counted, with_likelihood: bool):
    """Hidden states [R, K, E] at the scored tokens, and (``with_likelihood``, else None) the
    steps' log-likelihood [R, K] up to each."""
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    hidden = model.hidden_states(tokens, positions, valid)  # [R, L, E]
    scored = jnp.take_along_axis(hidden, score_at[..., None], axis=1)  # [R, K, E]
    if not with_likelihood:
        return scored, None
    so_far = jnp.cumsum(_token_log_likelihoods(model, hidden, tokens, counted), axis=1)
    return scored, jnp.take_along_axis(so_far, score_at, axis=1)


def _full_scores(graphdef, head_graphdef, params, head_params, tokens, valid, score_at, counted):
    """tokens [R, L] (right-padded), score_at [R, K] -> scores [R, K] float32."""
    model = nnx.merge(graphdef, params)
    head = nnx.merge(head_graphdef, head_params)
    if isinstance(head, LikelihoodValueHead):
        return head(*_scored_full(model, tokens, valid, score_at, counted, True))
    scored, _ = _scored_full(model, tokens, valid, score_at, counted, False)
    return head(scored)


def _full_features(graphdef, params, tokens, valid, score_at, counted):
    """[R, K, E + 1]: the scored hidden states, then the likelihood so far."""
    model = nnx.merge(graphdef, params)
    scored, likelihood = _scored_full(model, tokens, valid, score_at, counted, True)
    return jnp.concatenate([scored.astype(jnp.float32), likelihood[..., None]], axis=-1)


def _prefill(graphdef, params, tokens, valid, *, num_candidates, capacity) -> KVCache:
    model = nnx.merge(graphdef, params)
    return kv_cache.prefill(model, tokens, valid, num_candidates, capacity)


def _append_row_scores(
    graphdef,
    head_graphdef,
    params,
    head_params,
    cache,
    sources,
    targets,
    tokens,
    valid,
    score_at,
    counted,
    carried,
):
    """`_append_scores` for the question rows ``sources`` [A] only (their inputs given
    [A, ...]): their prefixes and suffixes are gathered, appended to, and the suffixes
    written back to rows ``targets`` [A] (a row past the last is dropped)."""
    num_samples = cache.num_samples
    per_question = jnp.arange(num_samples)
    source_rows = (sources[:, None] * num_samples + per_question).reshape(-1)
    target_rows = (targets[:, None] * num_samples + per_question).reshape(-1)

    def take(x, indices):
        return jnp.take(x, indices, axis=0)

    part = KVCache(
        prefix_k=tuple(take(x, sources) for x in cache.prefix_k),
        prefix_v=tuple(take(x, sources) for x in cache.prefix_v),
        prefix_valid=take(cache.prefix_valid, sources),
        prefix_len=take(cache.prefix_len, sources),
        suffix_k=tuple(take(x, source_rows) for x in cache.suffix_k),
        suffix_v=tuple(take(x, source_rows) for x in cache.suffix_v),
        suffix_len=take(cache.suffix_len, sources),
    )
    part, scores, likelihood = _append_scores(
        graphdef,
        head_graphdef,
        params,
        head_params,
        part,
        tokens,
        valid,
        score_at,
        counted,
        carried,
    )

    def put(whole, rows, indices=target_rows):
        return whole.at[indices].set(rows, mode="drop")

    cache = cache.replace(
        suffix_k=tuple(map(put, cache.suffix_k, part.suffix_k)),
        suffix_v=tuple(map(put, cache.suffix_v, part.suffix_v)),
        suffix_len=put(cache.suffix_len, part.suffix_len, targets),
    )
    return cache, scores, likelihood


def _append_scores(
    graphdef, head_graphdef, params, head_params, cache, tokens, valid, score_at, counted, carried
):
    """tokens [B, N, T], score_at [B, N, K], carried likelihood [B, N] -> (cache, scores
    [B, N, K] float32, likelihood [B, N] after these tokens)."""
    model = nnx.merge(graphdef, params)
    head = nnx.merge(head_graphdef, head_params)
    hidden, cache = kv_cache.append(model, cache, tokens, valid)  # [B, N, T, E]
    scored = jnp.take_along_axis(hidden, score_at[..., None], axis=2)  # [B, N, K, E]
    if not isinstance(head, LikelihoodValueHead):
        return cache, head(scored), carried
    token_log_likelihoods = _token_log_likelihoods(model, hidden, tokens, counted)
    so_far = carried[..., None] + jnp.cumsum(token_log_likelihoods, axis=-1)
    likelihood = jnp.take_along_axis(so_far, score_at, axis=2)
    return cache, head(scored, likelihood), so_far[..., -1]
