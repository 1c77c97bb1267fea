"""Forward throughput for the reference shape, and its FLOP/s as a fraction of the measured matmul peak.

Reference shape (issue #2): 4 layers, d_model 256, 4 heads, d_ff 1024, vocab 4096, seq 256, batch 16.
Run: ``python benchmarks/forward.py [--ffn relu] [--batch 16] [--seq 256]``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script, sys.path[0] is benchmarks/: import from the repository root instead
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax

import ffnkv
from benchmarks import common


def measure(ffn: str = "relu", batch: int = 16, seq: int = 256, repeats: int = 5) -> dict:
    """Tokens/s of the jitted forward pass (logits) on a ``batch`` × ``seq`` batch of random tokens.

    Model FLOPs = ``common.forward_flops_per_token(cfg, seq)`` × batch · seq (matmuls only).
    """
    cfg = ffnkv.ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, d_ff=1024, ffn=ffn, max_len=seq)
    params = ffnkv.init_params(jax.random.key(0), cfg)
    tokens = jax.random.randint(jax.random.key(1), (batch, seq), 0, cfg.vocab_size)
    run = jax.jit(lambda p, t: ffnkv.forward(p, t, cfg).logits)
    peaks = [common.matmul_peak_flops()]
    secs = common.seconds(run, params, tokens, repeats=repeats)
    peaks.append(common.matmul_peak_flops())
    n_tokens = batch * seq
    return common.row("forward", "tokens", n_tokens, secs, common.forward_flops_per_token(cfg, seq) * n_tokens, peaks,
                      ffn=ffn, batch=batch, seq=seq)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ffn", default="relu", choices=ffnkv.FFN_KINDS)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=256)
    r = measure(**vars(parser.parse_args()))
    print(f"device: {r['device']}  ffn={r['ffn']}  batch={r['batch']} seq={r['seq']}")
    print(f"forward: {r['throughput']:,.0f} tokens/s  ({r['seconds'] * 1e3:.1f} ms/batch)")
    print(f"achieved {r['model_flops_per_s'] / 1e9:.1f} GFLOP/s / matmul peak {r['peak_flops_per_s'] / 1e9:.1f} "
          f"GFLOP/s = {r['ratio_to_peak']:.1%}")
    print(f"peak host memory: {r['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
