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

if __name__ == "__main__":  # run as a script, sys.path[0] is benchmarks/: import from the repository root instead
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ffnkv  # noqa: E402
from analysis import tracing as TR  # noqa: E402
from benchmarks import common  # noqa: E402


def grid_flops(cfg, seq: int, samples: int) -> float:
    """Model FLOPs of one fact's full grid: T·f·(1 + S + C·T·L·S), f = forward FLOPs per token.

    One clean forward, S corrupted forwards, and S forwards for each of the C·T·L cells (C = 5 kinds); the
    patching itself is elementwise and not counted.
    """
    cells = len(TR.KINDS) * seq * cfg.n_layers
    return seq * common.forward_flops_per_token(cfg, seq) * (1 + samples + cells * samples)


def _loop_seconds(params, cfg, enc, samples, window, seq) -> float:
    """The reference-code pattern on fact 0: one jitted call per (kind, token, layer) cell, S samples batched."""
    nu = TR.embedding_noise(params)
    tokens_T = jnp.asarray(enc["tokens"][0])
    subject_T = (jnp.arange(seq) >= enc["subject_start"][0]) & (jnp.arange(seq) < enc["subject_end"][0])
    noise_STD = nu * jax.random.normal(jax.random.key(0), (samples, seq, cfg.d_model)) * subject_T[None, :, None]
    clean = ffnkv.forward(params, tokens_T[None], cfg).acts
    corrupt = jax.vmap(lambda z: ffnkv.forward(params, tokens_T[None], cfg, ffnkv.Hooks(embed_add=z)).acts)(noise_STD)
    pos, gold = seq - 1, int(enc["target"][0])

    @jax.jit
    def cell(kind, t, layer):
        def one(z, acts):
            hooks = TR._cell_hooks(kind, t, layer, z, clean, acts, cfg, window, seq)
            return TR.gold_prob(params, cfg, tokens_T, pos, gold, hooks)
        return jax.vmap(one)(noise_STD, corrupt).mean()

    def loop():
        return [cell(k, t, layer) for k in range(len(TR.KINDS)) for t in range(seq) for layer in range(cfg.n_layers)]
    return common.seconds(loop, repeats=1)


def measure(ffn: str = "relu", seq: int = 16, facts: int = 1, samples: int = 10, window: int = 10,
            cell_batch: int = 8, compare: bool = False) -> dict:
    """Grid cells/s of ``analysis.tracing.causal_trace`` (all 5 kinds × T tokens × L layers per fact, S noise
    samples per cell); FLOPs per fact: :func:`grid_flops`. ``compare`` adds the per-cell loop's seconds/grid."""
    cfg = ffnkv.ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, d_ff=1024, ffn=ffn, max_len=seq)
    params = ffnkv.init_params(jax.random.key(0), cfg)
    rng = np.random.default_rng(0)
    enc = {"tokens": rng.integers(0, cfg.vocab_size, (facts, seq)).astype(np.int32),
           "predict_pos": np.full(facts, seq - 1, np.int32),
           "target": rng.integers(0, cfg.vocab_size, facts).astype(np.int32),
           "subject_start": np.full(facts, min(2, seq - 2), np.int32),
           "subject_end": np.full(facts, min(6, seq - 1), np.int32)}
    window = min(window, cfg.n_layers)

    def trace():
        return TR.causal_trace(params, cfg, enc, None, samples, window, cell_batch=cell_batch)["restored"]

    start = time.perf_counter()
    trace()
    first = time.perf_counter() - start
    peaks = [common.matmul_peak_flops()]
    secs = common.timed(trace, repeats=3)
    peaks.append(common.matmul_peak_flops())
    cells = len(TR.KINDS) * seq * cfg.n_layers
    extras = {}
    if compare:
        loop_s = _loop_seconds(params, cfg, enc, samples, window, seq)
        extras = {"loop_seconds_per_grid": loop_s, "speedup_vs_loop": loop_s / (secs / facts)}
    return common.row("causal tracing", "grid cells", facts * cells, secs, facts * grid_flops(cfg, seq, samples), peaks,
                      ffn=ffn, seq=seq, facts=facts, samples=samples, window=window, cell_batch=cell_batch,
                      cells_per_grid=cells, seconds_per_grid=secs / facts, first_call_s=first, **extras)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ffn", default="relu", choices=ffnkv.FFN_KINDS)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--facts", type=int, default=1)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--cell-batch", type=int, default=8)
    parser.add_argument("--compare", action="store_true")
    r = measure(**vars(parser.parse_args()))
    cells, s = r["cells_per_grid"], r["samples"]
    print(f"device: {r['device']}  ffn={r['ffn']}  seq={r['seq']} samples={s} window={r['window']}")
    print(f"full grid ({cells} cells x {s} samples = {cells * s} forwards): {r['seconds_per_grid']:.3f} s/grid  "
          f"(first call incl. compile {r['first_call_s']:.1f} s)")
    print(f"model {r['model_flops_per_s'] / 1e9:.1f} GFLOP/s / matmul peak {r['peak_flops_per_s'] / 1e9:.1f} GFLOP/s "
          f"= {r['ratio_to_peak']:.1%}")
    if "loop_seconds_per_grid" in r:
        print(f"one call per cell: {r['loop_seconds_per_grid']:.3f} s/grid "
              f"(batched program is {r['speedup_vs_loop']:.2f}x faster)")
    print(f"peak host memory: {r['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
