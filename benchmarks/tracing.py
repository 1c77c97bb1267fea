"""Causal tracing for the reference shape: seconds per full grid.

Reference shape (issue #2): 4 layers, d_model 256, 4 heads, d_ff 1024, vocab 4096; one 16-token prompt with
a 4-token subject; S = 10 noise samples; grid = 5 kinds (resid, mlp, attn, resid with MLP severed, resid
with attention severed) × 16 tokens × 4 layers, i.e. 3 200 corrupted forward passes in one program.
``--compare`` also times the reference-code pattern: one jitted call per (kind, token, layer) cell with the
S samples as its batch.
Run: ``python benchmarks/tracing.py [--samples 10] [--window 10] [--facts 1] [--compare]``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

import ffnkv  # noqa: E402
from analysis import tracing as TR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ffn", default="relu", choices=ffnkv.FFN_KINDS)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--facts", type=int, default=1)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--cell-batch", type=int, default=64)
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    cfg = ffnkv.ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, d_ff=1024, ffn=args.ffn,
                            max_len=args.seq)
    params = ffnkv.init_params(jax.random.key(0), cfg)
    rng = np.random.default_rng(0)
    n = args.facts
    enc = {"tokens": rng.integers(0, cfg.vocab_size, (n, args.seq)).astype(np.int32),
           "predict_pos": np.full(n, args.seq - 1, np.int32), "target": rng.integers(0, cfg.vocab_size, n).astype(np.int32),
           "subject_start": np.full(n, 2, np.int32), "subject_end": np.full(n, 6, np.int32)}
    window = min(args.window, cfg.n_layers)
    trace = lambda: TR.causal_trace(params, cfg, enc, None, args.samples, window,  # noqa: E731
                                    cell_batch=args.cell_batch)["restored"]
    start = time.perf_counter()
    trace()
    first = time.perf_counter() - start
    secs = common.seconds(trace, repeats=3)
    cells = len(TR.KINDS) * args.seq * cfg.n_layers
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}  ffn={args.ffn}  seq={args.seq} "
          f"samples={args.samples} window={window}")
    print(f"full grid ({cells} cells x {args.samples} samples = {cells * args.samples} forwards): "
          f"{secs / n:.3f} s/grid  (first call incl. compile {first:.1f} s)")
    if args.compare:
        nu = TR.embedding_noise(params)
        tokens_T = jnp.asarray(enc["tokens"][0])
        noise_STD = nu * jax.random.normal(jax.random.key(0), (args.samples, args.seq, cfg.d_model))
        noise_STD = noise_STD * ((jnp.arange(args.seq) >= 2) & (jnp.arange(args.seq) < 6))[None, :, None]
        clean = ffnkv.forward(params, tokens_T[None], cfg).acts
        corrupt = jax.vmap(lambda z: ffnkv.forward(params, tokens_T[None], cfg, ffnkv.Hooks(embed_add=z)).acts)(noise_STD)
        pos, gold = args.seq - 1, int(enc["target"][0])

        @jax.jit
        def cell(kind, t, layer):
            def one(z, acts):
                hooks = TR._cell_hooks(kind, t, layer, z, clean, acts, cfg, window, args.seq)
                return TR.gold_prob(params, cfg, tokens_T, pos, gold, hooks)
            return jax.vmap(one)(noise_STD, corrupt).mean()

        def loop():
            return [cell(k, t, layer) for k in range(len(TR.KINDS)) for t in range(args.seq)
                    for layer in range(cfg.n_layers)]
        loop_secs = common.seconds(loop, repeats=1)
        print(f"one call per cell: {loop_secs:.3f} s/grid (batched program is {loop_secs / (secs / n):.2f}x faster)")
    print(f"peak host memory: {common.peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
