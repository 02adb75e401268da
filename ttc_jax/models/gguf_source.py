"""Read a GGUF file (llama.cpp's format) as a transformers-layout tensor source plus a config.

Tensors are renamed to transformers' keys and dequantised to float32 with the ``gguf`` package,
and the query/key rows that llama.cpp permutes for its RoPE kernel are put back, so the shared
converter in `ttc_jax.models.checkpoint` handles GGUF and safetensors alike.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ttc_jax.errors import (
    CorruptCheckpointError,
    UnexpectedTensorError,
    UnsupportedArchitectureError,
    UnsupportedQuantizationError,
)
from ttc_jax.models.config import ModelConfig

if TYPE_CHECKING:
    import gguf

# ``gguf`` is imported only when a GGUF file is read: `ttc_jax.lm` imports this module, and a
# benchmark or serving machine that only loads safetensors (or random weights) need not
# install llama.cpp's package just to import ttc_jax.
_FLOAT_TYPE_NAMES = ("F32", "F16", "BF16")
_QUANT_TYPE_NAMES = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K")
SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3")
# GGUF architecture -> transformers model_type, where the two differ.
_MODEL_TYPES = {"gemma3": "gemma3_text"}
# llama.cpp's Gemma 3: five sliding layers then a global one, the sliding ones with RoPE base
# 1e4 (fixed in its code, not in the file's metadata, unless the file carries a
# ``attention.sliding_window_pattern``), as transformers assumes too.
_GEMMA3_SLIDING_PATTERN = 6
_GEMMA3_LOCAL_ROPE_THETA = 10_000.0

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.bias": "self_attn.o_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "ffn_gate.bias": "mlp.gate_proj.bias",
    "ffn_up.bias": "mlp.up_proj.bias",
    "ffn_down.bias": "mlp.down_proj.bias",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
}
# Gemma's norms: llama.cpp's ``ffn_norm`` is the norm before the MLP, which Gemma calls
# pre_feedforward_layernorm, and its post_attention_layernorm norms the attention output.
_GEMMA_LAYER_NAMES = {
    **_LAYER_NAMES,
    "ffn_norm.weight": "pre_feedforward_layernorm.weight",
    "post_attention_norm.weight": "post_attention_layernorm.weight",
    "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
}
_LAYER_PATTERN = re.compile(r"blk\.(\d+)\.(.+)")
# llama.cpp's Llama 3 frequency factors: part of the config, not a weight.
_ROPE_FREQS = "rope_freqs.weight"


def _gguf():
    """The ``gguf`` module, imported on first use (see the note above)."""
    import gguf

    return gguf


@functools.cache
def _reader_class() -> type[gguf.GGUFReader]:
    """`gguf.GGUFReader`, reading through a plain array view of its memory map.

    The reader slices its map once or twice per metadata value and per string of an array (the
    vocabulary and the merges: about 100k strings for a 49k-token vocabulary), and tensor data
    are slices of it too. Every slice of an ``np.memmap`` runs Python-level subclass hooks, which
    make up most of the time the reader takes; a plain view of the same memory reads the same
    bytes without them and keeps the map alive.
    """

    class PlainViewReader(_gguf().GGUFReader):
        @property
        def data(self) -> np.ndarray:
            return self._plain_data

        @data.setter
        def data(self, mapped: np.ndarray) -> None:
            self._plain_data = mapped.view(np.ndarray)

    return PlainViewReader


@functools.cache
def supported_types() -> frozenset[gguf.GGMLQuantizationType]:
    """Quantisation types `GGUFSource` can dequantise."""
    types = _gguf().GGMLQuantizationType
    return frozenset(types[name] for name in _FLOAT_TYPE_NAMES + _QUANT_TYPE_NAMES)


def transformers_name(gguf_name: str, architecture: str = "llama") -> str:
    """GGUF tensor name -> transformers state-dict key; unknown names are an error."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    layer_names = _GEMMA_LAYER_NAMES if architecture == "gemma3" else _LAYER_NAMES
    match = _LAYER_PATTERN.fullmatch(gguf_name)
    if match and match.group(2) in layer_names:
        return f"model.layers.{match.group(1)}.{layer_names[match.group(2)]}"
    raise UnexpectedTensorError(f"GGUF tensor {gguf_name!r} has no place in the model")


