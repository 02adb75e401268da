"""Strategy configs become typed, frozen specs at the edge; the searches read only those."""

import dataclasses

import pytest

from ttc_jax.engine import SamplingConfig
from ttc_jax.search import strategy_config
from ttc_jax.search.specs import ParallelSpec, RevisionSpec, TreeSpec, strategy_spec


def test_each_strategy_gets_the_spec_of_what_its_search_does():
    majority = strategy_spec(strategy_config("majority"), 4, has_prm=False)
    assert isinstance(majority, ParallelSpec) and not majority.uses_verifier
    assert strategy_spec(strategy_config("best_of_n"), 4, has_prm=True).uses_verifier
    beam = strategy_spec(strategy_config("beam"), 16, has_prm=True)
    dvts = strategy_spec(strategy_config("dvts"), 16, has_prm=True)
    assert isinstance(beam, TreeSpec) and not beam.independent_subtrees
    assert dvts.independent_subtrees
    config = strategy_config("lookahead")
    config.lookahead_steps = 3
    assert strategy_spec(config, 16, has_prm=True).lookahead_steps == 3
    assert beam.lookahead_steps == 0
    config = strategy_config("revisions")
    config.update(temperature=0.5, top_k=7, sequential=2)
    revisions = strategy_spec(config, 8, has_prm=True)
    assert isinstance(revisions, RevisionSpec) and revisions.sequential == 2
    assert revisions.sampling == SamplingConfig(temperature=0.5, top_p=1.0, top_k=7)


def test_a_spec_is_frozen():
    spec = strategy_spec(strategy_config("beam"), 16, has_prm=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.beam_width = 2


def test_a_bad_config_is_an_error_before_a_spec_exists():
    config = strategy_config("beam")
    del config["beam_width"]
    with pytest.raises(ValueError, match="lacks field"):
        strategy_spec(config, 16, has_prm=True)
    with pytest.raises(ValueError, match="does not divide"):
        strategy_spec(strategy_config("dvts"), 6, has_prm=True)
    with pytest.raises(ValueError, match="needs a PRM"):
        strategy_spec(strategy_config("beam"), 16, has_prm=False)
