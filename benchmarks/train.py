"""Training throughput and MFU for the reference shape (4 layers, d_model 256, 4 heads, d_ff 1024, vocab 4096,
seq 256, batch 16).

FLOPs per training step (matmuls only; a multiply-add counts 2):
    N_mm      = L·(4·D² + 2·D·F) + D·V            (q,k,v,o projections, the two FFN matrices, the unembedding)
    per token = 6·N_mm + 12·L·T·D                 (fwd 2·N_mm + 4·T·D per layer for QKᵀ and AV; bwd = 2× fwd)
    per step  = per token · B·T
(the full T×T score matrix is computed, so the attention term uses T, not T/2). MFU = model FLOP/s divided by
the f32 matmul peak measured in the same run (``common.matmul_peak_flops``, the better of before/after).

Usage: ``python benchmarks/train.py [--steps 10] [--dtype float32|bfloat16] [--ffn gelu]``; prints JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # this file is named train.py: import the train package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from ffnkv.config import ModelConfig  # noqa: E402
from train.config import OptimConfig, TrainConfig  # noqa: E402
from train.state import init_state, make_optimizer, schedule  # noqa: E402
from train.step import make_train_step  # noqa: E402


def step_flops(cfg: ModelConfig, batch: int, seq: int) -> dict:
    """Training = forward + backward (2× forward): 3 × ``benchmarks.common.forward_flops_per_token``."""
    per_token = 3 * common.forward_flops_per_token(cfg, seq)
    return {"flops_per_token": per_token, "flops_per_step": per_token * batch * seq}


def measure(dtype: str = "float32", ffn: str = "gelu", steps: int = 10, batch: int = 16, seq: int = 256) -> dict:
    """Tokens/s of the jitted, donated train step (forward, backward, clipping, AdamW); ``steps`` steps timed together
    after a warm-up step. Model FLOPs per step: see the module docstring."""
    model = ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, d_ff=1024, ffn=ffn, max_len=seq,
                        dtype=dtype)
    cfg = TrainConfig(model=model, optim=OptimConfig(), steps=1000, batch_size=batch)
    step = jax.jit(make_train_step(cfg, make_optimizer(cfg), schedule(cfg)), donate_argnums=0)
    state = init_state(cfg)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, model.vocab_size, (batch, seq + 1)).astype(np.int32)
    data = {"tokens": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:]),
            "weights": jnp.ones((batch, seq), jnp.float32)}
    peaks = [common.matmul_peak_flops()]
    t = time.perf_counter()
    compiled = step.lower(state, data).compile()
    compile_s = time.perf_counter() - t
    state, m = compiled(state, data)
    jax.block_until_ready(m)
    start = time.perf_counter()
    for _ in range(steps):  # dispatched back to back (the donated state chains them); one sync at the end
        state, m = compiled(state, data)
    jax.block_until_ready((state, m))
    total_s = time.perf_counter() - start
    peaks.append(common.matmul_peak_flops())
    flops = step_flops(model, batch, seq)
    return common.row("train", "tokens", steps * batch * seq, total_s, steps * flops["flops_per_step"], peaks,
                      dtype=dtype, ffn=ffn, batch=batch, seq=seq, steps=steps, compile_s=compile_s,
                      step_s=total_s / steps, **flops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--ffn", default="gelu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=256)
    print(json.dumps(measure(**vars(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
