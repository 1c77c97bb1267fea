"""Forward throughput for the reference shape, and its FLOP/s as a fraction of the measured matmul peak.

Reference shape (issue #2): 4 layers, d_model 256, 4 heads, d_ff 1024, vocab 4096, seq 256, batch 16.
Run: ``python benchmarks/forward.py [--ffn relu] [--batch 16] [--seq 256]``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import ffnkv  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ffn", default="relu", choices=ffnkv.FFN_KINDS)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=256)
    args = parser.parse_args()
    cfg = ffnkv.ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, d_ff=1024, ffn=args.ffn,
                            max_len=args.seq)
    params = ffnkv.init_params(jax.random.key(0), cfg)
    tokens = jax.random.randint(jax.random.key(1), (args.batch, args.seq), 0, cfg.vocab_size)
    run = jax.jit(lambda p, t: ffnkv.forward(p, t, cfg).logits)
    secs = common.seconds(run, params, tokens)
    n_tokens = args.batch * args.seq
    achieved = common.forward_flops_per_token(cfg, args.seq) * n_tokens / secs
    peak = common.matmul_peak_flops()
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}  ffn={args.ffn}  batch={args.batch} seq={args.seq}")
    print(f"forward: {n_tokens / secs:,.0f} tokens/s  ({secs * 1e3:.1f} ms/batch)")
    print(f"achieved {achieved / 1e9:.1f} GFLOP/s / matmul peak {peak / 1e9:.1f} GFLOP/s = {achieved / peak:.1%}")
    print(f"peak host memory: {common.peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
