"""Tiny random PRM checkpoints in each family's published layout, and PyTorch references.

Every checkpoint folder holds what a real one holds - ``config.json``, ``model.safetensors``
with the published tensor names, a tokenizer (with its chat template where the family uses
one) - so ``ttc_jax.load_prm(folder, kind)`` goes through the normal path. The tokenizer is a
byte-level BPE trained here on a few sentences, like Llama 3's and Qwen2's. Each `Reference`
scores steps the way the family's published inference code does: it builds the whole text,
tokenizes it in one piece and runs transformers' PyTorch modules with torch heads.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    processors,
    trainers,
)

from tests import checkpoints

KINDS = ("math_shepherd", "rlhflow", "qwen_math_prm", "skywork", "ttc_value", "ttc_likelihood")

BOS = "<|bos|>"
SPECIAL_TOKENS = [
    BOS,
    "<|eot|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|im_start|>",
    "<|im_end|>",
    "<extra_0>",
]
STEP_TAG = "ки"
# Above the tokenizer's 321 ids; the spare rows are never looked up.
VOCAB_SIZE = 336

CORPUS = [
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning.",
    "She bakes muffins for her friends every day with four eggs.",
    "Step 1: Janet sells 16 - 3 - 4 = 9 duck eggs a day.",
    "Step 2: She makes 9 * 2 = 18 dollars every day at the market.",
    "What is 12 + 35? Let x = 4 and y = 7, so x + y = 11.",
    "The answer is \\boxed{18}. Please reason step by step.",
]

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
    "<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."

# kind -> (adds BOS to every encode call, chat template)
TOKENIZER_STYLE = {
    "math_shepherd": (True, None),  # Mistral's tokenizer
    "rlhflow": (True, LLAMA3_TEMPLATE),  # Llama 3.1's
    "qwen_math_prm": (False, QWEN_TEMPLATE),
    "skywork": (False, None),  # Qwen2.5's, with a BOS string the inference code writes
    "ttc_value": (False, None),
    "ttc_likelihood": (False, None),
}


@functools.cache
def _trained_bpe() -> str:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    # Math-Shepherd's tag is one token of Mistral's vocabulary; here it is an added token.
    tokenizer.add_tokens([AddedToken(STEP_TAG, normalized=False)])
    return tokenizer.to_str()


def build_tokenizer(kind: str) -> transformers.PreTrainedTokenizerFast:
    adds_bos, template = TOKENIZER_STYLE[kind]
    backend = Tokenizer.from_str(_trained_bpe())
    if adds_bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", special_tokens=[(BOS, backend.token_to_id(BOS))]
        )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token="<|eot|>"
    )
    if template is not None:
        tokenizer.chat_template = template
    assert len(tokenizer) <= VOCAB_SIZE
    return tokenizer


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Every weight and bias drawn so that none is trivial (as `checkpoints.hf_model`)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))


class HeadedBackbone(torch.nn.Module):
    """transformers' decoder (``model.*``) plus named torch heads, e.g. ``score`` or
    ``v_head.summary``, saved under exactly those names."""

    def __init__(self, config, heads: dict[str, torch.nn.Module]):
        super().__init__()
        self.model = transformers.AutoModel.from_config(config)
        for dotted, head in heads.items():
            owner = self
            *parents, name = dotted.split(".")
            for parent in parents:
                if not hasattr(owner, parent):
                    owner.add_module(parent, torch.nn.Module())
                owner = getattr(owner, parent)
            owner.add_module(name, head)

    def hidden(self, ids: list[int]) -> torch.Tensor:
        return self.model(torch.tensor([ids])).last_hidden_state[0]


class LikelihoodValue(torch.nn.Linear):
    """``value_head`` of a ttc_likelihood PRM: a linear unit and the likelihood's weight."""

    def __init__(self, hidden_size: int):
        super().__init__(hidden_size, 1)
        self.likelihood_weight = torch.nn.Parameter(torch.zeros(1))


def _config(config_cls, architecture: str, **overrides):
    config = config_cls(**{**checkpoints.BASE, "vocab_size": VOCAB_SIZE, **overrides})
    config.architectures = [architecture]
    return config


