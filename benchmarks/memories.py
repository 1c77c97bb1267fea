"""Trigger-example search (Geva et al. 2021) over ≥ 1M tokens: time vs a plain forward pass, and peak memory.

Both passes stream the same token memmap chunk by chunk through one jitted program (the forward pass
accumulates a checksum of its logits so nothing is dead code). Memory is shown bounded by running the
search on a quarter of the corpus first: the peak after the whole corpus should not grow.
Run: ``python benchmarks/memories.py [--tokens 1048576] [--batch 32] [--seq 128] [--k 25]``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

import ffnkv  # noqa: E402
from analysis.memories import trigger_search  # noqa: E402
from analysis.stream import stream  # noqa: E402


def device_peak_mib() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2**20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--k", type=int, default=25)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--d-ff", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096)
    args = parser.parse_args()
    cfg = ffnkv.ModelConfig(vocab_size=args.vocab, d_model=args.d_model, n_layers=args.layers, n_heads=4,
                            d_ff=args.d_ff, max_len=args.seq)
    params = ffnkv.init_params(jax.random.key(0), cfg)
    rows = args.tokens // args.seq
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokens.bin"
        np.random.default_rng(0).integers(0, args.vocab, rows * args.seq, dtype=np.uint16).tofile(path)
        corpus = np.memmap(path, np.uint16, "r").reshape(rows, args.seq)

        @jax.jit
        def fwd_step(total, params, tokens_BT, mask_BT, offset):
            return total + ffnkv.forward(params, tokens_BT, cfg).logits.max(-1).sum()

        def plain(tokens):
            return stream(lambda s, t, m, o: fwd_step(s, params, t, m, o), jnp.zeros(()), tokens, None, args.batch)

        warm = corpus[: 2 * args.batch]
        plain(warm), trigger_search(params, cfg, warm, None, args.k, args.batch)  # compile both
        t0 = time.perf_counter()
        plain(corpus)
        t_forward = time.perf_counter() - t0
        trigger_search(params, cfg, corpus[: rows // 4], None, args.k, args.batch)
        rss_quarter, dev_quarter = common.peak_rss_mib(), device_peak_mib()
        t0 = time.perf_counter()
        out = trigger_search(params, cfg, corpus, None, args.k, args.batch)
        t_search = time.perf_counter() - t0
        assert np.isfinite(out["coef"]).all()
    n = rows * args.seq
    state_mib = out["coef"].nbytes * 2 / 2**20
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}  model L={cfg.n_layers} D={cfg.d_model} "
          f"F={cfg.d_ff} V={cfg.vocab_size}  chunk {args.batch}x{args.seq}  k={args.k}")
    print(f"tokens: {n:,}")
    print(f"plain forward : {t_forward:8.2f} s  ({n / t_forward:,.0f} tokens/s)")
    print(f"trigger search: {t_search:8.2f} s  ({n / t_search:,.0f} tokens/s)")
    print(f"ratio search / forward: {t_search / t_forward:.2f}x (target <= 1.5x)")
    print(f"running top-k state: {state_mib:.1f} MiB (L x F x k coefficients + indices)")
    print(f"peak host memory: after {n // 4:,} tokens {rss_quarter:.0f} MiB, after {n:,} tokens {common.peak_rss_mib():.0f} MiB")
    if dev_quarter is not None:
        print(f"peak device memory: after {n // 4:,} tokens {dev_quarter:.0f} MiB, after {n:,} tokens {device_peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
