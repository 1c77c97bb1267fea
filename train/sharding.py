"""Device mesh ("data", "model"); batches split on "data", parameters and optimizer state replicated.

Multi-host: every process calls ``jax.distributed.initialize`` first (``init_distributed``); each then builds
the same global batch (it is a pure function of seed and step) and contributes only its own rows.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from ffnkv.errors import ConfigError


def make_mesh(shape: tuple[int, int]) -> jax.sharding.Mesh:
    """A ("data", "model") mesh; -1 on the data axis takes every device left. A single process may use fewer
    devices than it has (the first data × model); several processes must use all of them."""
    n = jax.device_count()
    data, model = shape
    data = n // model if data == -1 else data
    fits = data * model == n or (jax.process_count() == 1 and data * model < n)
    if not fits or data < 1:
        raise ConfigError(f"mesh={tuple(shape)} does not fit {n} devices; use data × model = {n}, e.g. mesh=(-1, 1).")
    return jax.make_mesh((data, model), ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=jax.devices()[: data * model])


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def check_batch(mesh, batch_size: int) -> None:
    data = mesh.shape["data"]
    if batch_size % data:
        raise ConfigError(f"batch_size={batch_size} is not divisible by the {data} devices of the data axis.")


def shard_batch(batch: dict, mesh) -> dict:
    """Global numpy batch -> arrays split on "data"; each process supplies only the rows its devices hold."""
    sharding = batch_sharding(mesh)

    def put(x):
        x = np.asarray(x)
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        rows = sharding.addressable_devices_indices_map(x.shape)
        return jax.make_array_from_single_device_arrays(
            x.shape, sharding, [jax.device_put(x[idx], d) for d, idx in rows.items()])

    return {k: put(v) for k, v in batch.items()}


def init_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """``jax.distributed.initialize`` (CPU collectives through gloo); no-op when ``num_processes`` is None/1."""
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"--num-processes={num_processes} is not allowed; use a positive integer.")
    if not num_processes or num_processes == 1:
        return
    if not coordinator or process_id is None:
        raise ConfigError(f"--num-processes={num_processes} needs --coordinator HOST:PORT and --process-id in "
                          "every process.")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id={process_id} is not allowed; use 0 .. {num_processes - 1}.")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
