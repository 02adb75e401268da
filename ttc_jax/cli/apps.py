"""How the config-driven commands (``ttc-study``, ``ttc-solve``, ``ttc-train``) start and stop.

* A bad ``--config.x=...`` override (an unknown field, a value of the wrong type) is one line
  naming it, not a traceback from inside the flag parser.
* A field overridden twice is refused: ml_collections appends the second value of a tuple to
  the first (``--config.budgets='(1,4)' --config.budgets='(16,)'`` would run 1, 4 and 16).
* Compiled programs are kept in a folder and read back by later runs and by this one after
  a release (`ttc_jax.compile_cache`; ``--compile_cache=DIR`` or ``off``).
* Library chatter (absl INFO lines, JAX's backend probing, "loaded N parameters") stays at
  WARNING unless ``--verbosity`` (or ``-v``) asks for more, so progress lines read cleanly.
* Ctrl-C ends the command with one line saying what it left and how to go on, even when the
  first interrupt lands where Python swallows it (`ttc_jax.cli.interrupts`).
* ``--coordinator_address HOST:PORT --num_processes N --process_id K`` (JAX's names) or
  ``--distributed`` (detected: TPU pod slices, Slurm, Open MPI) run the command as one of
  several JAX processes (`ttc_jax.distributed`), joined after the flags are read and before
  any JAX work; bad settings or an unreachable coordinator are one line. Without them the
  command is one process. A process that loses the others ends in one line, not a hang.
  Only a command built for several processes takes them (``ttc-study`` and ``ttc-train``
  split their work over the processes, ``ttc-solve`` puts its models on one mesh across
  them); another refuses them in one line rather than repeat the whole job on every process.
  Processes started with different configs are refused at the start (`ProcessMismatchError`,
  one line on every process).
"""

from __future__ import annotations

import collections
import logging
import sys
from collections.abc import Callable

from absl import app, flags
from absl import logging as absl_logging

from ttc_jax.cli.interrupts import persistent_interrupt

OVERRIDE_PREFIX = "--config."

COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0, to run as one of several processes"
)
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "how many processes run the job")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index, 0 to N-1")
DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "join the other processes as JAX detects them (TPU pod, Slurm, MPI)"
)
COMPILE_CACHE = flags.DEFINE_string(
    "compile_cache",
    None,
    "folder of compiled programs reused across runs (default: $JAX_COMPILATION_CACHE_DIR, "
    "else ~/.cache/ttc_jax/xla); 'off' compiles everything afresh",
)
DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout", 300, "seconds to wait for the other processes to join"
)


def repeated_overrides(argv: list[str]) -> list[str]:
    """The ``--config.<field>`` overrides given more than once."""
    fields = collections.Counter(
        arg[len(OVERRIDE_PREFIX) :].split("=", 1)[0]
        for arg in argv
        if arg.startswith(OVERRIDE_PREFIX)
    )
    return sorted(field for field, count in fields.items() if count > 1)


JOINING_FLAGS = ("coordinator_address", "num_processes", "process_id", "distributed")


def _parser(name: str, multi_process: bool) -> Callable[[list[str]], list[str]]:
    def parse(argv: list[str]) -> list[str]:
        repeated = repeated_overrides(argv[1:])
        if repeated:
            sys.exit(
                f"{name}: --config.{repeated[0]} is given more than once (a repeated tuple "
                "override would be appended to the first); give each field once"
            )
        try:
            rest = flags.FLAGS(argv)
        except flags.Error as e:
            sys.exit(f"{name}: {e}")
        except (AttributeError, KeyError) as e:
            # ml_collections' word for an override of a field the config lacks.
            field = str(e.args[0] if e.args else e).strip("'\"")
            sys.exit(f"{name}: bad --config override: the config has no field {field!r}")
        except (TypeError, ValueError) as e:  # a value the field cannot take
            sys.exit(f"{name}: bad --config override: {e}")
        if not flags.FLAGS["verbosity"].present:
            absl_logging.set_verbosity(absl_logging.WARNING)
            logging.getLogger().setLevel(logging.WARNING)
        from ttc_jax import compile_cache

        try:
            compile_cache.enable(COMPILE_CACHE.value)
        except ValueError as e:
            sys.exit(f"{name}: {e}")
        given = [f"--{flag}" for flag in JOINING_FLAGS if flags.FLAGS[flag].present]
        if given and not multi_process:
            sys.exit(
                f"{name}: runs as one process; {', '.join(given)} is for ttc-study, ttc-train "
                "and ttc-solve"
            )
        from ttc_jax import distributed

        try:
            distributed.initialize(
                COORDINATOR.value,
                NUM_PROCESSES.value,
                PROCESS_ID.value,
                auto=DISTRIBUTED.value,
                timeout_s=DISTRIBUTED_TIMEOUT.value,
            )
        except distributed.DistributedError as e:
            sys.exit(f"{name}: {e}")
        return rest

    return parse


def run(
    main: Callable[[list[str]], None],
    name: str,
    on_interrupt: str = "",
    multi_process: bool = False,
) -> None:
    """``app.run(main)`` with the behaviour in the module docstring; ``on_interrupt`` is
    what Ctrl-C's line adds (what was kept, how to resume); ``multi_process``: the command
    splits its work over several processes, so it takes the joining flags."""

    def guarded(argv: list[str]) -> None:
        from ttc_jax import distributed

        try:
            with persistent_interrupt() as interrupt_caught:
                try:
                    main(argv)
                except KeyboardInterrupt:
                    interrupt_caught.set()
                    raise
        except KeyboardInterrupt:
            sys.exit(f"{name}: stopped (Ctrl-C)" + (f"; {on_interrupt}" if on_interrupt else ""))
        except distributed.PeerLostError as e:
            distributed.exit_lost(e, name)
        except distributed.ProcessMismatchError as e:
            sys.exit(f"{name}: {e}")

    app.run(guarded, flags_parser=_parser(name, multi_process))
