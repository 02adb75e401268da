"""The fused projections: one matrix product for query, key and value, one for gate and up,
each equal to the separate products of transformers' weights."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ttc_jax.models.checkpoint import transformers_layout
from ttc_jax.models.config import ModelConfig
from ttc_jax.models.layers import MLP, Attention

CFG = ModelConfig(
    vocab_size=32,
    hidden_size=24,
    intermediate_size=40,
    num_layers=1,
    num_heads=6,
    num_kv_heads=2,
    head_dim=8,
    qkv_bias=True,
    mlp_bias=True,
)


def _matrix_products(fn, *args) -> int:
    jaxpr = jax.make_jaxpr(fn)(*args)
    return sum(eqn.primitive.name == "dot_general" for eqn in jaxpr.eqns)


def test_each_input_is_read_by_one_matrix_product():
    # Separate products of one input are merged by XLA's GPU compiler, which then
    # concatenates their weights at every decode step (see `ttc_jax.models.layers`).
    attention = Attention(CFG, jnp.float32, nnx.Rngs(0))
    mlp = MLP(CFG, jnp.float32, nnx.Rngs(0))
    x = jnp.ones((2, 3, CFG.hidden_size))
    angles = jnp.zeros((2, 3, CFG.head_dim))
    assert _matrix_products(lambda x: attention.project_qkv(x, angles + 1, angles), x) == 1
    assert _matrix_products(mlp, x) == 2  # gate and up, then down


def test_fused_weights_equal_the_separate_products():
    rng = np.random.default_rng(0)
    e, h, k, d, f = 24, 6, 2, 8, 40
    torch_layout = {
        "q_proj.weight": (h * d, e),
        "k_proj.weight": (k * d, e),
        "v_proj.weight": (k * d, e),
        "q_proj.bias": (h * d,),
        "k_proj.bias": (k * d,),
        "v_proj.bias": (k * d,),
        "gate_proj.weight": (f, e),
        "up_proj.weight": (f, e),
        "gate_proj.bias": (f,),
        "up_proj.bias": (f,),
    }
    tensors = {name: rng.standard_normal(shape) for name, shape in torch_layout.items()}
    layout = transformers_layout(CFG)

    def fused(path):
        tensor = layout[("layers", 0, *path)]
        return tensor.to_param(*(tensors[".".join(key.split(".")[-2:])] for key in tensor.keys))

    attention = Attention(CFG, jnp.float32, nnx.Rngs(0))
    attention.qkv_proj[...] = jnp.asarray(fused(("attn", "qkv_proj")), jnp.float32)
    attention.qkv_bias[...] = jnp.asarray(fused(("attn", "qkv_bias")), jnp.float32)
    mlp = MLP(CFG, jnp.float32, nnx.Rngs(0))
    mlp.gate_up_proj[...] = jnp.asarray(fused(("mlp", "gate_up_proj")), jnp.float32)
    mlp.gate_up_bias[...] = jnp.asarray(fused(("mlp", "gate_up_bias")), jnp.float32)
    mlp.down_proj[...] = jnp.eye(f, e)

    x = rng.standard_normal((2, 3, e))
    # Zero angles: RoPE leaves q and k as projected.
    no_rotation = (jnp.ones((2, 3, d)), jnp.zeros((2, 3, d)))
    q, key, value = attention.project_qkv(jnp.asarray(x, jnp.float32), *no_rotation)

    def linear(name):
        return x @ tensors[f"{name}.weight"].T + tensors[f"{name}.bias"]

    # Query head j uses kv head j // (h // k), as transformers' repeat_kv does.
    np.testing.assert_allclose(q, linear("q_proj").reshape(2, 3, h, d), atol=1e-5)
    np.testing.assert_allclose(key, linear("k_proj").reshape(2, 3, k, d), atol=1e-5)
    np.testing.assert_allclose(value, linear("v_proj").reshape(2, 3, k, d), atol=1e-5)

    hidden = jax.nn.silu(linear("gate_proj")) * linear("up_proj")
    np.testing.assert_allclose(
        mlp(jnp.asarray(x, jnp.float32)), hidden[..., :e], rtol=1e-5, atol=1e-4
    )
