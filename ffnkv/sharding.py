"""The device mesh ("data", "model") shared by training and the analyses, and its placement rules.

* Rows of a training batch, and the items of an analysis sweep (prompts, cells, tokens), are split on "data".
* Parameters (and the optimizer state, which mirrors them) are replicated when the "model" axis has one device,
  and split on it otherwise — FSDP (ZeRO-3; Rajbhandari et al. 2020): each leaf's largest dimension that the
  "model" axis divides is split, except the stacked layer axis of ``blocks`` that the forward pass scans over;
  XLA gathers each weight where it is used. With FSDP the training batch is split over both axes.
* Multi-host: every process runs the same program on the same global inputs (pure functions of seed and index)
  and contributes only the slices its devices hold (:func:`put`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from ffnkv.errors import ConfigError

AXES = ("data", "model")


def make_mesh(shape=(-1, 1)) -> jax.sharding.Mesh:
    """A ("data", "model") mesh; -1 on the data axis takes every device left. A single process may use fewer
    devices than it has (the first data × model); several processes must use all of them."""
    n = jax.device_count()
    data, model = (int(s) for s in shape)
    data = n // model if data == -1 and model > 0 else data
    fits = data * model == n or (jax.process_count() == 1 and data * model < n)
    if not fits or data < 1 or model < 1:
        raise ConfigError(f"mesh={tuple(shape)} does not fit {n} devices; use data × model = {n}, e.g. mesh=(-1, 1).")
    return jax.make_mesh((data, model), AXES, axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=jax.devices()[: data * model])


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_axes(mesh) -> tuple[str, ...]:
    """The axes a training batch is split over: "data", and "model" too when it holds FSDP shards."""
    return AXES if mesh.shape["model"] > 1 else ("data",)


def batch_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(batch_axes(mesh)))


def leaf_spec(path, shape, n_model: int) -> P:
    """The FSDP rule for one leaf: split its largest dimension divisible by ``n_model`` on "model" (never the
    leading layer axis of a ``blocks`` leaf); replicate it when none divides or ``n_model`` is 1."""
    stacked = any(getattr(k, "key", None) == "blocks" for k in path)
    dims = [d for d in range(int(stacked), len(shape)) if shape[d] % n_model == 0]
    if n_model == 1 or not dims:
        return P()
    d = max(dims, key=lambda i: shape[i])
    return P(*[("model" if i == d else None) for i in range(len(shape))])


def tree_shardings(tree, mesh):
    """NamedShardings of every leaf of ``tree`` (parameters, or a train state holding params and their optimizer
    moments) by :func:`leaf_spec`."""
    n = mesh.shape["model"]
    return jax.tree.map_with_path(lambda path, x: NamedSharding(mesh, leaf_spec(path, np.shape(x), n)), tree)


def put(x, sharding: NamedSharding):
    """A host array, the same in every process, placed with ``sharding``; each process supplies only the slices
    its own devices hold. Device arrays are resharded; typed PRNG keys travel as their key data."""
    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
        return jax.random.wrap_key_data(put(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        if jax.process_count() == 1 or not x.is_fully_addressable:
            return jax.device_put(x, sharding)
    x = np.asarray(x)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    slices = sharding.addressable_devices_indices_map(x.shape)
    return jax.make_array_from_single_device_arrays(x.shape, sharding,
                                                    [jax.device_put(x[i], d) for d, i in slices.items()])


def put_inputs(arrays, mesh):
    """Host arrays (integers as int32) on the default device, or replicated on ``mesh`` (the sweep splits them)."""
    def one(x):
        x = np.asarray(x)
        x = x.astype(np.int32) if np.issubdtype(x.dtype, np.integer) else x
        return jnp.asarray(x) if mesh is None else put(x, replicated(mesh))
    return tuple(one(x) for x in arrays)


def put_params(params, mesh):
    """Parameters placed on ``mesh`` (replicated, or FSDP-split on "model"); ``mesh=None`` leaves them as they are."""
    if mesh is None:
        return params
    return jax.tree.map(put, params, tree_shardings(params, mesh))


def fetch(x) -> np.ndarray:
    """A device array as numpy in every process (gathered across processes when it is split over several)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def sweep(fn, xs, mesh=None, batch_size: int | None = None, consts=()):
    """``lax.map(lambda x: fn(*consts, x), xs, batch_size=...)`` with the items (leading axis of every leaf of
    ``xs``) split over the "data" axis of ``mesh``: each device maps over its share (padded to equal shares by
    repeating the last item; the padding is dropped). ``consts`` (e.g. parameters) keep their own placement:
    replicated on "data", and left to XLA on "model" (FSDP; with one "data" device no shard_map at all). Inside, a
    traced index that is not batched keeps ``lax.cond``/``switch`` as real branches. Call it inside ``jax.jit``;
    ``mesh=None`` is plain ``lax.map``."""
    if mesh is None or mesh.shape["data"] == 1:  # one data shard: XLA partitions FSDP weights itself
        return jax.lax.map(lambda x: fn(*consts, x), xs, batch_size=batch_size)
    n = jax.tree.leaves(xs)[0].shape[0]
    d = mesh.shape["data"]
    pad = -n % d
    xs = jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, 0)]) if pad else a, xs)
    per_device = (n + pad) // d

    def local(consts, xs):
        return jax.lax.map(lambda x: fn(*consts, x), xs,
                           batch_size=None if batch_size is None else min(batch_size, per_device))

    out = jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"), axis_names={"data"},
                        check_vma=False)(consts, xs)
    return jax.tree.map(lambda a: a[:n], out)


