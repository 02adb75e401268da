"""MATH benchmark data, few-shot prompts, answer grading and accuracy reports."""

from ttc_jax.math.datasets import (
    DatasetError,
    Problem,
    load_hendrycks_tree,
    load_jsonl,
    load_math500,
)
from ttc_jax.math.grading import extract_answer, is_equiv

__all__ = [
    "DatasetError",
    "Problem",
    "extract_answer",
    "is_equiv",
    "load_hendrycks_tree",
    "load_jsonl",
    "load_math500",
]
