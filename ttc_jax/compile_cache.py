"""A folder of compiled programs that the commands reuse across runs (JAX's persistent
compilation cache).

On a CPU the embedded world's models are small, so compiling is much of the main job: of
its 10 minutes on 2 cores, 4 go to tracing and compiling 441 programs. JAX keeps a compiled
program only while the process runs, and `ttc_jax.program_cache` drops them all when the
process's memory mappings near the kernel's limit, so some compile twice in one run. With
this cache a program compiled once is read back from disk: in the same run after a release,
in the next run of the same config, and in a study resumed after Ctrl-C (docs/benchmarks.md,
"The main job").
A program read back is the one XLA would compile (the key holds the program, the compiler
options and the versions), so results do not change.

Where: ``--compile_cache=DIR`` of ``ttc-study``, ``ttc-solve`` and ``ttc-train``; else
JAX's own ``JAX_COMPILATION_CACHE_DIR``; else ``$XDG_CACHE_HOME/ttc_jax/xla``
(``~/.cache/ttc_jax/xla``). ``--compile_cache=off`` compiles everything afresh. The folder
keeps at most `MAX_BYTES`, the least recently used programs going first.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

OFF = "off"
# The main job's programs take 22 MB on disk; this holds many configs' worth.
MAX_BYTES = 2 << 30


def default_folder() -> Path:
    """JAX's ``JAX_COMPILATION_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/ttc_jax/xla``."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ttc_jax" / "xla"


def enable(folder: str | os.PathLike | None = None) -> Path | None:
    """Keeps compiled programs in ``folder`` (default: `default_folder`; "off": nowhere) from
    now on; returns the folder, or None when off. Every program is kept, however quick to
    compile: on a CPU most are quick, and together they are most of a run's time. Raises
    ValueError when the folder cannot be created or written."""
    if folder is not None and str(folder) == OFF:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = Path(folder).expanduser() if folder is not None else default_folder()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".writable"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise ValueError(
            f"compile cache folder {str(path)!r} cannot be written ({e.strerror}); "
            f"give another with --compile_cache=DIR, or --compile_cache={OFF}"
        ) from e
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return path
