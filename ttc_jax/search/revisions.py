"""Sequential revisions: chains of attempts, each conditioned on the chain's earlier ones.

A budget N runs ``N / sequential`` parallel chains of ``sequential`` attempts per question.
Attempt t of a chain is sampled from the revision model given the revision prompt
(`ttc_jax.math.prompts.FewShotPrompt.revision_text`: the question and the chain's last four
attempts); the first attempt's prompt is the plain one. All chains of all questions sample
together, one decode per attempt index; each chain has its own sampling stream, so chains
whose prompts coincide still differ.

Selection (``revision_selection``):
* "verifier": the revision verifier scores every attempt with its history in context (its
  question text is the attempt's revision prompt); best-of-N weighted picks an answer
  within each chain, then best-of-N weighted over the chains' picks;
* "majority": a vote over every answer of every chain.
"""

from __future__ import annotations

import numpy as np

from ttc_jax.engine import Engine
from ttc_jax.math.datasets import Problem
from ttc_jax.math.prompts import split_steps
from ttc_jax.prm import PRM
from ttc_jax.search.candidates import Outcome, candidate, choose
from ttc_jax.search.prompting import Prompter
from ttc_jax.search.results import Candidate, TokenCounts
from ttc_jax.search.specs import RevisionSpec
from ttc_jax.search.state import SearchState


def revision_search(
    spec: RevisionSpec,
    engine: Engine,
    prm: PRM | None,
    prompter: Prompter,
    problems: list[Problem],
    budget: int,
    seed: int,
) -> tuple[list[Outcome], list[SearchState]]:
    length = spec.sequential
    chains = budget // length
    attempts = [[[] for _ in range(chains)] for _ in problems]  # [q][chain] -> texts
    prompts = [[[] for _ in range(chains)] for _ in problems]  # the prompt of each attempt
    slots = [[[] for _ in range(chains)] for _ in problems]
    counts = [TokenCounts() for _ in problems]
    searches = []
    for _ in range(length):
        texts = [
            prompter.revision_text(problem, attempts[q][c])
            for q, problem in enumerate(problems)
            for c in range(chains)
        ]
        search = SearchState(
            engine,
            None,
            texts,
            texts,
            1,
            spec.max_new_tokens,
            seed,
            streams=[c for _ in problems for c in range(chains)],
            whole_solutions=True,
        )
        searches.append(search)
        search.extend(spec.sampling, stop=(), max_tokens=spec.max_new_tokens)
        search.close_steps(None, spec.step_delimiter, whole_solutions=True)
        for row, (history, used) in enumerate(zip(search.history, search.counts, strict=True)):
            q, c = divmod(row, chains)
            slot = history[0]
            attempts[q][c].append(slot.text)
            prompts[q][c].append(texts[row])
            slots[q][c].append(slot)
            counts[q].prefill += used.prefill
            counts[q].decode += used.decode
    outcomes = []
    if spec.revision_selection == "verifier":
        scored_by_question = _verify(prm, prompts, slots, spec, counts)
    for q in range(len(problems)):
        if spec.revision_selection == "verifier":
            scored = scored_by_question[q]
            candidates = [c for chain in scored for c in chain]
            chosen = _two_level_choice(scored, spec.selection)
        else:
            candidates = [candidate(slot, spec.aggregation) for chain in slots[q] for slot in chain]
            chosen = choose(candidates, "majority")
        outcomes.append(Outcome(candidates, chosen, counts[q]))
    return outcomes, searches


def _verify(prm: PRM, prompts, slots, spec: RevisionSpec, counts) -> list[list[list[Candidate]]]:
    """Every attempt of every question's chains scored with its history in context, in one
    `PRM.score_batch` call: ``[question][chain][attempt]`` candidates."""
    rows = [
        (q, prompt, slot)
        for q, (question_prompts, question_slots) in enumerate(zip(prompts, slots, strict=True))
        for chain_prompts, chain in zip(question_prompts, question_slots, strict=True)
        for prompt, slot in zip(chain_prompts, chain, strict=True)
    ]
    questions = [prompt for _, prompt, _ in rows]
    steps = [[split_steps(slot.text, spec.step_delimiter) or [""]] for _, _, slot in rows]
    scores = prm.score_batch(questions, steps)
    for (q, prompt, _), candidate_steps in zip(rows, steps, strict=True):
        counts[q].verifier += prm.input_length(prompt, candidate_steps[0])
    index, scored = 0, []
    for question_slots in slots:
        chains = []
        for chain in question_slots:
            row = []
            for slot in chain:
                slot.scores[:] = scores[index][0]
                row.append(candidate(slot, spec.aggregation))
                index += 1
            chains.append(row)
        scored.append(chains)
    return scored


def _two_level_choice(chains: list[list[Candidate]], method: str) -> int | None:
    """Index (chain-major) of the pick across the chains' own picks, both by ``method``."""
    picks = []
    for c, chain in enumerate(chains):
        chosen = choose(chain, method)
        if chosen is not None:
            picks.append((c, chosen))
    if not picks:
        return None
    best = choose([chains[c][i] for c, i in picks], method)
    if best is None:
        return None
    c, i = picks[best]
    offsets = np.cumsum([0] + [len(chain) for chain in chains])
    return int(offsets[c] + i)
