"""The uncentred second moment C = E[k kᵀ] of a layer's FFN coefficients, streamed over a corpus.

ROME (Meng et al. 2022, eq. 2) and MEMIT (Meng et al. 2023, eq. 14) weigh a value-matrix update by
C = K₀K₀ᵀ / n, the uncentred second moment of the keys the layer already stores. Here a key k is the
coefficient vector m = f(x·K) at one position (the input of ``W_out``). C is accumulated batch by batch in a
jitted update, so memory is O(F²) whatever the corpus size.
"""
from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from ffnkv import sharding
from ffnkv.errors import FfnkvError
from ffnkv.model import forward


def _moment_sums(params, rows, first, cfg, layers):
    tokens_BT, mask_BT = rows
    m_LBTF = forward(params, tokens_BT, cfg).acts.ffn[jnp.asarray(layers)]
    m_LNF = (m_LBTF * mask_BT[None, :, :, None]).reshape(len(layers), -1, m_LBTF.shape[-1])
    return jnp.einsum("lnf,lng->lfg", m_LNF, m_LNF), mask_BT.sum()


def accumulate(params, tokens_BT, mask_BT, sum_LFF, count, cfg, layers, mesh=None):
    """One batch added to the running sums; its rows split over the "data" axis of ``mesh`` (one psum)."""
    fn = lambda p, rows, first: _moment_sums(p, rows, first, cfg, layers)
    s_LFF, n = sharding.split_sum(fn, (tokens_BT, mask_BT), mesh, (params,))
    out = (sum_LFF + s_LFF, count + n)
    return out if mesh is None else jax.lax.with_sharding_constraint(out, sharding.replicated(mesh))


accumulate_jit = jax.jit(accumulate, static_argnames=("cfg", "layers", "mesh"), donate_argnums=(3, 4))


def key_second_moment(params, cfg, layers, batches: Iterable[tuple], mesh=None) -> tuple[np.ndarray, int]:
    """C_l = E[k kᵀ] over the masked positions of ``batches`` (pairs ``(tokens_BT, mask_BT)``), for each layer.

    Returns ``(C_LFF, n_positions)``; the sum stays on device between batches (no per-batch host sync).
    ``mesh``: a ffnkv.sharding mesh; each batch's rows (tokens) are split over its "data" axis (padded with
    masked rows to a multiple of it), parameters replicated or FSDP-split on "model".
    """
    layers = tuple(int(l) for l in layers)
    placed = sharding.put_params(params, mesh)
    sum_LFF, count = sharding.put_inputs((np.zeros((len(layers), cfg.width, cfg.width), np.float32),
                                          np.zeros((), np.float32)), mesh)
    for tokens_BT, mask_BT in batches:
        tokens_BT, mask_BT = np.asarray(tokens_BT, np.int32), np.asarray(mask_BT, np.float32)
        pad = sharding.round_up_rows(len(tokens_BT), mesh) - len(tokens_BT)
        tokens_BT, mask_BT = (np.pad(a, ((0, pad), (0, 0))) for a in (tokens_BT, mask_BT))
        rows = sharding.rows_sharding(mesh)
        tokens_BT, mask_BT = ((jnp.asarray(a) if rows is None else sharding.put(a, rows)) for a in (tokens_BT, mask_BT))
        sum_LFF, count = accumulate_jit(placed, tokens_BT, mask_BT, sum_LFF, count, cfg, layers, mesh)
    sum_LFF, count = sharding.fetch(sum_LFF), sharding.fetch(count)
    n = int(count)
    if n == 0:
        raise FfnkvError("the corpus for the key second moment has no unmasked positions; give it real tokens.")
    return sum_LFF / n, n


def task_batches(task, seed: int, n_batches: int, batch_size: int, pad_id: int = 0):
    """``(tokens, mask)`` batches of a task. The mask is the task's ``mask`` field where it has one, else the
    non-padding positions (``tokens != pad_id``; the facts corpus right-pads its packs with PAD = 0, about 18%
    of positions), so padding never enters C. Tasks without padding (``pad_id=None``) keep every position."""
    for step in range(n_batches):
        batch = task.batch(seed, step, batch_size)
        tokens = np.asarray(batch["tokens"])
        if "mask" in batch:
            mask = np.asarray(batch["mask"])
        else:
            mask = np.ones_like(tokens) if pad_id is None else tokens != pad_id
        yield tokens, mask.astype(np.float32)
