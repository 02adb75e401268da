"""Test set-up: 8 fake CPU devices (before JAX starts) and shared model fixtures."""

import atexit
import os
import shutil
import tempfile

# Must happen before JAX initialises its backends, hence before any test module imports it.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the whole run, subprocesses included: the tests build
# many small models whose programs repeat across tests and processes, and compiling them is
# most of the suite's time. A fresh folder per run keeps runs independent of each other.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="ttc-jax-tests-xla-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    # Cache every program, however quick to compile or small: most of them are both.
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import pytest

import ttc_jax
from ttc_jax import program_cache


@pytest.fixture(autouse=True)
def _release_compiled_programs_when_crowded():
    """A test process compiles thousands of programs, and XLA:CPU keeps every kernel of a
    cached program mapped into the process: one process running the whole suite passed the
    kernel's limit of memory mappings and crashed in a compile. Released programs compile
    again, mostly from the persistent compilation cache (`ttc_jax.program_cache`)."""
    program_cache.release_if_crowded()


@pytest.fixture(scope="session")
def smollm2_path():
    return ttc_jax.smollm2_path()
