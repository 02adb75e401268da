"""MATH-500 with open Hugging Face checkpoints: an instruct policy and a published PRM.

    ttc-study --config configs/math500_hf.py \
        --config.models.policy=PATH/Qwen2.5-1.5B-Instruct \
        --config.models.prm=PATH/Qwen2.5-Math-PRM-7B --config.models.prm_kind=qwen_math_prm

Instruct policies answer through their chat template: the prompt asks for step-by-step
reasoning with a blank line between steps and the final answer in \\boxed{} (no MATH train
split ships for the 4-shot prompt). Open PRMs mostly read steps split by blank lines, so
that is the step delimiter. No open revision model exists, so revisions are off unless
``models.revision`` and ``models.revision_verifier`` are given; ``models.policy_14x`` (a
larger model of the same family) enables the FLOPs exchange. Paths have no default.
"""

from ttc_jax.study import study_config


def get_config():
    config = study_config()
    config.workdir = "ttc_study_math500"
    config.data.source = "math500"
    config.data.limit = 0  # all 500; set a smaller number for a first look
    config.models.policy = ""
    config.models.policy_14x = ""
    config.models.prm = ""
    config.models.prm_kind = "qwen_math_prm"
    config.models.revision = ""
    config.models.revision_verifier = ""
    config.models.dtype = "bfloat16"
    config.search.prompt.style = "chat"
    config.search.step_delimiter = "\n\n"
    config.search.max_new_tokens = 1024
    config.search.max_step_tokens = 256
    config.budgets = (1, 2, 4, 8, 16, 32, 64)
    config.difficulty.samples = 64
    config.difficulty.charged_samples = 8
    return config
