"""The benchmark path imports on a machine without the optional packages.

The GPU benchmark machines carry jax, flax, transformers and torch but not the packages of
GGUF loading or of the math datasets and grading; a module-level import of any of them on the
benchmark path would stop ``ttc-bench`` before it starts.
"""

import subprocess
import sys
from pathlib import Path

ABSENT = ("gguf", "ml_collections", "math_verify", "tensorflow_datasets")
BENCHMARK_MODULES = (
    "ttc_jax",
    "ttc_jax.cli.bench",
    "ttc_jax.bench.decode",
    "ttc_jax.bench.plain_loop",
)
REPO = Path(__file__).resolve().parents[1]
# A None entry in sys.modules makes ``import name`` raise ImportError as if the package were not
# installed, submodules such as ``math_verify.parser`` included. A fresh interpreter is needed:
# this one has most of these modules imported already.
BLOCK = f"import importlib, sys\nfor name in {ABSENT!r}:\n    sys.modules[name] = None\n"


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_benchmark_path_imports_without_optional_packages():
    result = run_blocked(
        f"for module in {BENCHMARK_MODULES!r}:\n    importlib.import_module(module)"
    )
    assert result.returncode == 0, result.stderr


def test_the_blocker_does_block():
    # Guards the test above against a blocker that silently stopped working.
    result = run_blocked("from ttc_jax.models import gguf_source\ngguf_source.supported_types()")
    assert result.returncode != 0 and "import of gguf halted" in result.stderr, result.stderr