def _save_headed(model: HeadedBackbone, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    model.model.config.save_pretrained(folder)


# The published token-logit PRMs: Math-Shepherd is a Mistral, RLHFlow's a Llama 3.1.
CAUSAL_LM_FAMILY = {"math_shepherd": "mistral", "rlhflow": "llama"}


def build_torch_model(kind: str, seed: int = 0, family: str | None = None):
    """The PyTorch model of a kind, random weights, float32, eval mode.

    ``family`` (a `checkpoints.FAMILIES` name) replaces a token-logit kind's usual decoder.
    """
    e = checkpoints.BASE["hidden_size"]
    if kind in CAUSAL_LM_FAMILY:
        family = family or CAUSAL_LM_FAMILY[kind]
        return checkpoints.hf_model(family, seed=seed, vocab_size=VOCAB_SIZE)
    if kind == "qwen_math_prm":
        config = _config(
            transformers.Qwen2Config, "Qwen2ForProcessRewardModel", tie_word_embeddings=False
        )
        score = torch.nn.Sequential(torch.nn.Linear(e, e), torch.nn.ReLU(), torch.nn.Linear(e, 2))
        model = HeadedBackbone(config, {"score": score})
    elif kind == "skywork":
        config = _config(transformers.Qwen2Config, "Qwen2ForPrmModel", tie_word_embeddings=False)
        # Published Skywork checkpoints keep the base model's LM head too.
        model = HeadedBackbone(
            config,
            {
                "v_head.summary": torch.nn.Linear(e, 1),
                "lm_head": torch.nn.Linear(e, VOCAB_SIZE, bias=False),
            },
        )
    elif kind == "ttc_value":
        config = _config(transformers.LlamaConfig, "TtcValuePRM")
        model = HeadedBackbone(config, {"value_head": torch.nn.Linear(e, 1)})
    elif kind == "ttc_likelihood":
        config = _config(transformers.LlamaConfig, "TtcLikelihoodPRM", tie_word_embeddings=True)
        model = HeadedBackbone(config, {"value_head": LikelihoodValue(e)})
    else:
        raise ValueError(kind)
    _randomize(model, seed)
    return model.eval()


def write_checkpoint(
    kind: str, folder: Path, seed: int = 0, family: str | None = None
) -> Reference:
    """Saves a random PRM of ``kind`` with its tokenizer; returns its PyTorch reference."""
    model = build_torch_model(kind, seed, family)
    if isinstance(model, HeadedBackbone):
        _save_headed(model, folder)
    else:
        checkpoints.save_hf(model, folder)
    build_tokenizer(kind).save_pretrained(folder)
    # Loaded back as users load it: transformers picks the tokenizer class from config.json
    # (Qwen2's splits digits, for one), and the reference must see what the PRM sees.
    return Reference(kind, model, transformers.AutoTokenizer.from_pretrained(folder))


class Reference:
    """Per-step probabilities as each family's published inference code computes them."""

    def __init__(self, kind: str, model, tokenizer):
        self.kind = kind
        self.model = model
        self.tokenizer = tokenizer

    def score(self, question: str, candidates: list[list[str]]) -> list[list[float]]:
        method = getattr(self, f"_{self.kind}")
        with torch.no_grad():
            return [[float(p) for p in method(question, steps)] for steps in candidates]

    def _label_ids(self) -> list[int]:
        return [self.tokenizer.encode(label, add_special_tokens=False)[-1] for label in "+-"]

    def _math_shepherd(self, question, steps):
        output = "\n".join(f"{step} {STEP_TAG}" for step in steps)
        ids = self.tokenizer.encode(f"{question} {output}")
        logits = self.model(torch.tensor([ids])).logits[0][:, self._label_ids()]
        scores = logits.softmax(dim=-1)[:, 0]
        tag_id = self.tokenizer.encode(STEP_TAG, add_special_tokens=False)[-1]
        return scores[torch.tensor(ids) == tag_id]

    def _rlhflow(self, question, steps):
        conversation, scores = [], []
        for k, step in enumerate(steps):
            text = f"{question} {step}" if k == 0 else step
            conversation.append({"content": text, "role": "user"})
            conversation.append({"content": "+", "role": "assistant"})
            ids = self.tokenizer.apply_chat_template(conversation, return_dict=False)
            # The published code reads position -3: the token that predicts the label.
            logits = self.model(torch.tensor([ids])).logits[0, -3, self._label_ids()]
            scores.append(logits.softmax(dim=-1)[0])
        return scores

    def _qwen_math_prm(self, question, steps):
        messages = [
            {"role": "system", "content": QWEN_SYSTEM_PROMPT},
            {"role": "user", "content": question},
            {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"},
        ]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False)
        ids = self.tokenizer.encode(text)
        probabilities = self.model.score(self.model.hidden(ids)).softmax(dim=-1)
        separator = self.tokenizer.encode("<extra_0>", add_special_tokens=False)[0]
        return probabilities[torch.tensor(ids) == separator, 1]

    def _skywork(self, question, steps):
        # Skywork's prepare_input with step_token "\n" on "\n".join(steps).
        ids = self.tokenizer.encode(self.tokenizer.bos_token + question + "\n")
        step_token_id = self.tokenizer.encode("\n")[-1]
        flags = []
        for step in "\n".join(steps).split("\n"):
            ids = ids + self.tokenizer.encode(step) + [step_token_id]
            flags.append(len(ids) - 1)
        values = self.model.v_head.summary(self.model.hidden(ids))[:, 0]
        return torch.sigmoid(values[flags])

    def _ttc_value(self, question, steps):
        text = question + "\n\n"
        step_ends = []
        for step in steps:
            text += step + "\n\n"
            step_ends.append(len(text))
        encoded = self.tokenizer(text, return_offsets_mapping=True)
        token_ends = [end for _, end in encoded["offset_mapping"]]
        scored = [token_ends.index(end) for end in step_ends]
        values = self.model.value_head(self.model.hidden(encoded["input_ids"]))[:, 0]
        return torch.sigmoid(values[scored])

    def _ttc_likelihood(self, question, steps):
        # The whole text tokenized at once; the likelihood sums log p(token | before) over
        # every step token but each step's first, the value head adds its weighted sum.
        text = f"Problem:\n{question}\n\nSolution:\n"
        spans = []
        for step in steps:
            spans.append((len(text), len(text) + len(step) + 1))
            text += step + "\n"
        encoded = self.tokenizer(text, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        hidden = self.model.hidden(ids)
        log_probs = (hidden @ self.model.model.embed_tokens.weight.T).log_softmax(dim=-1)
        token_log_probs = [0.0] + [float(log_probs[t - 1, ids[t]]) for t in range(1, len(ids))]
        head = self.model.value_head
        scores, total = [], 0.0
        for start, end in spans:
            inside = [t for t, (a, b) in enumerate(offsets) if a >= start and b <= end]
            total += sum(token_log_probs[t] for t in inside[1:])
            value = head(hidden[inside[-1]])[0] + head.likelihood_weight[0] * total
            scores.append(torch.sigmoid(value))
        return scores
