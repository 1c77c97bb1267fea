"""ffnkv: transformer feed-forward layers as key-value memories, trained and analysed in JAX."""
from ffnkv.config import FFN_KINDS, ModelConfig, ffn_params_per_layer, matched_d_ff
from ffnkv.errors import ConfigError, FfnkvError
from ffnkv.hooks import (
    Acts,
    Hooks,
    ablate_heads,
    ablate_neurons,
    add_vector,
    neuron_mask_hooks,
    patch_from,
    scale_neurons,
)
from ffnkv.model import Output, forward, init_params
from ffnkv.params import count_params

__all__ = [
    "FFN_KINDS", "ModelConfig", "ffn_params_per_layer", "matched_d_ff", "ConfigError", "FfnkvError", "Acts",
    "Hooks", "ablate_heads", "ablate_neurons", "add_vector", "neuron_mask_hooks", "patch_from", "scale_neurons",
    "Output",
    "forward", "init_params", "count_params",
]
