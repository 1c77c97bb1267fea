"""Stream a corpus of token rows through a jitted accumulator in bounded memory.

The corpus is ``tokens_NT`` (a numpy array or a memmap view) with an optional ``mask_NT`` of positions that
count. Rows are fed ``batch_size`` at a time (the last chunk is padded with masked rows, so one program
serves every chunk); the state stays on device and is fetched once at the end, so there is no per-chunk
host sync. Memory is the state plus one chunk's activations, independent of N.
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from ffnkv import sharding


def chunks(tokens_NT, mask_NT=None, batch_size: int = 32):
    """Yields ``(tokens_BT int32, mask_BT bool, offset)`` where ``offset`` is the flat index of the chunk's first token."""
    N, T = tokens_NT.shape
    for start in range(0, N, batch_size):
        tok = np.zeros((batch_size, T), np.int32)
        mask = np.zeros((batch_size, T), bool)
        stop = min(start + batch_size, N)
        tok[: stop - start] = tokens_NT[start:stop]
        mask[: stop - start] = True if mask_NT is None else mask_NT[start:stop]
        yield tok, mask, np.int32(start * T)


def stream(step: Callable, state, tokens_NT, mask_NT=None, batch_size: int = 32, progress: bool = False, mesh=None):
    """``state = step(state, tokens_BT, mask_BT, offset)`` over all chunks; ``step`` should be jitted with donation.
    ``mesh``: each chunk's rows are placed split over its "data" axis (``batch_size`` a multiple of it)."""
    rows = sharding.rows_sharding(mesh)
    put = jax.device_put if rows is None else (lambda x: sharding.put(x, rows))  # noqa: E731
    items = chunks(tokens_NT, mask_NT, batch_size)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=-(-len(tokens_NT) // batch_size), leave=False)
    for tok, mask, offset in items:
        state = step(state, put(tok), put(mask), offset)
    return jax.tree.map(sharding.fetch, state)
