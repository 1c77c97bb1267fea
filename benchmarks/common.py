"""Shared benchmark helpers: timing, the machine's jit f32 matmul peak, model FLOP counts, peak memory."""
from __future__ import annotations

import resource
import time

import jax
import jax.numpy as jnp


def seconds(fn, *args, repeats: int = 5) -> float:
    """Median wall time of ``fn(*args)`` after one warm-up (compilation) call, blocking on the result."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def matmul_peak_flops(n: int = 2048, dtype=jnp.float32) -> float:
    """FLOP/s of a jit-compiled n×n @ n×n matmul (2n³ FLOPs) on the default device, measured now."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    return 2 * n**3 / seconds(jax.jit(jnp.matmul), a, b)


def forward_flops_per_token(cfg, seq_len: int) -> float:
    """Matmul FLOPs of one token's forward pass: 2 × (weights touched) + attention scores and mixing.

    Per layer: Q, K, V, O projections 2·D·(H + 2G + H)·d_head; FFN 2·D·F·(3 if swiglu else 2) in layers that
    have one; attention 2·2·T·D (QKᵀ and AV over all T keys — the causal half is computed too). Plus the
    unembedding 2·D·V. Norms, softmaxes and activations are not counted.
    """
    D, dh = cfg.d_model, cfg.head_dim
    attn = 2 * D * dh * (2 * cfg.n_heads + 2 * cfg.kv_heads) + 4 * seq_len * D
    ffn = 2 * D * cfg.width * (3 if cfg.ffn == "swiglu" else 2)
    return cfg.n_layers * attn + float(cfg.has_ffn_L().sum()) * ffn + 2 * D * cfg.vocab_size


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (host memory; on CPU this includes device buffers)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