def split_sum(fn, rows, mesh=None, consts=()):
    """``fn(*consts, rows)`` for a pytree of sums (a batch statistic additive over rows), with the rows (leading
    axis of every leaf) split over the "data" axis of ``mesh``: each device sums its own rows, then one psum.
    ``fn`` also gets the index of its first row (``fn(*consts, rows, first)``) for global positions. The row
    count must divide by the "data" size (pad with masked rows). Call it inside ``jax.jit``."""
    if mesh is None or mesh.shape["data"] == 1:  # one data shard: XLA partitions FSDP weights itself
        return fn(*consts, rows, jnp.int32(0))
    n = jax.tree.leaves(rows)[0].shape[0]
    d = mesh.shape["data"]
    if n % d:
        raise ConfigError(f"{n} rows do not split over {d} devices on the data axis; use a multiple of {d}.")

    def local(consts, rows):
        first = jax.lax.axis_index("data") * (n // d)
        return jax.lax.psum(fn(*consts, rows, first), "data")

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data")), out_specs=P(), axis_names={"data"},
                         check_vma=False)(consts, rows)


def split_gather(fn, rows, mesh=None, consts=()):
    """Like :func:`split_sum`, but each device's result is gathered: leaves ``[d, ...]`` (d = "data" size;
    ``[1, ...]`` without a mesh), for merges that are not sums (a top-k)."""
    if mesh is None or mesh.shape["data"] == 1:  # one data shard: XLA partitions FSDP weights itself
        return jax.tree.map(lambda a: a[None], fn(*consts, rows, jnp.int32(0)))
    n = jax.tree.leaves(rows)[0].shape[0]
    d = mesh.shape["data"]
    if n % d:
        raise ConfigError(f"{n} rows do not split over {d} devices on the data axis; use a multiple of {d}.")

    def local(consts, rows):
        out = fn(*consts, rows, jax.lax.axis_index("data") * (n // d))
        return jax.tree.map(lambda a: a[None], out)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"), axis_names={"data"},
                         check_vma=False)(consts, rows)


def rows_sharding(mesh):
    """Rows split on "data" (the layout :func:`split_sum` / :func:`split_gather` read); None without a mesh."""
    return None if mesh is None else NamedSharding(mesh, P("data"))


def round_up_rows(batch_size: int, mesh) -> int:
    """``batch_size`` raised to a multiple of the "data" size, so each device gets whole rows."""
    d = 1 if mesh is None else mesh.shape["data"]
    return -(-batch_size // d) * d


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
