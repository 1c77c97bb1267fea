"""ROME/MEMIT key covariance C = E[k kᵀ] (``analysis.covariance.key_second_moment``): tokens/s and FLOP/s.

Reference shape (issue #2): 4 layers, d_model 256, 4 heads, d_ff 1024, vocab 4096; a corpus of 16 batches of
16 × 256 random tokens (65 536 keys per layer), C accumulated for every layer (MEMIT's band; ROME needs one).
Run: ``python benchmarks/covariance.py [--batches 16] [--batch 16] [--seq 256] [--layers all|0,3]``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script, sys.path[0] is benchmarks/: import from the repository root instead
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax
import numpy as np

import ffnkv
from analysis.covariance import key_second_moment
from benchmarks import common


def token_flops(cfg, seq: int, n_layers: int) -> float:
    """Model FLOPs per token: the forward pass without the unembedding (only coefficients are read, so XLA
    drops the logits) plus 2·F² per accumulated layer for the outer product k kᵀ (the einsum forms the full
    F × F sum, both triangles)."""
    return common.forward_flops_per_token(cfg, seq, logits=False) + n_layers * 2 * cfg.width**2


def measure(ffn: str = "relu", batches: int = 16, batch: int = 16, seq: int = 256, layers: str = "all",
            repeats: int = 1) -> dict:
    """Tokens/s of streaming ``batches`` host batches through ``key_second_moment`` (the result fetched once at
    the end). A one-batch call compiles first. FLOPs per token: :func:`token_flops`."""
    cfg = ffnkv.ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, d_ff=1024, ffn=ffn, max_len=seq)
    params = ffnkv.init_params(jax.random.key(0), cfg)
    layer_ids = tuple(range(cfg.n_layers)) if layers == "all" else tuple(int(s) for s in str(layers).split(","))
    rng = np.random.default_rng(0)
    corpus = [(rng.integers(0, cfg.vocab_size, (batch, seq)).astype(np.int32), np.ones((batch, seq), np.float32))
              for _ in range(batches)]
    start = time.perf_counter()
    key_second_moment(params, cfg, layer_ids, corpus[:1])
    first = time.perf_counter() - start
    peaks = [common.matmul_peak_flops()]
    secs = common.timed(lambda: key_second_moment(params, cfg, layer_ids, corpus)[0], repeats=repeats)
    peaks.append(common.matmul_peak_flops())
    C_LFF, n = key_second_moment(params, cfg, layer_ids, corpus[:1])
    if not (np.isfinite(C_LFF).all() and np.allclose(C_LFF, np.swapaxes(C_LFF, 1, 2), atol=1e-5)):
        raise RuntimeError("the key second moment is not a finite symmetric matrix")
    tokens = batches * batch * seq
    return common.row("ROME covariance", "tokens", tokens, secs, tokens * token_flops(cfg, seq, len(layer_ids)), peaks,
                      ffn=ffn, batches=batches, batch=batch, seq=seq, layers=list(layer_ids), first_call_s=first,
                      C_mib=C_LFF.nbytes / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ffn", default="relu", choices=[k for k in ffnkv.FFN_KINDS if k != "none"])
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--layers", default="all", help="'all' or comma-separated layer indices")
    parser.add_argument("--repeats", type=int, default=1)
    r = measure(**vars(parser.parse_args()))
    print(f"device: {r['device']}  ffn={r['ffn']}  {r['batches']} batches of {r['batch']}x{r['seq']}  "
          f"layers={r['layers']}")
    print(f"key second moment: {r['throughput']:,.0f} tokens/s  ({r['seconds']:.2f} s for {r['units']:,} tokens; "
          f"first call incl. compile {r['first_call_s']:.1f} s)")
    print(f"model {r['model_flops_per_s'] / 1e9:.1f} GFLOP/s / matmul peak {r['peak_flops_per_s'] / 1e9:.1f} GFLOP/s "
          f"= {r['ratio_to_peak']:.1%}")
    print(f"C: {r['C_mib']:.0f} MiB;  peak host memory: {r['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
