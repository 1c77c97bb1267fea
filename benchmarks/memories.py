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

if __name__ == "__main__":  # run as a script, sys.path[0] is benchmarks/: import from the repository root instead
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax
import jax.numpy as jnp
import numpy as np

import ffnkv
from analysis.memories import trigger_search
from analysis.stream import stream
from benchmarks import common


def measure(tokens: int = 2**20, batch: int = 32, seq: int = 128, k: int = 25, d_model: int = 128, d_ff: int = 512,
            layers: int = 4, vocab: int = 4096) -> dict:
    """Tokens/s of ``analysis.memories.trigger_search`` over a ``tokens``-token memmap, and of a plain forward.

    Model FLOPs = ``common.forward_flops_per_token(cfg, seq, logits=False)`` × tokens: the forward pass up to
    the coefficients (the search never forms logits; its running top-k merge is selection, not FLOPs). The
    plain forward it is compared with does form the logits (``forward_model_flops_per_s`` counts them).
    """
    cfg = ffnkv.ModelConfig(vocab_size=vocab, d_model=d_model, n_layers=layers, n_heads=4, d_ff=d_ff, max_len=seq)
    params = ffnkv.init_params(jax.random.key(0), cfg)
    rows = tokens // seq
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokens.bin"
        np.random.default_rng(0).integers(0, vocab, rows * seq, dtype=np.uint16).tofile(path)
        corpus = np.memmap(path, np.uint16, "r").reshape(rows, seq)

        @jax.jit
        def fwd_step(total, params, tokens_BT, mask_BT, offset):
            return total + ffnkv.forward(params, tokens_BT, cfg).logits.max(-1).sum()

        def plain(tokens_NT):
            return stream(lambda s, t, m, o: fwd_step(s, params, t, m, o), jnp.zeros(()), tokens_NT, None, batch)

        warm = corpus[: 2 * batch]
        plain(warm), trigger_search(params, cfg, warm, None, k, batch)  # compile both
        peaks = [common.matmul_peak_flops()]
        t_forward = common.timed(plain, corpus)
        trigger_search(params, cfg, corpus[: rows // 4], None, k, batch)
        rss_quarter, dev_quarter = common.peak_rss_mib(), common.device_peak_mib()
        t0 = time.perf_counter()
        out = trigger_search(params, cfg, corpus, None, k, batch)  # returns host arrays: the sync is inside
        t_search = time.perf_counter() - t0
        peaks.append(common.matmul_peak_flops())
        if not np.isfinite(out["coef"]).all():
            raise RuntimeError("trigger search returned non-finite coefficients")
    n = rows * seq
    flops = common.forward_flops_per_token(cfg, seq, logits=False) * n
    return common.row("trigger search", "tokens", n, t_search, flops, peaks,
                      d_model=d_model, d_ff=d_ff, layers=layers, vocab=vocab, batch=batch, seq=seq, k=k,
                      forward_seconds=t_forward, forward_tokens_per_s=n / t_forward,
                      forward_model_flops_per_s=common.forward_flops_per_token(cfg, seq) * n / t_forward,
                      search_over_forward=t_search / t_forward, state_mib=out["coef"].nbytes * 2 / 2**20,
                      quarter_tokens=(rows // 4) * seq, peak_rss_mib_quarter=rss_quarter,
                      device_peak_mib_quarter=dev_quarter)


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
    r = measure(**vars(parser.parse_args()))
    n, q = r["units"], r["quarter_tokens"]
    print(f"device: {r['device']}  model L={r['layers']} D={r['d_model']} F={r['d_ff']} V={r['vocab']}  "
          f"chunk {r['batch']}x{r['seq']}  k={r['k']}")
    print(f"tokens: {n:,}")
    print(f"plain forward : {r['forward_seconds']:8.2f} s  ({r['forward_tokens_per_s']:,.0f} tokens/s)")
    print(f"trigger search: {r['seconds']:8.2f} s  ({r['throughput']:,.0f} tokens/s)")
    print(f"ratio search / forward: {r['search_over_forward']:.2f}x (target <= 1.5x)")
    print(f"search model FLOP/s {r['model_flops_per_s'] / 1e9:.1f} G / matmul peak {r['peak_flops_per_s'] / 1e9:.1f} G "
          f"= {r['ratio_to_peak']:.1%}")
    print(f"running top-k state: {r['state_mib']:.1f} MiB (L x F x k coefficients + indices)")
    print(f"peak host memory: after {q:,} tokens {r['peak_rss_mib_quarter']:.0f} MiB, after {n:,} tokens "
          f"{r['peak_rss_mib']:.0f} MiB")
    if r["device_peak_mib"] is not None:
        print(f"peak device memory: after {q:,} tokens {r['device_peak_mib_quarter']:.0f} MiB, after {n:,} tokens "
              f"{r['device_peak_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