class GGUFSource:
    """A GGUF checkpoint: its config, and its tensors under transformers' names and layout."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF file {self.path} does not exist")
        try:
            self.reader = _reader_class()(self.path)
        except Exception as e:  # the reader raises ValueError, struct or numpy errors
            raise CorruptCheckpointError(f"{self.path} is not a readable GGUF file: {e}") from e
        self.architecture = self._field("general.architecture")
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedArchitectureError(
                f"GGUF architecture {self.architecture!r} is not supported; "
                f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        self._tensors = {}
        supported = supported_types()
        for tensor in self.reader.tensors:
            if tensor.tensor_type not in supported:
                raise UnsupportedQuantizationError(
                    f"GGUF tensor {tensor.name!r} is stored as {tensor.tensor_type.name}; "
                    f"supported: {', '.join(sorted(t.name for t in supported))}"
                )
            if tensor.name != _ROPE_FREQS:
                self._tensors[transformers_name(tensor.name, self.architecture)] = tensor
        self.config = self._config()

    @property
    def has_tokenizer(self) -> bool:
        return "tokenizer.ggml.model" in self.reader.fields

    def _field(self, key: str, default=None):
        field = self.reader.fields.get(key)
        return default if field is None else field.contents()

    def _config(self) -> ModelConfig:
        """The config, read through `ModelConfig.from_hf_dict` from the metadata put in
        transformers' terms, so that each family's switches are set in one place."""
        arch = self.architecture

        def meta(name, default=None):
            return self._field(f"{arch}.{name}", default)

        heads = meta("attention.head_count")
        hidden = meta("embedding_length")
        head_dim = meta("attention.key_length") or hidden // heads
        eos = self._field("tokenizer.ggml.eos_token_id")
        hf = {
            "model_type": _MODEL_TYPES.get(arch, arch),
            "vocab_size": meta("vocab_size") or len(self._field("tokenizer.ggml.tokens")),
            "hidden_size": hidden,
            "num_hidden_layers": meta("block_count"),
            "num_attention_heads": heads,
            "num_key_value_heads": meta("attention.head_count_kv", heads),
            "head_dim": head_dim,
            "intermediate_size": meta("feed_forward_length"),
            "rms_norm_eps": float(meta("attention.layer_norm_rms_epsilon", 1e-6)),
            "rope_theta": float(meta("rope.freq_base", 10000.0)),
            "max_position_embeddings": meta("context_length", 4096),
            "tie_word_embeddings": "lm_head.weight" not in self._tensors,
        }
        if arch == "gemma3":
            # A pattern in the file is a period (int) or one flag per layer (True: sliding).
            pattern = meta("attention.sliding_window_pattern", _GEMMA3_SLIDING_PATTERN)
            if isinstance(pattern, list):
                hf["layer_types"] = [
                    "sliding_attention" if sliding else "full_attention" for sliding in pattern
                ]
            else:
                hf["sliding_window_pattern"] = pattern
            hf.update(
                sliding_window=meta("attention.sliding_window"),
                rope_local_base_freq=_GEMMA3_LOCAL_ROPE_THETA,
                # llama.cpp scales Gemma 3's queries by head_dim ** -0.5 (the 27B model aside).
                query_pre_attn_scalar=head_dim,
            )
            if meta("rope.scaling.type") == "linear":
                hf["rope_scaling"] = {"rope_type": "linear", "factor": meta("rope.scaling.factor")}
        config = ModelConfig.from_hf_dict(hf)
        return config.replace(
            rope_freq_factors=self._rope_freq_factors(),
            qkv_bias="model.layers.0.self_attn.q_proj.bias" in self._tensors,
            o_bias="model.layers.0.self_attn.o_proj.bias" in self._tensors,
            mlp_bias="model.layers.0.mlp.gate_proj.bias" in self._tensors,
            model_type=hf["model_type"],
            bos_token_id=self._field("tokenizer.ggml.bos_token_id"),
            eos_token_ids=() if eos is None else (int(eos),),
        )

    def _rope_freq_factors(self) -> tuple[float, ...] | None:
        for tensor in self.reader.tensors:
            if tensor.name == _ROPE_FREQS:
                return tuple(float(f) for f in _dequantize(tensor))
        return None

    def shapes(self) -> dict[str, tuple[int, ...]]:
        # GGUF lists dimensions innermost first; numpy (and torch) outermost first.
        return {key: tuple(int(d) for d in reversed(t.shape)) for key, t in self._tensors.items()}

    def read(self, key: str) -> np.ndarray:
        weight = _dequantize(self._tensors[key])
        if self.architecture == "llama" and key.endswith(("q_proj.weight", "k_proj.weight")):
            cfg = self.config
            heads = cfg.num_heads if key.endswith("q_proj.weight") else cfg.num_kv_heads
            weight = unpermute_rope_rows(weight, heads)
        if self.architecture == "gemma3" and key.endswith("norm.weight"):
            # llama.cpp stores Gemma's norm weights with their unit offset added.
            weight = weight - 1.0
        return weight


def _dequantize(tensor) -> np.ndarray:
    shape = tuple(int(d) for d in reversed(tensor.shape))
    values = _gguf().quants.dequantize(tensor.data, tensor.tensor_type)
    return np.asarray(values, dtype=np.float32).reshape(shape)


def unpermute_rope_rows(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo llama.cpp's interleaving of each head's rows ([out, in] layout)."""
    out_dim, in_dim = weight.shape
    head_dim = out_dim // num_heads
    return (
        weight.reshape(num_heads, head_dim // 2, 2, in_dim).swapaxes(1, 2).reshape(out_dim, in_dim)
    )
