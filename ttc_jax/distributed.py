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
import itertools
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
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


def deal(items: Sequence, compute: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
    """``(item, compute(item))`` for each of ``items``, in order, on every process. With
    several processes the items are dealt round-robin (in round r, process p computes item
    r x P + p) and each round's JSON-able results are gathered to every process, so each
    result is what one process alone would compute, if ``compute`` depends on its item
    alone."""
    items = list(items)
    count, index = jax.process_count(), jax.process_index()
    if count == 1:
        for item in items:
            yield item, compute(item)
        return
    for start in range(0, len(items), count):
        batch = items[start : start + count]
        mine = compute(batch[index]) if index < len(batch) else None
        yield from zip(batch, allgather(mine)[: len(batch)], strict=True)


_barriers = itertools.count()


def wait_for_primary(name: str, timeout_s: int = 7 * 24 * 3600) -> None:
    """Returns on every process once all have called it: the others wait however long
    process 0 works alone before it calls (a stage only it runs). A barrier of JAX's
    coordination service, not a device collective, so no collective timeout applies; a dead
    process 0 (which hosts the service) ends the wait with `PeerLostError`."""
    if jax.process_count() == 1:
        return
    from jax._src import distributed as jax_distributed

    barrier = f"ttc_jax/{name}/{next(_barriers)}"
    try:
        jax_distributed.global_state.client.wait_at_barrier(barrier, timeout_s * 1000)
    except jax.errors.JaxRuntimeError as e:
        raise PeerLostError(
            f"process {jax.process_index()} of {jax.process_count()} lost the others while "
            f"waiting for process 0 ({name}: {str(e).splitlines()[0]}). Rerun the same command "
            "to resume"
        ) from e


def share_folders(folders: Sequence[tuple[Path, Path]]) -> None:
    """Copies each ``(source, target)`` folder of process 0's disk to ``target`` on every
    other process (through JAX collectives: no shared filesystem is assumed); process 0's own
    targets are left alone. A missing source is a `FileNotFoundError` on process 0."""
    if jax.process_count() == 1:
        return
    manifest = None
    if is_primary():
        manifest = []
        for k, (source, _) in enumerate(folders):
            if not Path(source).is_dir():
                raise FileNotFoundError(f"{source} is missing")
            for path in sorted(Path(source).rglob("*")):
                if path.is_file():
                    manifest.append([k, str(path.relative_to(source)), path.stat().st_size])
    manifest = broadcast(manifest)
    total = sum(size for _, _, size in manifest)
    data = np.zeros(_bucket(total), np.uint8)
    if is_primary():
        offset = 0
        for k, relative, size in manifest:
            data[offset : offset + size] = np.fromfile(Path(folders[k][0]) / relative, np.uint8)
            offset += size
    from jax.experimental import multihost_utils

    data = _collective(multihost_utils.broadcast_one_to_all, data)
    if is_primary():
        return
    offset = 0
    for k, relative, size in manifest:
        target = Path(folders[k][1]) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[offset : offset + size].tobytes())
        offset += size


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
