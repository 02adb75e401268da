"""The abstract parameter tree: shapes, dtypes and logical axes known before any weight is read.

Random initialisation, Hugging Face loading and GGUF loading all fill the same tree, each
tensor placed straight into its `NamedSharding`. Parameters travel as a plain nested dict
("pure dict") keyed like the module attributes, e.g. ``params["layers"][3]["attn"]["q_proj"]``;
``nnx.merge(graphdef, params)`` turns them back into a `Transformer` inside jitted code.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util
from jax.sharding import Mesh

from ttc_jax.models.config import ModelConfig
from ttc_jax.models.layers import INIT_STD
from ttc_jax.models.transformer import Transformer
from ttc_jax.sharding import ShardingRules

ParamPath = tuple[str | int, ...]
Params = dict[str, Any]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def resolve_dtype(dtype) -> jnp.dtype:
    """'float32' | 'bfloat16' | a jnp dtype -> jnp dtype; anything else is an error."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not supported; choose one of {sorted(DTYPES)}")
        return jnp.dtype(DTYPES[dtype])
    dtype = jnp.dtype(dtype)
    if dtype not in [jnp.dtype(d) for d in DTYPES.values()]:
        raise ValueError(f"dtype {dtype} is not supported; choose one of {sorted(DTYPES)}")
    return dtype


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    shape: tuple[int, ...]
    dtype: jnp.dtype
    logical_axes: tuple[str | None, ...]
    init: str  # "normal" | "ones" | "zeros": how a fresh model fills it


def abstract_model(cfg: ModelConfig, dtype) -> tuple[nnx.GraphDef, dict[ParamPath, ParamSpec]]:
    """The model's graph definition and, per parameter path, its shape, dtype and axes."""
    return abstract_module(lambda: Transformer(cfg, dtype, rngs=nnx.Rngs(0)))


def abstract_module(make_module) -> tuple[nnx.GraphDef, dict[ParamPath, ParamSpec]]:
    """Graph definition and parameter specs of any module (nothing is allocated)."""
    graphdef, state = nnx.split(nnx.eval_shape(make_module))
    specs = {}
    for path, variable in nnx.to_flat_state(state):
        value = variable.get_value() if hasattr(variable, "get_value") else variable.value
        meta = variable.get_metadata()
        specs[tuple(path)] = ParamSpec(
            tuple(value.shape), value.dtype, tuple(meta["logical_axes"]), meta["init"]
        )
    return graphdef, specs


def nest(flat: dict[ParamPath, Any]) -> Params:
    """{("layers", 0, "attn", "q_proj"): x} -> {"layers": {0: {"attn": {"q_proj": x}}}}."""
    return traverse_util.unflatten_dict(flat)


def flatten(params: Params) -> dict[ParamPath, Any]:
    return traverse_util.flatten_dict(params)


def param_shardings(specs: dict[ParamPath, ParamSpec], mesh: Mesh, rules: ShardingRules):
    """Nested dict of NamedSharding matching the parameter tree."""
    return nest({path: rules.sharding(mesh, s.logical_axes, s.shape) for path, s in specs.items()})


def random_params(cfg: ModelConfig, dtype, mesh: Mesh, rules: ShardingRules, seed: int = 0):
    """Randomly initialised parameters of a model, each placed straight into its sharding."""
    _, specs = abstract_model(cfg, resolve_dtype(dtype))
    return random_tree(specs, mesh, rules, seed)


def random_tree(
    specs: dict[ParamPath, ParamSpec],
    mesh: Mesh,
    rules: ShardingRules,
    seed: int = 0,
    stream: tuple[int, ...] = (),
) -> Params:
    """Random values for parameter specs (of a model or any module), each placed into its
    sharding. A ``stream`` whose last word is not 0 gives values independent of the default
    stream's for the same seed (numpy's seed sequences ignore trailing zeros).

    Drawn with numpy on the host: compiling JAX's counter-based RNG for every parameter costs
    seconds of XLA time per model shape, while numpy needs none.
    """
    flat = {}
    for index, (path, spec) in enumerate(sorted(specs.items(), key=lambda item: str(item[0]))):
        if spec.init == "normal":
            rng = np.random.default_rng([seed, index, *stream])
            value = INIT_STD * rng.standard_normal(spec.shape, dtype=np.float32)
        elif spec.init == "ones":
            value = np.ones(spec.shape, np.float32)
        else:
            value = np.zeros(spec.shape, np.float32)
        sharding = rules.sharding(mesh, spec.logical_axes, spec.shape)
        flat[path] = jax.device_put(value.astype(spec.dtype), sharding)
    return nest(flat)
