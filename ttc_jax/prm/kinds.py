"""PRM input formats: how a question and its steps become tokens, and which token is scored.

Each published PRM family was trained on one text layout and is read at one token per step:

==================  =====================================================  ======================
kind                text                                                   scored token
==================  =====================================================  ======================
``math_shepherd``   ``question`` + `` step_1 ки`` + ``\\nstep_2 ки`` ...     the step tag ``ки``
``rlhflow``         chat: user ``question step_1``, assistant ``+``, user   the token before the
                    ``step_2``, assistant ``+`` ...                        assistant's ``+``
``qwen_math_prm``   chat: system, user ``question``, assistant              each ``<extra_0>``
                    ``step_1<extra_0>step_2<extra_0>...``
``skywork``         BOS + ``question\\n``, then each step + the ``\\n`` id    each step's ``\\n``
``ttc_value``       ``question\\n\\n``, then each ``step\\n\\n``               a step's last token
``ttc_likelihood``  ``Problem:\\n`` + question + ``\\n\\nSolution:\\n``,   each step's ``\\n``
                    then each ``step\\n`` (the plain prompt's layout)
==================  =====================================================  ======================

Token-logit kinds read P("+") against "-" from the LM's logits at the scored token; the others
read their own head (see `ttc_jax.prm.heads`). ``ttc_likelihood`` lays the text out as the
policy's plain prompt and its sampled solution, so its backbone's log-likelihood of the steps is
a language model's reading of what the policy wrote.

Tokenization is piecewise, and that is the contract that makes incremental scoring exact: the
question part and every step part (with the text that joins it to the previous step) are
tokenized separately and their ids concatenated, so scoring a new step needs only that step's
tokens, and full scoring uses the very same ids. Pieces start where a tokenizer's pre-tokenizer
splits anyway (before a space-led word, a newline or a special token), so for byte-level BPE
tokenizers (Llama 3, Qwen2) the ids equal a tokenization of the whole text. SentencePiece
tokenizers that prepend a space to every call can differ at piece starts. Chat-template
kinds render the template once with marker strings in place of the steps and cut the rendered
text at the markers; step text is inserted verbatim (a template's ``trim`` is not applied).
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

from ttc_jax.prm.heads import Readout

# Private-use characters: no tokenizer, template or user text produces them.
_MARKERS = ("\ue000ttc-step-1\ue000", "\ue000ttc-step-2\ue000")


class PRMFormat(abc.ABC):
    """A PRM family's input format, bound to the PRM's tokenizer."""

    kind: ClassVar[str]
    readout: ClassVar[Readout]
    # Checkpoint name of the head (classifier and value kinds); label-token kinds read the LM
    # head's rows of their label tokens instead.
    head_key: ClassVar[str | None] = None
    # Checkpoint tensors the family's own loader ignores (present in published checkpoints).
    ignored_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, tokenizer: Any):
        if tokenizer is None:
            raise ValueError(f"a {self.kind} PRM needs a tokenizer; the checkpoint has none")
        self.tokenizer = tokenizer

    @abc.abstractmethod
    def question_ids(self, question: str) -> list[int]:
        """Token ids of everything before the first step's text."""

    @abc.abstractmethod
    def step_ids(self, step: str, index: int) -> tuple[list[int], int]:
        """Token ids of step number ``index`` (0-based) and the position, within them, of the
        token whose hidden state scores the step."""

    def label_ids(self) -> tuple[int, int]:
        """Ids of the good and the bad label token (label-token kinds only)."""
        raise NotImplementedError(f"{self.kind} PRMs have no label tokens")

    def _encode(self, text: str, special: bool = False) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=special))

    def _last_id(self, text: str) -> int:
        ids = self._encode(text)
        if not ids:
            raise ValueError(f"{text!r} tokenizes to nothing")
        return ids[-1]


def _check_no_marker(text: str, what: str) -> None:
    if any(marker in text for marker in _MARKERS):
        raise ValueError(f"{what} contains a private-use marker string this package reserves")


def _split_at_markers(rendered: str, count: int) -> list[str]:
    """Rendered template text -> the ``count + 1`` pieces around the first ``count`` markers."""
    pieces = []
    rest = rendered
    for marker in _MARKERS[:count]:
        if rest.count(marker) != 1:
            raise ValueError(
                "the chat template does not reproduce message content verbatim; "
                "cannot locate steps in its output"
            )
        before, rest = rest.split(marker)
        pieces.append(before)
    return [*pieces, rest]


