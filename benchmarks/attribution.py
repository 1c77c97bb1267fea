"""Integrated-gradient attribution (knowledge neurons) for the reference shape: seconds per prompt.

Reference shape (issue #2): 4 layers, d_model 256, 4 heads, d_ff 1024, vocab 4096; 16-token prompts; all
layers, m = 20 steps, every α and layer of a prompt in one vmapped program, ``--batch`` prompts in flight.
``--compare`` also times the reference-code pattern (one jitted call per prompt and layer, the m scaled
activations as one batch) on the same prompts.
Run: ``python benchmarks/attribution.py [--prompts 8] [--steps 20] [--rule midpoint] [--compare]``.
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
from analysis import attribution as A  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ffn", default="relu", choices=[k for k in ffnkv.FFN_KINDS if k != "none"])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rule", default="midpoint", choices=A.RULES)
    parser.add_argument("--batch", type=int, default=8, help="prompts in flight (lax.map batch_size)")
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    cfg = ffnkv.ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, d_ff=1024, ffn=args.ffn,
                            max_len=args.seq)
    params = ffnkv.init_params(jax.random.key(0), cfg)
    rng = np.random.default_rng(0)
    enc = {"tokens": rng.integers(0, cfg.vocab_size, (args.prompts, args.seq)).astype(np.int32),
           "predict_pos": np.full(args.prompts, args.seq - 1, np.int32),
           "target": rng.integers(0, cfg.vocab_size, args.prompts).astype(np.int32)}
    start = time.perf_counter()
    result = A.integrated_gradients(params, cfg, enc, args.steps, args.rule, args.batch)
    first = time.perf_counter() - start
    secs = common.seconds(lambda: A.integrated_gradients(params, cfg, enc, args.steps, args.rule, args.batch)["attr"],
                          repeats=3)
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}  ffn={args.ffn}  prompts={args.prompts} "
          f"seq={args.seq} steps={args.steps} rule={args.rule}")
    print(f"integrated gradients, all {cfg.n_layers} layers: {secs / args.prompts * 1e3:.1f} ms/prompt "
          f"({secs:.2f} s for {args.prompts} prompts; first call incl. compile {first:.1f} s)")
    print(f"completeness: {result['completeness']}")
    if args.compare:
        alphas, weights = (jnp.asarray(a) for a in A.riemann_nodes(args.steps, args.rule))

        @jax.jit
        def layer_call(tokens_T, pos, gold, layer):
            grad = jax.grad(lambda s: A.gold_prob(params, cfg, tokens_T, pos, gold,
                                                  ffnkv.Hooks(ffn_scale=A._scale_at(layer, pos, s, cfg.n_layers, args.seq))))
            return weights @ jax.vmap(lambda a: grad(jnp.full((cfg.width,), a)))(alphas)

        def loop():
            return [layer_call(jnp.asarray(t), p, g, layer) for t, p, g in zip(enc["tokens"], enc["predict_pos"], enc["target"])
                    for layer in range(cfg.n_layers)]
        loop_secs = common.seconds(loop, repeats=3)
        print(f"per-(prompt, layer) calls: {loop_secs / args.prompts * 1e3:.1f} ms/prompt "
              f"(batched program is {loop_secs / secs:.2f}x faster)")
    print(f"peak host memory: {common.peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
