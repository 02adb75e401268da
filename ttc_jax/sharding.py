"""Device meshes and the table that maps logical tensor axes onto them.

Model code names the axes of every parameter and activation with logical names (``batch``,
``embed``, ``heads``, ...). One `ShardingRules` table maps those names to the mesh axes
``data`` and ``model``; changing the table, not the model, changes how a program is split. The
same program therefore runs on 1 CPU device, 8 fake CPU devices, one GPU or a TPU slice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)

MESH_AXES = ("data", "model")

# Batch over data-parallel replicas; heads, MLP and vocabulary over model-parallel devices
# (Megatron-style), the hidden dimension replicated.
DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", "data"),
    ("samples", None),
    ("seq", None),
    ("embed", None),
    ("heads", "model"),
    ("kv_heads", "model"),
    ("qkv_slots", None),  # a kv head's query heads, key and value (fused projection)
    ("head_dim", None),
    ("gate_up", None),  # the two halves of the fused SwiGLU input projection
    ("mlp", "model"),
    ("vocab", "model"),
)


def make_mesh(data: int = 1, model: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, model) mesh over the first data * model of ``devices`` (by default this
    process's own: with several JAX processes each searches on its own devices; see
    `global_mesh` for one mesh across every process).

    -1 for one axis means "all devices left over by the other axis".
    """
    devices = list(jax.local_devices() if devices is None else devices)
    data, model = _axis_sizes(data, model, len(devices))
    if data < 1 or model < 1 or data * model > len(devices):
        raise ValueError(
            f"mesh (data={data}, model={model}) needs {data * model} devices; "
            f"{len(devices)} available"
        )
    grid = np.array(devices[: data * model]).reshape(data, model)
    return Mesh(grid, MESH_AXES)


def _axis_sizes(data: int, model: int, devices: int) -> tuple[int, int]:
    """(data, model) with one -1 resolved to the devices the other axis leaves."""
    if data == -1 and model == -1:
        raise ValueError("at most one mesh axis may be -1")
    if data == -1:
        data = devices // model
    if model == -1:
        model = devices // data
    return data, model


def global_mesh(
    data: int = 1, model: int = -1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A (data, model) mesh over the devices of every JAX process (by default all of
    ``jax.devices()``), for a model larger than one host: the ``model`` axis spans the
    processes, each holding an equal, contiguous part of it on ``model / P`` of its own
    devices, and ``data`` lies within each process (so a batch's rows are split over each
    host's devices and every host holds all rows). -1 for one axis means "the rest".

    Every process must build the same mesh and then run the same host-side code, with the
    same inputs, in the same order (the multi-controller model: each program runs on all of
    them at once). Built with `jax.experimental.mesh_utils.create_hybrid_device_mesh`, the
    processes being the slow (DCN) granule. One process gives a plain mesh of its devices.
    """
    from jax.experimental import mesh_utils

    devices = list(jax.devices() if devices is None else devices)
    processes = sorted({d.process_index for d in devices})
    data, model = _axis_sizes(data, model, len(devices))
    if data < 1 or model < 1 or data * model != len(devices):
        raise ValueError(
            f"a global mesh (data={data}, model={model}) needs {data * model} devices; it "
            f"covers all {len(devices)} given"
        )
    if model % len(processes):
        raise ValueError(
            f"the model axis ({model}) must split evenly over the {len(processes)} processes "
            "it spans"
        )
    per_process = [sum(d.process_index == p for d in devices) for p in processes]
    if len(set(per_process)) > 1:
        raise ValueError(f"processes give unequal numbers of devices: {per_process}")
    grid = mesh_utils.create_hybrid_device_mesh(
        (data, model // len(processes)), (1, len(processes)), devices, process_is_granule=True
    )
    return Mesh(grid, MESH_AXES)


def mesh_from_config(cfg: Mapping[str, int] | None) -> Mesh:
    """A mesh from a config with optional ``data`` and ``model`` fields (defaults 1 and -1)."""
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"unknown mesh axes {sorted(unknown)}; expected {MESH_AXES}")
    return make_mesh(data=cfg.get("data", 1), model=cfg.get("model", -1))


@dataclasses.dataclass(frozen=True)
class ShardingRules:
    """Logical axis name -> mesh axis name (or None for replicated)."""

    rules: tuple[tuple[str, str | None], ...] = DEFAULT_RULES

    def mesh_axis(self, logical: str | None) -> str | None:
        if logical is None:
            return None
        for name, mesh_axis in self.rules:
            if name == logical:
                return mesh_axis
        raise KeyError(f"logical axis {logical!r} has no sharding rule")

    def spec(
        self,
        logical_axes: Sequence[str | None],
        shape: Sequence[int] | None = None,
        mesh: Mesh | None = None,
    ) -> PartitionSpec:
        """PartitionSpec for a tensor whose dimensions carry these logical names.

        With ``shape`` and ``mesh`` given, a dimension that does not divide evenly over its
        mesh axis is replicated instead (SmolLM2's 9 heads on 4 devices, say), with a log line.
        """
        mesh_axes = [self.mesh_axis(name) for name in logical_axes]
        used = [a for a in mesh_axes if a is not None]
        if len(used) != len(set(used)):
            raise ValueError(
                f"logical axes {tuple(logical_axes)} map two dimensions onto one mesh axis "
                f"{tuple(mesh_axes)}"
            )
        if shape is not None and mesh is not None:
            for i, (axis, size) in enumerate(zip(mesh_axes, shape, strict=True)):
                if axis is not None and size % mesh.shape[axis]:
                    log.info(
                        "replicating %s (size %d) instead of splitting it %d ways over %r",
                        logical_axes[i],
                        size,
                        mesh.shape[axis],
                        axis,
                    )
                    mesh_axes[i] = None
        return PartitionSpec(*mesh_axes)

    def sharding(self, mesh: Mesh, logical_axes, shape=None) -> NamedSharding:
        return NamedSharding(mesh, self.spec(logical_axes, shape, mesh))
