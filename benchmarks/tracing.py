"""Causal tracing: cached corrupted prefixes vs full recompute, same run.

Reference shape (issue #15): 4 layers, d_model 256, 4 heads, d_ff 1024, vocab 4096; one 16-token prompt with
a 4-token subject; S = 10 noise samples; grid [16 tokens × 4 layers] of restored states (``--kinds`` adds
mlp, attn and the severed kinds).
``--compare`` also times the reference-code pattern (ROME's loop): one jitted call per (kind, token, layer) cell of
the same kinds with the S samples as its batch, and reports the ratio.
Run: ``python benchmarks/tracing.py [--samples 10] [--window 10] [--facts 1] [--compare]``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script, sys.path[0] is benchmarks/: import from the repository root instead
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax
import jax.numpy as jnp
import numpy as np

import ffnkv
from analysis import prompt_prob as PP
from analysis import tracing as TR
from benchmarks import common
from ffnkv.prefix import suffix_groups


def grid_flops(cfg, seq: int, samples: int) -> float:
    """Model FLOPs of one fact's full grid: T·f·(1 + S + C·T·L·S), f = forward FLOPs per token.

    One clean forward, S corrupted forwards, and S forwards for each of the C·T·L cells (C = 5 kinds); the
    patching itself is elementwise and not counted.
    """
    cells = len(TR.KINDS) * seq * cfg.n_layers
    return seq * common.forward_flops_per_token(cfg, seq) * (1 + samples + cells * samples)


def _loop_seconds(params, cfg, enc, samples, window, seq, kinds) -> float:
    """The reference-code pattern (ROME's ``trace_with_patch`` loop) on fact 0: one jitted call per (kind, token,
    layer) cell of ``kinds``, each a whole corrupted forward per sample, the S samples batched."""
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
            hooks = TR.cell_hooks(kind, t, layer, z, clean, acts, cfg, window, seq)
            return PP.gold_prob(params, cfg, tokens_T, pos, gold, hooks)
        return jax.vmap(one)(noise_STD, corrupt).mean()

    ids = [TR.KINDS.index(k) for k in kinds]

    def loop():
        return [cell(k, t, layer) for k in ids for t in range(seq) for layer in range(cfg.n_layers)]
    return common.seconds(loop, repeats=3)


def prefix_grid_flops(cfg, seq: int, samples: int, kinds=TR.KINDS, window: int = 10, buckets: int = 8) -> float:
    """Model FLOPs of one fact's grid over cached prefixes: the clean and S corrupted runs with caches, and per
    cell and sample a forward of its suffix (positions ≥ t rounded to the bucket, blocks ≥ the first it
    changes, all T keys; the last block at the prediction position only) with one position's logits."""
    length = {t: n for n, ts in suffix_groups(seq, cfg.causal, buckets).items() for t in ts}
    cells = sum(common.suffix_flops(cfg, TR.first_layer(TR.KINDS.index(k), l, window), length[t], seq, query=True)
                for k in kinds for t in range(seq) for l in range(cfg.n_layers))
    return (1 + samples) * common.cache_flops(cfg, seq) + samples * cells


def measure(ffn: str = "relu", seq: int = 16, facts: int = 1, samples: int = 10, window: int = 10,
            cell_batch: int | None = None, kinds: str = "resid", compare: bool = False, repeats: int = 3) -> dict:
    """Seconds of ``analysis.tracing.causal_trace`` for the [T × L] grid of ``kinds`` (comma-separated) with S
    samples, cached-prefix vs full recompute interleaved in one process, traces checked equal. FLOPs:
    :func:`prefix_grid_flops` vs :func:`grid_flops`. ``compare`` adds the per-cell loop (all 5 kinds)."""
    cfg = ffnkv.ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, d_ff=1024, ffn=ffn, max_len=seq)
    params = ffnkv.init_params(jax.random.key(0), cfg)
    rng = np.random.default_rng(0)
    enc = {"tokens": rng.integers(0, cfg.vocab_size, (facts, seq)).astype(np.int32),
           "predict_pos": np.full(facts, seq - 1, np.int32),
           "target": rng.integers(0, cfg.vocab_size, facts).astype(np.int32),
           "subject_start": np.full(facts, min(2, seq - 2), np.int32),
           "subject_end": np.full(facts, min(6, seq - 1), np.int32)}
    window, kind_names = min(window, cfg.n_layers), tuple(kinds.split(","))
    run = {m: (lambda m=m: TR.causal_trace(params, cfg, enc, None, samples, window, kind_names, cell_batch=cell_batch,
                                           recompute=m)["restored"]) for m in ("prefix", "full")}
    result, first, diff, secs, peaks = common.prefix_vs_full(run, "traces", repeats)
    cells = len(kind_names) * seq * cfg.n_layers
    flops = {"prefix": facts * prefix_grid_flops(cfg, seq, samples, kind_names, window),
             "full": facts * seq * common.forward_flops_per_token(cfg, seq) * (1 + samples + cells * samples)}
    extras = {}
    if compare:
        loop_s = _loop_seconds(params, cfg, enc, samples, window, seq, kind_names)
        loop_flops = seq * common.forward_flops_per_token(cfg, seq) * cells * samples
        extras = {"loop_seconds_per_grid": loop_s, "speedup_vs_loop": loop_s * facts / secs["prefix"],
                  "loop_model_flops": loop_flops, "loop_ratio_to_peak": loop_flops / loop_s / max(peaks)}
    return common.row("causal tracing", "grid cells", facts * cells, secs["prefix"], flops["prefix"], peaks,
                      ffn=ffn, seq=seq, facts=facts, samples=samples, window=window, kinds=list(kind_names),
                      cell_batch=cell_batch, cells_per_grid=cells, first_call_s=first, full_seconds=secs["full"],
                      full_model_flops=flops["full"], speedup=secs["full"] / secs["prefix"],
                      full_ratio_to_peak=flops["full"] / secs["full"] / max(peaks), max_abs_difference=diff,
                      load_average=common.load_average(), **extras)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ffn", default="relu", choices=ffnkv.FFN_KINDS)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--facts", type=int, default=1)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--cell-batch", type=int, default=None, help="cells in flight (default: the memory plan's)")
    parser.add_argument("--kinds", default="resid", help=f"comma-separated subset of {','.join(TR.KINDS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", action="store_true")
    r = measure(**vars(parser.parse_args()))
    print(f"device: {r['device']}  ffn={r['ffn']}  grid {r['kinds']} x {r['seq']} tokens x 4 layers, "
          f"{r['samples']} samples; load average {r['load_average']}")
    common.print_comparison(r)
    if "loop_seconds_per_grid" in r:
        print(f"reference-code loop (one jitted call per cell, same grid): {r['loop_seconds_per_grid']:.3f} "
              "s per fact, "
              f"{r['loop_model_flops'] / 1e9:.2f} GFLOP, {r['loop_ratio_to_peak']:.1%} of peak; cached prefix "
              f"{r['speedup_vs_loop']:.1f}x faster")


if __name__ == "__main__":
    main()
