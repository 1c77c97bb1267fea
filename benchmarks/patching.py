"""Activation patching (resid_pre): cached corrupted prefix vs full recompute, same run.

Reference shape (issue #15): 4 layers, d_model 256, 4 heads, d_ff 1024, vocab 4096; the [4 layers × 32
positions] grid of a 32-token clean/corrupted prompt pair (the pair differs at one subject token).
Run: ``python benchmarks/patching.py [--seq 32] [--site resid_pre] [--pairs 1]``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script, sys.path[0] is benchmarks/: import from the repository root instead
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax
import numpy as np

import ffnkv
from analysis import patching as PA
from benchmarks import common
from ffnkv.prefix import suffix_groups


def grid_flops(cfg, seq: int, prefix: bool, buckets: int = 8) -> float:
    """Model FLOPs of one pair's grid: the clean and corrupted runs, then per cell (l, t) the whole corrupted
    forward (full) or its suffix from position t (rounded to the bucket) in blocks ≥ l with one position's
    logits (prefix)."""
    if not prefix:
        return (2 + cfg.n_layers * seq) * seq * common.forward_flops_per_token(cfg, seq)
    length = {t: n for n, ts in suffix_groups(seq, cfg.causal, buckets).items() for t in ts}
    cells = sum(common.suffix_flops(cfg, l, length[t], seq) for l in range(cfg.n_layers) for t in range(seq))
    return 2 * common.cache_flops(cfg, seq) + cells


def measure(ffn: str = "relu", seq: int = 32, pairs: int = 1, site: str = "resid_pre", cell_batch: int = 8,
            repeats: int = 3) -> dict:
    """Seconds of ``analysis.patching.activation_patching`` over the [L × T] grid, both methods interleaved in one
    process, results checked equal; FLOPs by :func:`grid_flops`."""
    cfg = ffnkv.ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, d_ff=1024, ffn=ffn, max_len=seq)
    params = ffnkv.init_params(jax.random.key(0), cfg)
    rng = np.random.default_rng(0)
    clean = rng.integers(0, cfg.vocab_size, (pairs, seq)).astype(np.int32)
    corrupt = clean.copy()
    corrupt[:, 2] = (clean[:, 2] + 1) % cfg.vocab_size
    enc = {"tokens": clean, "predict_pos": np.full(pairs, seq - 1, np.int32),
           "target": rng.integers(0, cfg.vocab_size, pairs).astype(np.int32)}
    run = {m: (lambda m=m: PA.activation_patching(params, cfg, enc, corrupt, site, recompute=m,
                                                  cell_batch=cell_batch)["patched"]) for m in ("prefix", "full")}
    result, first, diff, secs, peaks = common.prefix_vs_full(run, "patching", repeats)
    flops = {m: pairs * grid_flops(cfg, seq, m == "prefix") for m in run}
    cells = cfg.n_layers * seq
    return common.row("patching", "grid cells", pairs * cells, secs["prefix"], flops["prefix"], peaks, ffn=ffn,
                      seq=seq, pairs=pairs, site=site, first_call_s=first, full_seconds=secs["full"],
                      full_model_flops=flops["full"], speedup=secs["full"] / secs["prefix"],
                      full_ratio_to_peak=flops["full"] / secs["full"] / max(peaks), max_abs_difference=diff,
                      load_average=common.load_average())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ffn", default="relu", choices=ffnkv.FFN_KINDS)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--site", default="resid_pre", choices=PA.SITES)
    parser.add_argument("--cell-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    r = measure(**vars(parser.parse_args()))
    print(f"device: {r['device']}  ffn={r['ffn']}  grid [4 layers x {r['seq']} positions] {r['site']}; "
          f"load average {r['load_average']}")
    common.print_comparison(r)


if __name__ == "__main__":
    main()
