"""Several JAX processes (one per host of a TPU pod slice or GPU cluster) running one job.

`initialize` joins them through JAX's multi-controller runtime (`jax.distributed`); without
arguments it does nothing and the job is one process, as before. The rest is what the study
needs on top: which process this is, and two collectives on JSON values (`allgather`,
`broadcast`) built on `jax.experimental.multihost_utils`, so that rows and decisions travel
between processes through JAX itself, with no shared filesystem assumed (TPU VM workers have
separate disks).

A process that dies makes the next collective of the others fail at once (the connection to
it closes) or, while they compute, JAX's heartbeat end them within ``heartbeat_timeout_s``.
A failed collective is a `PeerLostError`; `exit_lost` ends the process without waiting for
JAX's shutdown, which would wait for the dead process at its shutdown barrier and then abort.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from typing import Any

import jax
import numpy as np


class DistributedError(RuntimeError):
    """Bad distributed settings, or a coordinator that cannot be reached."""


class PeerLostError(DistributedError):
    """A collective failed: another process has died or can no longer be reached."""


class ProcessMismatchError(ValueError):
    """The processes of one job were started with different settings."""


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
    timeout_s: int = 300,
    heartbeat_timeout_s: int = 100,
) -> None:
    """Joins this process to the others of its job.

    Either ``auto`` (JAX detects the cluster: TPU pod slices, Slurm, Open MPI) or
    ``num_processes`` and ``process_id`` (and ``coordinator_address``, HOST:PORT of process
    0, unless ``JAX_COORDINATOR_ADDRESS`` gives it). Nothing given, or one process, is a
    no-op. Bad settings are a `DistributedError` before anything starts; so is a coordinator
    not reached within ``timeout_s`` seconds, naming its address.
    """
    explicit = (coordinator_address, num_processes, process_id)
    if not auto and all(value is None for value in explicit):
        return
    if not auto:
        coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
        _check(coordinator_address, num_processes, process_id)
        if num_processes == 1:
            return
        if process_id != 0:
            # JAX aborts the whole process (no exception) when it cannot reach the
            # coordinator, with a message that does not name it; so it is reached first here.
            _wait_for(coordinator_address, timeout_s)
    try:
        jax.distributed.initialize(
            coordinator_address,
            num_processes,
            process_id,
            initialization_timeout=timeout_s,
            heartbeat_timeout_seconds=heartbeat_timeout_s,
        )
    except ValueError as e:  # what detection could not find
        raise DistributedError(
            f"no cluster detected ({e}): outside a TPU pod slice, Slurm or Open MPI job, give "
            "coordinator_address, num_processes and process_id"
        ) from e
    # CPU processes need a collectives implementation to reach each other (set before the
    # backend starts, and only once joined); on TPU and GPU it is unused, so it is turned on
    # whatever the platform.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")


def _wait_for(address: str, timeout_s: float) -> None:
    """Returns once a TCP connection to ``address`` (HOST:PORT) opens; a `DistributedError`
    naming it if none does within ``timeout_s`` seconds (process 0 may start later)."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"could not reach the coordinator at {address} within {timeout_s} s ({e}): "
                    "is process 0 running, and is the address right?"
                ) from e
        time.sleep(0.2)


def _check(address: str | None, num_processes: int | None, process_id: int | None) -> None:
    missing = [
        name
        for name, value in (
            ("coordinator_address", address),
            ("num_processes", num_processes),
            ("process_id", process_id),
        )
        if value is None
    ]
    if missing:
        raise DistributedError(
            f"{', '.join(missing)} missing: give coordinator_address, num_processes and "
            "process_id together, or auto-detection"
        )
    if num_processes < 1:
        raise DistributedError(f"num_processes must be at least 1, not {num_processes}")
    if not 0 <= process_id < num_processes:
        raise DistributedError(
            f"process_id {process_id} is outside [0, {num_processes}) for {num_processes} processes"
        )
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"coordinator_address {address!r} is not HOST:PORT")


def process_index() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def is_primary() -> bool:
    """Process 0: the one that writes a job's files."""
    return jax.process_index() == 0


def allgather(value: Any) -> list[Any]:
    """Every process's JSON-able ``value``, in process order, on every process."""
    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    lengths = _collective(multihost_utils.process_allgather, np.int32(len(data)))
    # Padded to a power of two so that gathers of similar sizes share one compiled program.
    padded = np.zeros(_bucket(int(lengths.max())), np.uint8)
    padded[: len(data)] = data
    gathered = _collective(multihost_utils.process_allgather, padded)
    return [json.loads(bytes(row[:n])) for row, n in zip(gathered, lengths, strict=True)]


def broadcast(value: Any) -> Any:
    """Process 0's JSON-able ``value``, on every process (others pass anything, e.g. None)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    length = int(_collective(multihost_utils.broadcast_one_to_all, np.int32(len(data))))
    padded = np.zeros(_bucket(length), np.uint8)
    if is_primary():
        padded[:length] = data
    received = _collective(multihost_utils.broadcast_one_to_all, padded)
    return json.loads(bytes(received[:length]))


def check_same(what: str, value: Any) -> None:
    """Raises `ProcessMismatchError` on every process unless every process holds the same
    JSON-able ``value`` (its digest is compared), naming the processes that differ."""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    digests = allgather(digest)
    differ = [index for index, other in enumerate(digests) if other != digests[0]]
    if differ:
        raise ProcessMismatchError(
            f"processes {', '.join(map(str, differ))} run with another {what} than process 0: "
            "start every process with the same command and files"
        )


def _bucket(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _collective(function, value: np.ndarray) -> np.ndarray:
    try:
        return np.asarray(function(value))
    except jax.errors.JaxRuntimeError as e:
        raise PeerLostError(
            f"process {jax.process_index()} of {jax.process_count()} lost the others (a "
            f"collective failed: {str(e).splitlines()[0]}); another process has died or was "
            "stopped. Rerun the same command, with any number of processes, to resume"
        ) from e


def exit_lost(error: PeerLostError, name: str) -> None:
    """Ends this process at once with ``error``'s line: JAX's own shutdown would wait for the
    dead process at its shutdown barrier, then abort with a stack trace."""
    print(f"{name}: {error}", file=sys.stderr, flush=True)
    os._exit(1)
