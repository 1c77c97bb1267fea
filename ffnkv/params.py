"""Parameter counting that ignores the zero FFN slots of attention-only layers."""
from __future__ import annotations

import jax
import numpy as np


def count_params(params, cfg) -> int:
    """Trainable parameters that take part in the forward pass."""
    total = sum(int(np.prod(w.shape)) for w in jax.tree.leaves(params))
    ffn_per_layer = sum(int(np.prod(w.shape[1:])) for w in jax.tree.leaves(params["blocks"]["ffn"]))
    return total - ffn_per_layer * int(cfg.n_layers - cfg.has_ffn_L().sum())
