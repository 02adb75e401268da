"""The folder of compiled programs the commands reuse across runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ttc_jax import compile_cache

# A fresh process compiles one program with the cache in a folder and reports its result and
# how many programs it read back from the folder.
_PROGRAM = """
import json, sys
import jax, jax.numpy as jnp
from ttc_jax import compile_cache
compile_cache.enable(sys.argv[1])
hits = []
jax.monitoring.register_event_listener(
    lambda event, **_: hits.append(event) if event.endswith("cache_hits") else None
)
value = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.arange(64.0).reshape(8, 8) / 64)
print(json.dumps({"value": float(value), "read_back": len(hits)}))
"""


def _run(folder) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(folder)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def test_a_second_process_reads_the_first_ones_programs_back(tmp_path):
    first = _run(tmp_path)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert first["read_back"] == 0 and kept  # compiled, and written to the folder
    second = _run(tmp_path)
    assert second["read_back"] >= 1 and second["value"] == first["value"]
    assert sorted(p.name for p in tmp_path.iterdir()) == kept  # nothing compiled again


def test_the_folder_is_jaxs_variable_else_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert compile_cache.default_folder() == tmp_path / "jax"
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.default_folder() == tmp_path / "xdg" / "ttc_jax" / "xla"


def test_a_folder_that_cannot_be_written_is_named(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"compile cache folder '.*a_file/xla' cannot be written"):
        compile_cache.enable(blocker / "xla")


def test_a_command_refuses_a_bad_cache_folder_in_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    tool = os.path.join(os.path.dirname(sys.executable), "ttc-study")
    done = subprocess.run(
        [tool, "--config=configs/embedded.py", f"--compile_cache={blocker}/xla"],
        capture_output=True, text=True, timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ttc-study: compile cache folder"), lines
