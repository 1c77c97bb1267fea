"""ModelConfig: the architecture as a frozen, hashable dataclass (usable as a jit static argument)."""
from __future__ import annotations

import dataclasses

import numpy as np

from ffnkv.errors import ConfigError

FFN_KINDS = ("relu", "gelu", "swiglu", "softmax", "linear", "none")
POSITIONAL = ("learned", "rope", "none")
NORMS = ("layernorm", "rmsnorm")
DTYPES = ("float32", "bfloat16", "float16")


def _require(ok: bool, field: str, value, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"ModelConfig.{field}={value!r} is not allowed; use {allowed}.")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A transformer whose FFN kind and FFN-bearing layers are choices.

    ``ffn_layers`` lists the layers that have an FFN (None: all); the others are attention-only blocks
    computed by the same scanned block with the FFN output masked to zero, so the forward pass never forks.
    The options after ``dtype`` exist so real checkpoints (GPT-2, BERT, llama) import exactly.
    """

    vocab_size: int = 64
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    ffn: str = "relu"
    max_len: int = 64
    causal: bool = True
    positional: str = "learned"
    norm: str = "layernorm"
    tie_embeddings: bool = True
    dtype: str = "float32"
    ffn_layers: tuple[int, ...] | None = None
    n_kv_heads: int | None = None
    prenorm: bool = True
    embed_norm: bool = False
    gelu_approximate: bool = False
    bias: bool = True
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_len"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value > 0, name, value, "a positive integer")
        _require(isinstance(self.d_ff, int) and self.d_ff >= 0, "d_ff", self.d_ff, "a non-negative integer")
        _require(self.ffn in FFN_KINDS, "ffn", self.ffn, "one of " + ", ".join(FFN_KINDS))
        _require(self.ffn == "none" or self.d_ff > 0, "d_ff", self.d_ff, "a positive width for an FFN kind other than 'none'")
        _require(self.positional in POSITIONAL, "positional", self.positional, "one of " + ", ".join(POSITIONAL))
        _require(self.norm in NORMS, "norm", self.norm, "one of " + ", ".join(NORMS))
        _require(self.dtype in DTYPES, "dtype", self.dtype, "one of " + ", ".join(DTYPES))
        _require(self.d_model % self.n_heads == 0, "n_heads", self.n_heads, f"a divisor of d_model={self.d_model}")
        _require(self.positional != "rope" or self.head_dim % 2 == 0, "positional", self.positional,
                 "'learned' when d_model / n_heads is odd (rope needs an even head size)")
        kv = self.n_kv_heads
        _require(kv is None or (isinstance(kv, int) and kv > 0 and self.n_heads % kv == 0), "n_kv_heads", kv,
                 f"None or a positive divisor of n_heads={self.n_heads}")
        if self.ffn_layers is not None:
            layers = tuple(int(i) for i in self.ffn_layers)
            _require(all(0 <= i < self.n_layers for i in layers) and len(set(layers)) == len(layers), "ffn_layers",
                     self.ffn_layers, f"None or distinct layer indices in [0, {self.n_layers})")
            object.__setattr__(self, "ffn_layers", tuple(sorted(layers)))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def width(self) -> int:
        """F, the number of memory coefficients per layer (0 for attention-only models)."""
        return 0 if self.ffn == "none" else self.d_ff

    def has_ffn_L(self) -> np.ndarray:
        """1.0 for layers with an FFN, 0.0 for attention-only layers."""
        mask = np.zeros(self.n_layers, np.float32)
        if self.ffn != "none":
            mask[list(range(self.n_layers) if self.ffn_layers is None else self.ffn_layers)] = 1.0
        return mask

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"ModelConfig has no field {unknown[0]!r}; known fields: {', '.join(sorted(known))}.")
        values = dict(values)
        if values.get("ffn_layers") is not None:
            values["ffn_layers"] = tuple(values["ffn_layers"])
        return cls(**values)


def ffn_params_per_layer(kind: str, d_model: int, d_ff: int, bias: bool = True) -> int:
    """Parameters of one FFN: relu/gelu/linear have W_in, W_out (+ biases); swiglu three matrices; softmax two."""
    if kind == "none":
        return 0
    if kind == "swiglu":
        return 3 * d_model * d_ff
    if kind == "softmax":
        return 2 * d_model * d_ff
    return 2 * d_model * d_ff + (d_ff + d_model if bias else 0)


def matched_d_ff(kind: str, d_model: int, reference_d_ff: int, reference_kind: str = "relu", bias: bool = True) -> int:
    """The width for ``kind`` whose FFN parameter count is closest to ``reference_kind`` at ``reference_d_ff``.

    Example: matching relu at d_ff=1024 gives swiglu d_ff=683 (three matrices instead of two).
    ``none`` has no FFN and returns 0.
    """
    if kind == "none":
        return 0
    target = ffn_params_per_layer(reference_kind, d_model, reference_d_ff, bias)
    fixed = ffn_params_per_layer(kind, d_model, 0, bias)
    per_unit = ffn_params_per_layer(kind, d_model, 1, bias) - fixed
    return max(1, int(round((target - fixed) / per_unit)))
