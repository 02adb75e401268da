"""Search strategies do what the paper says, independently of batching, with exact accounting.

The policy is a tiny random model whose samples are full of step ends and boxed answers; the
PRM is scripted (`tests.search_helpers.ScriptedPRM`): every score is a known function of the
question and the step, and every call is logged.
"""

import dataclasses
import math

import jax
import numpy as np
import pytest

import ttc_jax
from tests import prm_checkpoints, search_helpers
from tests.search_helpers import PROBLEMS, ScriptedPRM, scripted_score
from ttc_jax import program_cache
from ttc_jax.engine import Engine, default_engine
from ttc_jax.math import is_equiv
from ttc_jax.math.prompts import split_steps
from ttc_jax.models.config import non_embedding_params
from ttc_jax.prm.kinds import build_format
from ttc_jax.search import STRATEGIES, run, strategy_config, tree
from ttc_jax.search.prompting import step_text
from ttc_jax.search.state import SearchState


@pytest.fixture(scope="module")
def policy():
    return search_helpers.tiny_policy()


def _config(name, **overrides):
    config = strategy_config(name)
    config.max_new_tokens = 40
    if name in ("beam", "lookahead", "dvts"):
        config.beam_width = 2
    if name == "revisions":
        config.sequential = 2
    config.update(overrides)
    return config


def _recording_select(monkeypatch):
    """Records every group's selection: (scores, live, spent, width, indices, next live),
    the arrays [group size]."""
    calls = []
    original = tree.select_group

    def select(scores, live, spent, width):
        indices, next_live = original(scores, live, spent, width)
        calls.append((scores.copy(), live.copy(), spent, width, indices.copy(), next_live.copy()))
        return indices, next_live

    monkeypatch.setattr(tree, "select_group", select)
    return calls


def _raw_steps(text):
    """A candidate's text cut back into the steps it was generated as."""
    return [line + "\n" for line in text.split("\n")[:-1]] + (
        [text.split("\n")[-1]] if text.split("\n")[-1] else []
    )


def _kept(indices_row, next_live_row):
    return sorted({int(i) for i, alive in zip(indices_row, next_live_row, strict=True) if alive})


