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
from ffnkv.progress import Progress


def chunks(tokens_NT, mask_NT=None, batch_size: int = 32):
    """Yields ``(tokens_BT int32, mask_BT bool, offset)`` where ``offset`` is the flat index of the chunk's first
    token."""
    N, T = tokens_NT.shape
    for start in range(0, N, batch_size):
        tok = np.zeros((batch_size, T), np.int32)
        mask = np.zeros((batch_size, T), bool)
        stop = min(start + batch_size, N)
        tok[: stop - start] = tokens_NT[start:stop]
        mask[: stop - start] = True if mask_NT is None else mask_NT[start:stop]
        yield tok, mask, np.int32(start * T)


def stream(step: Callable, state, tokens_NT, mask_NT=None, batch_size: int = 32, progress=False,
           mesh=None):
    """``state = step(state, tokens_BT, mask_BT, offset)`` over all chunks; ``step`` should be jitted with donation.
    ``mesh``: each chunk's rows are placed split over its "data" axis (``batch_size`` a multiple of it).
    ``progress``: a ``ffnkv.progress.Progress`` (or a bool): the first chunk is the compile, then a bar over
    tokens; while it draws, the host waits for each chunk (so the bar is true), otherwise only at the end."""
    rows = sharding.rows_sharding(mesh)
    put = jax.device_put if rows is None else (lambda x: sharding.put(x, rows))
    progress = Progress(progress) if isinstance(progress, bool) else progress
    N, T = tokens_NT.shape
    items = progress.chunks(chunks(tokens_NT, mask_NT, batch_size), None, "tokens", total=N * T,
                            weight=lambda item: (min(N * T, int(item[2]) + batch_size * T) - int(item[2])))
    for tok, mask, offset in items:
        state = step(state, put(tok), put(mask), offset)
        if progress.on:
            jax.block_until_ready(state)
    return jax.tree.map(sharding.fetch, state)
