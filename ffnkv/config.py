"""ModelConfig: the architecture as a frozen, hashable dataclass (usable as a jit static argument)."""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing

import numpy as np

from ffnkv.errors import ConfigError

FFN_KINDS = ("relu", "gelu", "swiglu", "softmax", "linear", "none")
POSITIONAL = ("learned", "rope", "none")
NORMS = ("layernorm", "rmsnorm")
DTYPES = ("float32", "bfloat16", "float16")


INT_MAX = 2 ** 31 - 1  # JAX's default integer is int32


def ints(lo: int, hi: int = INT_MAX):
    """A field rule: an integer in [lo, hi]."""
    return lambda v: lo <= v <= hi, f"an integer from {lo} to {hi}"


def reals(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
    """A field rule: a finite number between lo and hi (each end included unless open)."""
    text = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return lambda v: (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi), text


def _fits(value, hint) -> bool:
    """Whether ``value`` has the annotated type: bool is no number, numbers are finite, strings non-empty,
    a tuple may come as a list (JSON has no tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and -2 ** 63 <= value < 2 ** 63
    if hint is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and \
            math.isfinite(value)
    if hint is str:
        return isinstance(value, str) and bool(value.strip()) and "\0" not in value
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return isinstance(value, origin or hint)


def _kind(hint) -> str:
    """What an annotation asks for, in words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_kind(arm) for arm in args)
    names = {bool: "True or False", int: "an integer", float: "a finite number", str: "a non-empty string",
             dict: "a dict", type(None): "None"}
    if hint in names:
        return names[hint]
    if origin is tuple:
        return f"a list of {_kind(args[0]).removeprefix('a ').removeprefix('an ')}s" if args[-1] is Ellipsis \
            else f"a list of {len(args)} values like ({', '.join(_kind(a) for a in args)})"
    return getattr(origin or hint, "__name__", str(hint))


def check_fields(obj, where: str, rules: dict | None = None) -> None:
    """Raise ConfigError for the first field of the dataclass ``obj`` whose value is not of its annotated type or
    breaks its rule ``rules[name] = (ok(value) -> bool, what is allowed)``; an int field without a rule must be
    non-negative and fit int32. The message names the field as ``{where}{name}`` (``where`` like ``"data."``).
    Call it first in ``__post_init__``, so no later check meets a value of the wrong type."""
    hints, rules = _type_hints(type(obj)), rules or {}
    for field in dataclasses.fields(obj):
        value, hint = getattr(obj, field.name), hints[field.name]
        rule = rules.get(field.name)
        if rule is None and (hint is int or (typing.get_origin(hint) in (typing.Union, types.UnionType)
                                             and int in typing.get_args(hint))):
            rule = (lambda v: v is None or 0 <= v <= INT_MAX, _kind(hint) + f" from 0 to {INT_MAX}")
        ok = _fits(value, hint) and (rule is None or value is None or _apply(rule[0], value))
        if not ok:
            raise ConfigError(f"{where}{field.name}={value!r} is not allowed; use {rule[1] if rule else _kind(hint)}.")


_type_hints = functools.cache(typing.get_type_hints)


def _apply(ok, value) -> bool:
    try:
        return bool(ok(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _require(ok: bool, field: str, value, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"ModelConfig.{field}={value!r} is not allowed; use {allowed}.")


_MODEL_RULES = {name: (lambda v: 1 <= v <= INT_MAX, "a positive integer")
                for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_len")} | {
    "d_ff": (lambda v: 0 <= v <= INT_MAX, "a non-negative integer"),
    "ffn_layers": (lambda v: all(0 <= i < 2 ** 31 for i in v), "None or a list of layer indices"),
    "n_kv_heads": (lambda v: v is None or 1 <= v <= INT_MAX, "None or a positive integer"),
    "norm_eps": reals(0, 1, lo_open=True),
    "rope_theta": reals(1, 1e12, lo_open=True),
}


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
        check_fields(self, "ModelConfig.", _MODEL_RULES)
        _require(self.ffn in FFN_KINDS, "ffn", self.ffn, "one of " + ", ".join(FFN_KINDS))
        _require(self.ffn == "none" or self.d_ff > 0, "d_ff", self.d_ff,
                 "a positive width for an FFN kind other than 'none'")
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
            layers = tuple(int(i) for i in self.ffn_layers)  # numpy integers become ints
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
        if not isinstance(values, dict):
            raise ConfigError(f"the model config must be a dict of ModelConfig fields, not {values!r}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"ModelConfig has no field {unknown[0]!r}; known fields: {', '.join(sorted(known))}.")
        values = dict(values)
        if isinstance(values.get("ffn_layers"), list):
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
