"""Test set-up: 8 fake CPU devices (before JAX starts) and shared model fixtures."""

import os

# Must happen before JAX initialises its backends, hence before any test module imports it.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest

import ttc_jax


@pytest.fixture(scope="session")
def smollm2_path():
    return ttc_jax.smollm2_path()