class MathShepherdFormat(PRMFormat):
    """Math-Shepherd (peiyi9979/math-shepherd-mistral-7b-prm): steps end in a tag token.

    Text: ``f"{question} {step_1} ки\\n{step_2} ки..."`` with the tokenizer's BOS; a step is
    scored at its tag by softmax over the logits of the ``+`` and ``-`` tokens, P(``+``).
    """

    kind = "math_shepherd"
    readout = Readout.LABEL_TOKENS

    def __init__(
        self, tokenizer, step_tag: str = "ки", good_label: str = "+", bad_label: str = "-"
    ):
        super().__init__(tokenizer)
        self.step_tag = step_tag
        # The tag follows a space in the text, so look it up that way. Labels are looked up
        # alone, as the published code does (SentencePiece gives the same space-led token).
        self.step_tag_id = self._last_id(" " + step_tag)
        self.labels = (good_label, bad_label)

    def label_ids(self) -> tuple[int, int]:
        return self._last_id(self.labels[0]), self._last_id(self.labels[1])

    def question_ids(self, question: str) -> list[int]:
        return self._encode(question, special=True)

    def step_ids(self, step: str, index: int) -> tuple[list[int], int]:
        if self.step_tag in step:
            raise ValueError(f"step text {step!r} contains the step tag {self.step_tag!r}")
        joiner = " " if index == 0 else "\n"
        ids = self._encode(f"{joiner}{step} {self.step_tag}")
        if ids[-1] != self.step_tag_id:
            raise ValueError(
                f"the step tag {self.step_tag!r} does not tokenize as one token at the end of "
                f"step {step!r}"
            )
        return ids, len(ids) - 1


class RLHFlowFormat(PRMFormat):
    """RLHFlow PRMs (e.g. RLHFlow/Llama3.1-8B-PRM-Mistral-Data): one chat turn per step.

    Conversation: user ``f"{question} {step_1}"``, assistant ``+``, user ``step_2``, assistant
    ``+``, ... through the tokenizer's chat template. A step is scored at the token that predicts
    its assistant label (published code: ``logits[:, -3]`` after a Llama 3 template), P(``+``)
    against ``-``.
    """

    kind = "rlhflow"
    readout = Readout.LABEL_TOKENS

    def __init__(self, tokenizer, good_label: str = "+", bad_label: str = "-"):
        super().__init__(tokenizer)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("an rlhflow PRM needs a tokenizer with a chat template")
        self.labels = (good_label, bad_label)
        self.good_id = self._last_id(good_label)
        # Text after the last step: the user turn's end and the assistant's labelled turn.
        # Between two steps: the same, then the next user turn's opening.
        _, between, after = _split_at_markers(self._render(["", *_MARKERS]), 2)
        if not between.startswith(after):
            raise ValueError("the chat template renders turns of the same role differently")
        self.turn_close = after
        self.turn_open = between[len(after) :]

    def _render(self, contents: Sequence[str]) -> str:
        """User contents (question + first step, later steps), each answered with the label."""
        question, *steps = contents
        messages = []
        for i, step in enumerate(steps):
            messages.append({"role": "user", "content": question + step if i == 0 else step})
            messages.append({"role": "assistant", "content": self.labels[0]})
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def label_ids(self) -> tuple[int, int]:
        return self.good_id, self._last_id(self.labels[1])

    def question_ids(self, question: str) -> list[int]:
        _check_no_marker(question, "the question")
        prefix, _ = _split_at_markers(self._render([question, _MARKERS[0]]), 1)
        return self._encode(prefix)

    def step_ids(self, step: str, index: int) -> tuple[list[int], int]:
        _check_no_marker(step, "step text")
        joiner = " " if index == 0 else self.turn_open
        ids = self._encode(joiner + step + self.turn_close)
        label_at = max((i for i, t in enumerate(ids) if t == self.good_id), default=-1)
        if label_at < 1:
            raise ValueError(f"the label {self.labels[0]!r} is not a token of the rendered turn")
        return ids, label_at - 1


class QwenMathPRMFormat(PRMFormat):
    """Qwen2.5-Math-PRM: steps joined by ``<extra_0>`` in the assistant turn of a chat.

    Messages: system prompt, user ``question``, assistant ``"<extra_0>".join(steps) +
    "<extra_0>"``; each separator is scored by the two-class head, P(class 1).
    """

    kind = "qwen_math_prm"
    readout = Readout.CLASSIFIER
    head_key = "score"
    DEFAULT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."

    def __init__(
        self, tokenizer, system_prompt: str = DEFAULT_SYSTEM, separator: str = "<extra_0>"
    ):
        super().__init__(tokenizer)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("a qwen_math_prm PRM needs a tokenizer with a chat template")
        self.system_prompt = system_prompt
        self.separator = separator
        ids = self._encode(separator)
        if len(ids) != 1:
            raise ValueError(
                f"{separator!r} is not a single token of this tokenizer ({len(ids)} tokens); "
                "a qwen_math_prm PRM scores each step at that one token"
            )
        self.separator_id = ids[0]

    def question_ids(self, question: str) -> list[int]:
        _check_no_marker(question, "the question")
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": question},
            {"role": "assistant", "content": _MARKERS[0]},
        ]
        rendered = self.tokenizer.apply_chat_template(messages, tokenize=False)
        prefix, _ = _split_at_markers(rendered, 1)
        return self._encode(prefix)

    def step_ids(self, step: str, index: int) -> tuple[list[int], int]:
        if self.separator in step:
            raise ValueError(f"step text {step!r} contains the separator {self.separator!r}")
        ids = self._encode(step + self.separator)
        if ids[-1] != self.separator_id:
            raise ValueError(f"{self.separator!r} is not a single token of this tokenizer")
        return ids, len(ids) - 1