@pytest.mark.parametrize("budget", [4, 8])
def test_beam_search_keeps_exactly_the_top_n_over_m_by_the_latest_step_score(
    policy, monkeypatch, budget
):
    calls = _recording_select(monkeypatch)
    prm = ScriptedPRM(policy)
    run(_config("beam"), policy, prm, PROBLEMS, budget=budget, seed=2)
    checked = 0
    for scores, live, spent, width, indices, next_live in calls:
        assert len(live) == budget and width == 2
        beams = np.flatnonzero(live)
        room = budget - spent
        if not len(beams) or room <= 0:
            assert not next_live.any()
            continue
        keep = max(1, room // width)
        ranked = sorted(beams, key=lambda n: (-scores[n], n))[:keep]
        assert _kept(indices, next_live) == sorted(ranked)
        assert next_live.sum() == room  # copies fill exactly the unspent slots
        checked += 1
    assert checked > 10
    # The scores ranked were the scripted PRM's scores of each slot's latest step.
    selections = iter(calls)
    latest = {}
    for event in prm.calls:
        if event[0] == "step":
            _, _, q, n, _, values = event
            latest[q, n] = values[-1]
        elif event[0] == "reorder":
            _, indices, moved = event
            for q in np.flatnonzero(moved.any(axis=1)):
                scores, live = next(selections)[:2]
                for n in np.flatnonzero(live):
                    assert scores[n] == pytest.approx(latest[q, n])
            latest = {
                (q, n): latest.get((q, int(i)))
                for q in range(len(indices))
                for n, i in enumerate(indices[q])
                if (q, int(i)) in latest
            }


def test_lookahead_ranks_by_the_rollouts_last_score_and_keeps_no_rollout_step(policy, monkeypatch):
    calls = _recording_select(monkeypatch)
    prm = ScriptedPRM(policy)
    results = run(_config("lookahead", lookahead_steps=2), policy, prm, PROBLEMS, 4, seed=3)
    # A question's round: its first scored call after its last selection scores its real
    # steps, its next two score rollout steps (beside other questions' steps), then both
    # models roll it back, then it selects.
    selections = iter(calls)
    kept_steps, rollout_steps, main_call, last = set(), set(), {}, {}
    for event in prm.calls:
        if event[0] == "step":
            _, call_number, q, n, steps, values = event
            main_call.setdefault(q, call_number)
            last[q, n] = values[-1]
            (kept_steps if call_number == main_call[q] else rollout_steps).update(
                (q, step) for step in steps
            )
        elif event[0] == "reorder":
            for q in np.flatnonzero(event[2].any(axis=1)):
                scores, live = next(selections)[:2]
                for n in np.flatnonzero(live):
                    assert scores[n] == pytest.approx(last[q, n])
                main_call.pop(q, None)
                last = {key: value for key, value in last.items() if key[0] != q}
        else:
            assert event[0] == "rollback"
    assert next(selections, None) is None
    assert rollout_steps - kept_steps  # the greedy rollouts wrote steps the search never kept
    for q, result in enumerate(results):
        question = PROBLEMS[q].problem
        for candidate in result.candidates:
            steps = [step_text(raw, "\n") for raw in _raw_steps(candidate.text)]
            steps = [step for step in steps if step]  # blank steps are not scored
            assert all((q, step) in kept_steps for step in steps)
            assert candidate.step_scores == [scripted_score(question, s) for s in steps]
    # The rollouts cost tokens and generations.
    beam = run(_config("beam"), policy, ScriptedPRM(policy), PROBLEMS, 4, seed=3)
    assert sum(r.accounting.policy_decode_tokens for r in results) > sum(
        r.accounting.policy_decode_tokens for r in beam
    )
    assert results[0].accounting.generations == 4 * 3


def test_weighted_best_of_n_picks_the_largest_score_sum_over_equivalent_answers(policy):
    results = run(_config("best_of_n"), policy, ScriptedPRM(policy), PROBLEMS, budget=8, seed=4)
    decided = 0
    for result in results:
        sums = {}
        for candidate in result.candidates:
            if candidate.finished and candidate.answer is not None:
                key = next((k for k in sums if is_equiv(k, candidate.answer)), candidate.answer)
                sums[key] = sums.get(key, 0.0) + candidate.score
        if sums:
            best = max(sums.values())
            assert any(is_equiv(result.answer, k) for k, v in sums.items() if v == best)
            decided += 1
        else:
            assert result.answer is None
        for candidate in result.candidates:  # last-step aggregation
            if candidate.step_scores:
                assert candidate.score == candidate.step_scores[-1]
    assert decided >= 3


def test_dvts_subtrees_never_exchange_candidates(policy):
    prm = ScriptedPRM(policy)
    run(_config("dvts", beam_width=2), policy, prm, PROBLEMS, budget=8, seed=5)
    assert len(prm.reorders) > 1
    for indices in prm.reorders:
        groups = np.arange(indices.shape[1]) // 2
        np.testing.assert_array_equal(indices // 2, np.broadcast_to(groups, indices.shape))


def test_a_dvts_subtree_selects_as_soon_as_its_own_slots_end_their_step(policy):
    prm = ScriptedPRM(policy)
    run(_config("dvts", beam_width=2), policy, prm, PROBLEMS, budget=8, seed=5)
    moved = [call[2] for call in prm.calls if call[0] == "reorder"]
    subtrees = [mask[:, :8].reshape(len(mask), 4, 2) for mask in moved]
    # A subtree moves whole or not at all...
    assert all((s.all(axis=2) == s.any(axis=2)).all() for s in subtrees)
    # ...and some subtree selected while another of its question was still in its step.
    assert any((s.any(axis=2) & ~s.any(axis=2).all(axis=1, keepdims=True)).any() for s in subtrees)


def test_dvts_results_do_not_depend_on_the_pace_of_the_other_subtrees(policy, monkeypatch):
    """Each subtree selecting at its own pace gives the same candidates, in the same order,
    as every subtree waiting for its question's slowest."""
    config = _config("dvts", beam_width=2)
    own_pace = run(config, policy, ScriptedPRM(policy), PROBLEMS, budget=8, seed=5)
    decode = tree._Tree.decode

    def question_pace(self, sampling):
        ready = decode(self, sampling)
        live = self._by_group(self.live).any(axis=2)
        return ready & (ready | ~live).all(axis=1, keepdims=True)

    monkeypatch.setattr(tree._Tree, "decode", question_pace)
    together = run(config, policy, ScriptedPRM(policy), PROBLEMS, budget=8, seed=5)
    for mine, theirs in zip(own_pace, together, strict=True):
        assert mine.answer == theirs.answer
        assert [c.text for c in mine.candidates] == [c.text for c in theirs.candidates]
        assert [c.step_scores for c in mine.candidates] == [
            c.step_scores for c in theirs.candidates
        ]
        # The same tokens and generations (wall time aside).
        assert dataclasses.replace(mine.accounting, wall_s=0) == dataclasses.replace(
            theirs.accounting, wall_s=0
        )


def test_lookahead_rolls_out_beside_other_questions_sampling(policy, monkeypatch):
    """A question's greedy rollouts share decode calls with other questions' sampled steps:
    nothing is held while another question looks ahead."""
    calls = []
    extend = SearchState.extend

    def spy(self, sampling, stop, max_tokens, hold=None, return_on_pause=False, **options):
        greedy = options.get("greedy")
        live = np.array([[not slot.ended for slot in row] for row in self.history])
        decoding = live & ~(np.zeros_like(live) if hold is None else hold)
        if greedy is not None:
            calls.append(((decoding & greedy).any(), (decoding & ~greedy).any()))
        return extend(self, sampling, stop, max_tokens, hold, return_on_pause, **options)

    monkeypatch.setattr(SearchState, "extend", spy)
    config = _config("lookahead", lookahead_steps=2)
    run(config, policy, ScriptedPRM(policy), PROBLEMS, budget=4, seed=3)
    assert any(rolling and sampling for rolling, sampling in calls)


@pytest.mark.parametrize("name", ["beam", "lookahead", "dvts"])
def test_a_step_is_cut_at_exactly_max_step_tokens(policy, monkeypatch, name):
    """However long a decode call runs, no step grows past ``max_step_tokens`` tokens."""
    longest = []
    absorb = SearchState._absorb

    def spy(self, round_):
        absorb(self, round_)
        longest.append(max(slot.pending_tokens for row in self.history for slot in row))

    monkeypatch.setattr(SearchState, "_absorb", spy)
    config = _config(name, max_step_tokens=3, tokens_per_call=64)
    run(config, policy, ScriptedPRM(policy), PROBLEMS[:3], budget=4, seed=8)
    assert max(longest) == 3


def test_revisions_hold_at_most_four_previous_attempts(policy):
    prm = ScriptedPRM(policy)
    results = run(_config("revisions", sequential=6), policy, prm, PROBLEMS[:2], 6, seed=6)
    counts = [q.count("Previous attempt:") for q in prm.revision_questions]
    assert max(counts) == 4 and sorted(set(counts)) == [0, 1, 2, 3, 4]
    assert all(len(r.candidates) == 6 for r in results)


@pytest.mark.parametrize(
    "name, whole", [("majority", True), ("best_of_n", True), ("revisions", True), ("beam", False)]
)
def test_whole_solution_searches_allocate_the_suffix_at_once(policy, name, whole, monkeypatch):
    """Sampling and revisions decode whole solutions in one call: the cache holds all of
    max_new_tokens from the start (one decode program). Tree searches grow it in stages."""
    allocations = []
    original = Engine.start

    def start(self, batch, num_samples, capacity, seed, allocate=None):
        state = original(self, batch, num_samples, capacity, seed, allocate=allocate)
        allocations.append((capacity, state.cache.capacity))
        return state

    monkeypatch.setattr(Engine, "start", start)
    prm = None if name == "majority" else ScriptedPRM(policy)
    run(_config(name, max_new_tokens=100), policy, prm, PROBLEMS[:2], budget=4, seed=7)
    assert allocations
    for capacity, allocated in allocations:
        assert capacity == 128
        assert allocated == (capacity if whole else default_engine(policy).suffix_stage)


@pytest.mark.parametrize("name", STRATEGIES)
def test_five_questions_together_equal_one_at_a_time(policy, name):
    config = _config(name)
    prm = None if name == "majority" else ScriptedPRM(policy)
    together = run(config, policy, prm, PROBLEMS, budget=4, seed=7)
    for problem, joint in zip(PROBLEMS, together, strict=True):
        [alone] = run(config, policy, prm, [problem], budget=4, seed=7)
        assert alone.answer == joint.answer
        assert [c.text for c in alone.candidates] == [c.text for c in joint.candidates]
        for a, b in zip(alone.candidates, joint.candidates, strict=True):
            np.testing.assert_allclose(a.step_scores, b.step_scores, atol=1e-5)
        assert alone.accounting.policy_decode_tokens == joint.accounting.policy_decode_tokens
        assert alone.accounting.verifier_tokens == joint.accounting.verifier_tokens


def test_accounting_equals_a_count_by_hand(policy):
    [problem] = PROBLEMS[:1]
    prm = ScriptedPRM(policy)
    [result] = run(_config("best_of_n"), policy, prm, [problem], budget=2, seed=8)
    prompt = "Problem:\nWhat is 1 + 2?\n\nSolution:\n"
    samples = ttc_jax.generate(policy, [prompt], n=2, max_new_tokens=40, temperature=0.8, seed=8)[0]
    assert [c.text for c in result.candidates] == [s.text for s in samples]
    prompt_tokens = len(policy.tokenizer(prompt)["input_ids"])
    decoded = sum(len(s.token_ids) for s in samples)
    steps = [split_steps(s.text) for s in samples]
    verifier = len(problem.problem) + sum(len(step) + 1 for c in steps for step in c)
    c = policy.config
    params = (
        c.num_layers
        * (
            c.hidden_size * (c.num_heads + 2 * c.num_kv_heads) * c.head_dim
            + c.num_heads * c.head_dim * c.hidden_size
            + 3 * c.hidden_size * c.intermediate_size
            + 2 * c.hidden_size
        )
        + c.hidden_size
    )
    assert non_embedding_params(c) == params
    accounting = result.accounting
    assert accounting.generations == 2
    assert accounting.policy_prefill_tokens == prompt_tokens
    assert accounting.policy_decode_tokens == decoded
    assert accounting.verifier_tokens == verifier
    assert accounting.policy_flops == 2 * params * (prompt_tokens + decoded)
    assert accounting.verifier_flops == 2 * params * verifier
    assert accounting.wall_s > 0
    assert result.correct == is_equiv(result.answer, problem.answer)


@pytest.mark.parametrize(
    ("change", "budget", "message"),
    [
        (dict(name="sample_more"), 4, "unknown strategy 'sample_more'; choose one of: majority"),
        (dict(beam_width=3), 4, "beam_width M=3 does not divide the budget N=4"),
        (dict(), 0, "budget must be an integer >= 1, got 0"),
        (dict(max_new_tokens=0), 4, "max_new_tokens must be an integer >= 1"),
        (dict(selection="vote"), 4, "unknown answer selection 'vote'"),
        (dict(step_delimiter=""), 4, "step_delimiter must be a non-empty string"),
    ],
)
def test_bad_strategies_fail_before_any_compute(change, budget, message):
    policy = search_helpers.tiny_policy(seed=1)
    config = _config("beam")
    for key, value in change.items():
        config[key] = value
    with pytest.raises(ValueError, match=message):
        run(config, policy, ScriptedPRM(policy), PROBLEMS, budget=budget)
    assert default_engine(policy)._start._cache_size() == 0


def test_bad_prms_and_problems_fail_before_any_compute():
    policy = search_helpers.tiny_policy(seed=2)
    with pytest.raises(ValueError, match="strategy 'beam' as configured needs a PRM"):
        run(_config("beam"), policy, None, PROBLEMS, budget=4)
    with pytest.raises(ValueError, match=r"problems\[1\] is str, not a Problem"):
        run(_config("majority"), policy, None, [PROBLEMS[0], "What is 2?"], budget=2)
    with pytest.raises(ValueError, match="unknown field"):
        run(_config("majority", beam_width=2), policy, None, PROBLEMS, budget=2)
    # A Qwen PRM whose tokenizer lacks its step separator as one token.
    tokenizer = search_helpers.tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    small = ttc_jax.ModelConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
        head_dim=8, intermediate_size=16,
    )  # fmt: skip
    with pytest.raises(ValueError, match="'<extra_0>' is not a single token of this tokenizer"):
        ttc_jax.PRM.random(small, "qwen_math_prm", tokenizer)
    # A PRM folder whose tokenizer belongs to a model with a larger vocabulary.
    prm = ttc_jax.PRM.random(small, "ttc_value", tokenizer)
    larger = prm_checkpoints.build_tokenizer("ttc_value")
    prm.backbone.tokenizer = larger
    prm.format = build_format("ttc_value", larger)
    with pytest.raises(ValueError, match=r"the PRM's tokenizer has \d+ tokens, more than its"):
        run(_config("beam"), policy, prm, PROBLEMS, budget=4)
    with pytest.raises(ValueError, match="grader must be callable as grader"):
        run(_config("majority"), policy, None, PROBLEMS, budget=2, grader="is_equiv")
    assert default_engine(policy)._start._cache_size() == 0


def test_the_search_grades_with_the_grader_it_is_given(policy):
    """`run` holds no task of its own: correctness is the given grader's verdict, called with
    the chosen answer and the gold one."""
    calls = []

    def grader(answer, gold):
        calls.append((answer, gold))
        return answer is not None

    default = run(_config("majority"), policy, None, PROBLEMS, budget=4, seed=9)
    graded = run(_config("majority"), policy, None, PROBLEMS, budget=4, seed=9, grader=grader)
    assert [(r.answer, p.answer) for r, p in zip(graded, PROBLEMS, strict=True)] == calls
    assert [r.correct for r in graded] == [r.answer is not None for r in graded]
    golds = [p.answer for p in PROBLEMS]
    assert [r.correct for r in default] == [
        is_equiv(r.answer, gold) for r, gold in zip(default, golds, strict=True)
    ]
    assert [r.answer for r in default] == [r.answer for r in graded]


def test_unfinished_candidates_are_never_chosen(policy):
    results = run(_config("majority", max_new_tokens=3), policy, None, PROBLEMS, budget=4, seed=9)
    for result in results:
        unfinished = [c for c in result.candidates if not c.finished]
        if result.answer is not None:
            assert any(c.finished and c.answer == result.answer for c in result.candidates)
        assert len(unfinished) + sum(c.finished for c in result.candidates) == 4
    assert any(not c.finished for r in results for c in r.candidates)
    assert all(math.isnan(c.score) for r in results for c in r.candidates)


def test_configs_search_gives_each_strategys_defaults():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "configs" / "search.py"
    spec = importlib.util.spec_from_file_location("search_configs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in STRATEGIES:
        config = module.get_config(name)
        assert config.name == name and config == strategy_config(name)
        assert {"max_new_tokens", "temperature", "step_delimiter", "prompt"} <= set(config)
        if name in ("beam", "lookahead", "dvts"):
            assert config.max_rounds == 40
    assert module.get_config().name == "best_of_n"
    with pytest.raises(ValueError, match="unknown strategy 'bfs'"):
        module.get_config("bfs")


@pytest.mark.parametrize("name", ["beam", "lookahead", "dvts"])
def test_a_tree_search_pool_admits_questions_into_ended_rows_and_each_gets_what_it_gets_alone(
    policy, monkeypatch, name
):
    """With room for two questions (8 rows of budget 4), the five questions run as one pool:
    each of the last three takes the rows of a question that has ended, beside one still
    searching, and every question's candidates, scores and counts are those of the five
    searched at once."""
    config, prm = _config(name), ScriptedPRM(policy)
    together = run(config, policy, prm, PROBLEMS, budget=4, seed=7)
    admitted, stats = [], []
    real_admit = SearchState.admit

    def recorded(self, rows, prompts, questions):
        admitted.append((list(rows), list(questions)))
        real_admit(self, rows, prompts, questions)

    monkeypatch.setattr(SearchState, "admit", recorded)
    pooled = run(config, policy, prm, PROBLEMS, budget=4, seed=7, max_rows=8,
                 on_batch=stats.append)  # fmt: skip
    assert sorted(q for _, questions in admitted for q in questions) == sorted(
        p.problem for p in PROBLEMS[2:]
    )
    assert all(set(rows) <= {0, 1} for rows, _ in admitted)
    assert [s.questions for s in stats] == [5]
    for alone, joint in zip(together, pooled, strict=True):
        assert [c.text for c in alone.candidates] == [c.text for c in joint.candidates]
        assert [c.step_scores for c in alone.candidates] == [
            c.step_scores for c in joint.candidates
        ]
        assert alone.answer == joint.answer
        assert alone.accounting.policy_prefill_tokens == joint.accounting.policy_prefill_tokens
        assert alone.accounting.policy_decode_tokens == joint.accounting.policy_decode_tokens
        assert alone.accounting.verifier_tokens == joint.accounting.verifier_tokens


def test_batches_report_their_rounds_lanes_calls_and_time(policy):
    stats = []
    results = run(
        _config("best_of_n"), policy, ScriptedPRM(policy), PROBLEMS, budget=4, seed=10,
        max_rows=8, on_batch=stats.append,
    )  # fmt: skip
    assert [s.questions for s in stats] == [2, 2, 1]  # 8 rows hold two questions of 4
    generated = [r.accounting.policy_decode_tokens for r in results]
    assert [s.generated_tokens for s in stats] == [sum(generated[:2]), sum(generated[2:4]),
                                                   generated[4]]  # fmt: skip
    for batch in stats:
        assert batch.rounds >= 1 and batch.decode_steps >= batch.rounds
        assert batch.device_calls >= batch.rounds and batch.verifier_calls >= 1
        assert batch.generated_tokens <= batch.lane_steps
        assert 0 < batch.lane_utilisation <= 1 and 0 < batch.kv_slot_utilisation <= 1
        assert batch.decode_s > 0 and batch.host_s >= 0
        assert batch.decode_s + batch.verify_s + batch.select_s <= batch.wall_s
    assert sum(r.accounting.wall_s for r in results) == pytest.approx(sum(s.wall_s for s in stats))


def _crowded_mappings(monkeypatch) -> list[bool]:
    """Makes the process's memory mappings always crowd the limit; returns the list that
    records what each `program_cache.release_if_crowded` call returned."""
    released = []
    real = program_cache.release_if_crowded

    def recorded():
        released.append(real())
        return released[-1]

    monkeypatch.setattr(program_cache, "mapping_limit", lambda: 1)
    monkeypatch.setattr(program_cache, "release_if_crowded", recorded)
    return released


def test_a_search_near_the_mapping_limit_releases_programs_between_batches(policy, monkeypatch):
    """Each batch starts by releasing compiled programs when the process's memory mappings
    crowd the kernel's limit (`ttc_jax.program_cache`); the programs compile again and the
    results do not change."""
    settings = dict(budget=4, seed=10, max_rows=8)
    before = run(_config("best_of_n"), policy, ScriptedPRM(policy), PROBLEMS, **settings)
    released = _crowded_mappings(monkeypatch)
    after = run(_config("best_of_n"), policy, ScriptedPRM(policy), PROBLEMS, **settings)
    assert released == [True, True, True]  # three batches of at most two questions
    assert [r.candidates for r in after] == [r.candidates for r in before]


def test_a_batch_counts_the_programs_it_compiled(policy):
    """`BatchStats.programs_compiled`: the first call compiles, the same shapes again do not."""
    jax.clear_caches()  # whatever other tests compiled, the first call compiles its programs
    stats = []
    for _ in range(2):
        run(_config("beam"), policy, ScriptedPRM(policy), PROBLEMS[:2], budget=4, seed=10,
            on_batch=stats.append)  # fmt: skip
    first, second = stats
    assert first.programs_compiled > 0
    assert second.programs_compiled == 0


def test_training_rollouts_near_the_mapping_limit_release_programs_between_calls(
    policy, monkeypatch
):
    """`ttc-train`'s sampling stages run thousands of prompts in calls of
    ``prompts_per_call``; each call starts by releasing compiled programs when the mappings
    crowd the limit (a stage crashed in a compile for want of it), and the samples do not
    change."""
    from ttc_jax.training.rollouts import SamplingSettings, sample_solutions

    settings = SamplingSettings(temperature=1.0, max_new_tokens=8, prompts_per_call=2)
    prompts = [p.problem for p in PROBLEMS]
    before = sample_solutions(policy, prompts, 2, settings, seed=3)
    released = _crowded_mappings(monkeypatch)
    after = sample_solutions(policy, prompts, 2, settings, seed=3)
    assert released == [True, True, True]  # three calls of at most two prompts
    assert [[s.token_ids for s in row] for row in after] == [
        [s.token_ids for s in row] for row in before
    ]
