"""Training on the shared mesh (ffnkv.sharding): batch rows split on "data" (and on "model" too when it holds
FSDP shards); parameters and optimizer state replicated, or FSDP-split on "model" by ffnkv.sharding's rule.

Several seeds in one program (``TrainConfig.seeds``): a leading seed axis, replicated, in front of each seed's
own placement, for the state and for the [S, B, T] batch.

Multi-host: every process calls ``jax.distributed.initialize`` first (``init_distributed``); each then builds
the same global batch (it is a pure function of seed and step) and contributes only its own rows.
"""
from __future__ import annotations

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ffnkv.errors import ConfigError
from ffnkv.sharding import batch_axes, batch_sharding, init_distributed, make_mesh, put, replicated, tree_shardings

__all__ = ["make_mesh", "replicated", "batch_sharding", "check_batch", "shard_batch", "state_shardings",
           "init_distributed", "seeds_batch_sharding"]


def check_batch(mesh, batch_size: int) -> None:
    n = 1
    for axis in batch_axes(mesh):
        n *= mesh.shape[axis]
    if batch_size % n:
        raise ConfigError(f"batch_size={batch_size} is not divisible by the {n} devices the batch is split over.")


def seeds_batch_sharding(mesh) -> NamedSharding:
    """A batch of several seeds, [S, B, T]: the seed axis replicated, each seed's rows split like one seed's."""
    return NamedSharding(mesh, P(None, batch_axes(mesh)))


def shard_batch(batch: dict, mesh, seeds: int = 1) -> dict:
    """Global numpy batch -> arrays split on the batch axes; each process supplies only the rows its devices hold.
    With ``seeds > 1`` the arrays have a leading seed axis (:func:`seeds_batch_sharding`)."""
    sharding = batch_sharding(mesh) if seeds == 1 else seeds_batch_sharding(mesh)
    return {k: put(v, sharding) for k, v in batch.items()}


def state_shardings(abstract_state, mesh, seeds: int = 1):
    """Shardings of the train state: every parameter and optimizer moment by the FSDP rule, scalars replicated.

    With ``seeds > 1``, ``abstract_state`` is still ONE seed's state; params and optimizer state get a leading
    replicated seed axis in front of that seed's own placement (the step counter stays one replicated scalar).
    """
    one = tree_shardings(abstract_state, mesh)
    if seeds == 1:
        return one
    stack = lambda sh: NamedSharding(mesh, P(None, *sh.spec))
    return one.replace(params=jax.tree.map(stack, one.params), opt_state=jax.tree.map(stack, one.opt_state))