class SkyworkFormat(PRMFormat):
    """Skywork-o1-Open-PRM: BOS + question + newline, each step then the newline token id.

    As Skywork's ``prepare_input``: every step is tokenized on its own and the step token's id
    appended; the value head's sigmoid at that id scores the step.
    """

    kind = "skywork"
    readout = Readout.VALUE
    head_key = "v_head.summary"
    # Skywork checkpoints keep the base model's LM head; its own loaders skip it.
    ignored_keys = ("lm_head.weight",)

    def __init__(self, tokenizer, step_token: str = "\n"):
        super().__init__(tokenizer)
        self.step_token = step_token
        self.step_token_id = self._last_id(step_token)

    def question_ids(self, question: str) -> list[int]:
        bos = self.tokenizer.bos_token or ""
        return self._encode(bos + question + self.step_token, special=True)

    def step_ids(self, step: str, index: int) -> tuple[list[int], int]:
        ids = [*self._encode(step), self.step_token_id]
        return ids, len(ids) - 1


class TtcValueFormat(PRMFormat):
    """This project's value-head PRM (config.json ``architectures: ["TtcValuePRM"]``).

    Tensors: the decoder under ``model.*`` and ``value_head.weight`` [1, hidden] with
    ``value_head.bias`` [1]. Text: ``question + question_end`` (with the tokenizer's special
    tokens), then ``step + step_end`` per step; sigmoid of the value at each step's last token.
    """

    kind = "ttc_value"
    readout = Readout.VALUE
    head_key = "value_head"
    ARCHITECTURE = "TtcValuePRM"

    def __init__(self, tokenizer, question_end: str = "\n\n", step_end: str = "\n\n"):
        super().__init__(tokenizer)
        self.question_end = question_end
        self.step_end = step_end

    def question_ids(self, question: str) -> list[int]:
        return self._encode(question + self.question_end, special=True)

    def step_ids(self, step: str, index: int) -> tuple[list[int], int]:
        ids = self._encode(step + self.step_end)
        if not ids:
            raise ValueError("an empty step with an empty step_end has no token to score")
        return ids, len(ids) - 1


class TtcLikelihoodFormat(TtcValueFormat):
    """This project's likelihood-and-value PRM (``architectures: ["TtcLikelihoodPRM"]``).

    Tensors: those of ``ttc_value`` plus ``value_head.likelihood_weight`` [1]; the embeddings
    must be tied, as they are the backbone's unembedding too. Text: the plain prompt's layout
    (``Problem:``, the question, ``Solution:``), then ``step + step_end`` per step: exactly
    what a plain-prompted policy reads and writes, so the backbone's likelihood of a step is a
    language model's judgement of it. The head reads the value at each step's last token and
    the log-likelihood of every step token so far but each step's first (`PRM` says why).
    """

    kind = "ttc_likelihood"
    readout = Readout.VALUE_LIKELIHOOD
    ARCHITECTURE = "TtcLikelihoodPRM"

    def __init__(
        self,
        tokenizer,
        question_start: str = "Problem:\n",
        question_end: str = "\n\nSolution:\n",
        step_end: str = "\n",
    ):
        super().__init__(tokenizer, question_end, step_end)
        self.question_start = question_start

    def question_ids(self, question: str) -> list[int]:
        return self._encode(self.question_start + question + self.question_end, special=True)


FORMATS: dict[str, type[PRMFormat]] = {
    f.kind: f
    for f in (
        MathShepherdFormat,
        RLHFlowFormat,
        QwenMathPRMFormat,
        SkyworkFormat,
        TtcValueFormat,
        TtcLikelihoodFormat,
    )
}


def format_class(kind: str) -> type[PRMFormat]:
    """The format class of PRM kind ``kind``; an unknown kind is an error naming the known."""
    if kind not in FORMATS:
        raise ValueError(f"unknown PRM kind {kind!r}; known kinds: {', '.join(sorted(FORMATS))}")
    return FORMATS[kind]


def build_format(kind: str, tokenizer: Any, **options: Any) -> PRMFormat:
    """The format of PRM kind ``kind`` for ``tokenizer``; an unknown kind or option is an
    error that lists the valid ones."""
    format_cls = format_class(kind)
    valid = [name for name in inspect.signature(format_cls).parameters if name != "tokenizer"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown {kind} format option(s) {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(valid) or 'none'}"
        )
    return format_cls(tokenizer, **options)
