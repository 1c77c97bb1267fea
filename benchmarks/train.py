"""Training throughput and MFU for the reference shape (4 layers, d_model 256, 4 heads, d_ff 1024, vocab 4096,
seq 256, batch 16).

FLOPs per training step (matmuls only; a multiply-add counts 2):
    N_mm      = L·(4·D² + 2·D·F) + D·V            (q,k,v,o projections, the two FFN matrices, the unembedding)
    per token = 6·N_mm + 12·L·T·D                 (fwd 2·N_mm + 4·T·D per layer for QKᵀ and AV; bwd = 2× fwd)
    per step  = per token · B·T
(the full T×T score matrix is computed, so the attention term uses T, not T/2). MFU = model FLOP/s divided by
the peak f32 matmul FLOP/s measured in the same run: the best of jitted square f32 matmuls.

Usage: ``python benchmarks/train.py [--steps 10] [--dtype float32|bfloat16] [--ffn gelu]``; prints JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # this file is named train.py: import the package instead

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import forward_flops_per_token
from ffnkv.config import ModelConfig
from train.config import OptimConfig, TrainConfig
from train.state import init_state, make_optimizer, schedule
from train.step import make_train_step


def matmul_peak(sizes=(1024, 2048, 3072), repeats=5) -> dict:
    """Best f32 FLOP/s of a jitted n×n @ n×n matmul (2n³ FLOPs) over a few sizes."""
    best = {}
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
        f = jax.jit(lambda x, y: x @ y)
        f(a, b).block_until_ready()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            f(a, b).block_until_ready()
            times.append(time.perf_counter() - t)
        best[n] = 2 * n ** 3 / min(times)
    return {"flops_per_s": max(best.values()), "by_size": {str(k): v for k, v in best.items()}}


def step_flops(cfg: ModelConfig, batch: int, seq: int) -> dict:
    """Training = forward + backward (2× forward): 3 × ``benchmarks.common.forward_flops_per_token``."""
    per_token = 3 * forward_flops_per_token(cfg, seq)
    return {"flops_per_token": per_token, "flops_per_step": per_token * batch * seq}


def benchmark(dtype="float32", ffn="gelu", steps=10, batch=16, seq=256) -> dict:
    model = ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, d_ff=1024, ffn=ffn, max_len=seq,
                        dtype=dtype)
    cfg = TrainConfig(model=model, optim=OptimConfig(), steps=1000, batch_size=batch)
    step = jax.jit(make_train_step(cfg, make_optimizer(cfg), schedule(cfg)), donate_argnums=0)
    state = init_state(cfg)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, model.vocab_size, (batch, seq + 1)).astype(np.int32)
    data = {"tokens": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:]),
            "weights": jnp.ones((batch, seq), jnp.float32)}
    t = time.perf_counter()
    compiled = step.lower(state, data).compile()
    compile_s = time.perf_counter() - t
    state, m = compiled(state, data)
    jax.block_until_ready(m)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = compiled(state, data)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    step_s = float(np.median(times))
    flops = step_flops(model, batch, seq)
    return {"dtype": dtype, "ffn": ffn, "batch": batch, "seq": seq, "compile_s": compile_s,
            "step_s_median": step_s, "step_s_min": float(min(times)), "tokens_per_s": batch * seq / step_s,
            "model_flops_per_s": flops["flops_per_step"] / step_s, **flops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--ffn", default="gelu")
    args = parser.parse_args()
    peak = matmul_peak()
    result = benchmark(args.dtype, args.ffn, args.steps)
    peak_after = matmul_peak()  # the machine may be shared: take the better of before/after
    result["peak_f32_matmul_flops_per_s"] = max(peak["flops_per_s"], peak_after["flops_per_s"])
    result["peak_by_size"] = peak["by_size"]
    result["mfu"] = result["model_flops_per_s"] / result["peak_f32_matmul_flops_per_s"]
    result["devices"] = [str(d) for d in jax.devices()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
