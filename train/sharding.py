"""Training on the shared mesh (ffnkv.sharding): batch rows split on "data" (and on "model" too when it holds
FSDP shards); parameters and optimizer state replicated, or FSDP-split on "model" by ffnkv.sharding's rule.

Multi-host: every process calls ``jax.distributed.initialize`` first (``init_distributed``); each then builds
the same global batch (it is a pure function of seed and step) and contributes only its own rows.
"""
from __future__ import annotations

from ffnkv.errors import ConfigError
from ffnkv.sharding import batch_axes, batch_sharding, init_distributed, make_mesh, put, replicated, tree_shardings

__all__ = ["make_mesh", "replicated", "batch_sharding", "check_batch", "shard_batch", "state_shardings",
           "init_distributed"]


def check_batch(mesh, batch_size: int) -> None:
    n = 1
    for axis in batch_axes(mesh):
        n *= mesh.shape[axis]
    if batch_size % n:
        raise ConfigError(f"batch_size={batch_size} is not divisible by the {n} devices the batch is split over.")


def shard_batch(batch: dict, mesh) -> dict:
    """Global numpy batch -> arrays split on the batch axes; each process supplies only the rows its devices hold."""
    sharding = batch_sharding(mesh)
    return {k: put(v, sharding) for k, v in batch.items()}


def state_shardings(abstract_state, mesh):
    """Shardings of the train state: every parameter and optimizer moment by the FSDP rule, scalars replicated."""
    return tree_shardings(abstract_state, mesh)
