"""Export to Hugging Face folders: load_lm / load_prm read back exactly what was trained, and
transformers' PyTorch models compute the same logits and values."""

import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import ttc_jax
from ttc_jax.embedded.tokenizer import save_tokenizer
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.export import save_causal_lm, save_value_prm
from ttc_jax.models.params import flatten
from ttc_jax.prm.kinds import TtcValueFormat
from ttc_jax.training.objectives import new_value_head, packed_hidden_states, value_logits
from ttc_jax.training.packing import pack
from ttc_jax.training.value_data import value_example

# Grouped-query attention (2 query heads per KV head) so that the q/k/v split is exercised.
CONFIG = ModelConfig(
    vocab_size=120,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    intermediate_size=48,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_ids=(2,),
)


def assert_same_params(a, b):
    flat_a, flat_b = flatten(a), flatten(b)
    assert flat_a.keys() == flat_b.keys()
    for path, value in flat_a.items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(flat_b[path]), str(path))


@pytest.mark.parametrize("tied", [True, False])
def test_causal_lm_round_trip_and_torch_parity(tmp_path, tied):
    cfg = CONFIG.replace(tie_word_embeddings=tied)
    lm = ttc_jax.LanguageModel.random(cfg, seed=4)
    save_causal_lm(tmp_path, cfg, lm.params)
    loaded = ttc_jax.load_lm(tmp_path)
    assert loaded.config == cfg
    assert_same_params(loaded.params, lm.params)
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 11))
    with torch.no_grad():
        expected = reference(torch.tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(np.asarray(lm.logits(tokens)), expected, atol=1e-4)


def test_value_prm_round_trip_scores_as_trained(tmp_path):
    lm = ttc_jax.LanguageModel.random(CONFIG, seed=5)
    head = new_value_head(CONFIG.hidden_size, seed=6)
    save_value_prm(tmp_path, CONFIG, lm.params, head)
    tokenizer = save_tokenizer(tmp_path)
    prm = ttc_jax.load_prm(tmp_path, "ttc_value")
    assert_same_params(prm.backbone.params, lm.params)
    np.testing.assert_array_equal(np.asarray(prm.head_params["value_proj"]), head["value_proj"])

    # The training example's labelled positions are the very tokens `PRM.score` reads.
    question, steps = "Let x = 1 and y = 2.", ["a) x=1+2=3", "The answer is \\boxed{32}."]
    example = value_example(TtcValueFormat(tokenizer), question, steps, [0.25, 1.0])
    batch, _ = pack([example], 0, num_rows=1, row_length=64, target_dtype=np.float32)
    hidden = packed_hidden_states(nnx.merge(lm.graphdef, lm.params), batch)
    trained = 1 / (1 + np.exp(-np.asarray(value_logits(head, hidden))))[batch.weights > 0]
    np.testing.assert_allclose(prm.score(question, [steps])[0], trained, atol=1e-5)
    np.testing.assert_array_equal(batch.targets[batch.weights > 0], [0.25, 1.0])

    # And transformers' decoder with the value head rebuilt in torch agrees.
    backbone = transformers.AutoModel.from_pretrained(tmp_path).eval()
    tensors = {"weight": torch.tensor(np.asarray(head["value_proj"])[None])}
    linear = torch.nn.Linear(CONFIG.hidden_size, 1)
    linear.load_state_dict({**tensors, "bias": torch.tensor([float(head["value_bias"])])})
    with torch.no_grad():
        states = backbone(torch.tensor(example.tokens[None])).last_hidden_state
        values = torch.sigmoid(linear(states))[0, :, 0].numpy()
    np.testing.assert_allclose(values[batch.weights[0, : len(example)] > 0], trained, atol=1e-4)


def test_value_prm_needs_tied_embeddings(tmp_path):
    cfg = CONFIG.replace(tie_word_embeddings=False)
    lm = ttc_jax.LanguageModel.random(cfg)
    with pytest.raises(ValueError, match="tied embeddings"):
        save_value_prm(tmp_path, cfg, lm.params, new_value_head(cfg.hidden_size, 0))
