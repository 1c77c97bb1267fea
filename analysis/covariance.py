"""The uncentred second moment C = E[k kᵀ] of a layer's FFN coefficients, streamed and cached.

ROME (Meng et al. 2022, eq. 2) and MEMIT (Meng et al. 2023, eq. 14) weigh a value-matrix update by
C = K₀K₀ᵀ / n, the uncentred second moment of the keys the layer already stores. Here a key k is the
coefficient vector m = f(x·K) at one position (the input of ``W_out``). C is accumulated batch by batch in a
jitted update, so memory is O(F²) whatever the corpus size, and cached as ``.npz`` in the run dir.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from ffnkv.errors import FfnkvError
from ffnkv.model import forward


def _accumulate(params, tokens_BT, mask_BT, sum_LFF, count, cfg, layers):
    m_LBTF = forward(params, tokens_BT, cfg).acts.ffn[jnp.asarray(layers)]
    m_LNF = (m_LBTF * mask_BT[None, :, :, None]).reshape(len(layers), -1, m_LBTF.shape[-1])
    return sum_LFF + jnp.einsum("lnf,lng->lfg", m_LNF, m_LNF), count + mask_BT.sum()


_accumulate_jit = jax.jit(_accumulate, static_argnames=("cfg", "layers"), donate_argnums=(3, 4))


def key_second_moment(params, cfg, layers, batches: Iterable[tuple]) -> tuple[np.ndarray, int]:
    """C_l = E[k kᵀ] over the masked positions of ``batches`` (pairs ``(tokens_BT, mask_BT)``), for each layer.

    Returns ``(C_LFF, n_positions)``; the sum stays on device between batches (no per-batch host sync).
    """
    layers = tuple(int(l) for l in layers)
    sum_LFF = jnp.zeros((len(layers), cfg.width, cfg.width), jnp.float32)
    count = jnp.zeros((), jnp.float32)
    for tokens_BT, mask_BT in batches:
        sum_LFF, count = _accumulate_jit(params, jnp.asarray(tokens_BT), jnp.asarray(mask_BT, jnp.float32),
                                         sum_LFF, count, cfg, layers)
    n = int(count)
    if n == 0:
        raise FfnkvError("the corpus for the key second moment has no unmasked positions; give it real tokens.")
    return np.asarray(sum_LFF / n), n


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


def cached_second_moment(run_dir, params, cfg, layers, task, seed: int = 1234, n_batches: int = 50,
                         batch_size: int = 64) -> np.ndarray:
    """C for ``layers`` from ``n_batches`` task batches, read from / written to ``run_dir/analysis/edit/``.

    The cache file names the layers, seed and corpus size; it is written atomically so a failure leaves
    nothing half-written.
    """
    layers = tuple(int(l) for l in layers)
    out_dir = Path(run_dir) / "analysis" / "edit"
    tag = f"cov_L{'-'.join(map(str, layers))}_s{seed}_n{n_batches}x{batch_size}"
    path = out_dir / f"{tag}.npz"
    if path.exists():
        with np.load(path) as data:
            return data["C_LFF"]
    C_LFF, n = key_second_moment(params, cfg, layers, task_batches(task, seed, n_batches, batch_size))
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{tag}.tmp.npz"
    np.savez(tmp, C_LFF=C_LFF, layers=np.asarray(layers), n_positions=n,
             meta=json.dumps({"seed": seed, "n_batches": n_batches, "batch_size": batch_size}))
    os.replace(tmp, path)
    return C_LFF
