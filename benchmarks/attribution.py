"""Integrated-gradient attribution (knowledge neurons): cached prefix vs full recompute, same run.

Reference shape (issue #15): 4 layers, d_model 256, 4 heads, d_ff 1024, vocab 4096; one 16-token prompt; all
4 layers × m = 20 steps. ``--compare`` also times the reference-code pattern (one jitted call per prompt and
layer, the m scaled activations as one batch).
Run: ``python benchmarks/attribution.py [--prompts 1] [--steps 20] [--rule midpoint] [--compare]``.
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
from analysis import integrated_gradients as IG
from analysis import prompt_prob as PP
from benchmarks import common


def backward_flops_per_token(cfg, seq: int, layer: int) -> float:
    """Matmul FLOPs per token of the gradient of the output with respect to ``layer``'s FFN coefficients.

    Activations only (no weight gradients): the unembedding 2·D·V; every later layer j once more its forward
    (each y = x·W needs dx = dy·Wᵀ) except attention scores, twice (QKᵀ and AV each need two products); and
    ``layer``'s own value matrix 2·D·F (the coefficients sit right before it).
    """
    p, has_ffn = common.flops_parts(cfg, seq), [float(h) for h in cfg.has_ffn_L()]
    later = sum(p["proj"] + 2 * p["scores"] + has_ffn[j] * p["ffn"] for j in range(layer + 1, cfg.n_layers))
    return p["unembed"] + later + has_ffn[layer] * 2 * cfg.d_model * cfg.width


def prompt_flops(cfg, seq: int, steps: int, rule: str) -> float:
    """Model FLOPs of one prompt's attributions: T·Σ_l [K·(f + b_l) + f] + T·f.

    f = ``common.forward_flops_per_token``, b_l = :func:`backward_flops_per_token`; for each of the L layers
    K gradient evaluations (K = m nodes, m + 1 for the trapezoid rule) and one forward for P(α=0); plus one
    forward for P(α=1).
    """
    nodes, f = len(IG.riemann_nodes(steps, rule)[0]), common.forward_flops_per_token(cfg, seq)
    return seq * (sum(nodes * (f + backward_flops_per_token(cfg, seq, l)) + f for l in range(cfg.n_layers)) + f)


def prefix_prompt_flops(cfg, seq: int, steps: int, rule: str) -> float:
    """Model FLOPs of one prompt's attributions over the cached clean prefix: the clean run and its cache (the
    prediction position's logits only), then
    for each layer l, K + 1 rows (the K nodes and α = 0, whose gradient is computed and dropped) of the
    prediction position alone in blocks ≥ l (attending over all T keys), forward and gradient:
    Σ_l (K + 1)·(f_l + b_l) with f_l = ``common.suffix_flops`` and b_l = :func:`backward_flops_per_token`."""
    nodes = len(IG.riemann_nodes(steps, rule)[0])
    per_layer = [common.suffix_flops(cfg, l, 1, seq) for l in range(cfg.n_layers)]
    return common.cache_flops(cfg, seq, logits=1) + sum((nodes + 1) * (f + backward_flops_per_token(cfg, seq, l))
                                              for l, f in enumerate(per_layer))


def _loop_seconds(params, cfg, enc, steps, rule, seq) -> float:
    """The reference-code pattern: one jitted call per (prompt, layer), its m scaled activations as a batch."""
    alphas, weights = (jnp.asarray(a) for a in IG.riemann_nodes(steps, rule))

    @jax.jit
    def layer_call(tokens_T, pos, gold, layer):
        grad = jax.grad(lambda s: PP.gold_prob(params, cfg, tokens_T, pos, gold,
                                              ffnkv.Hooks(ffn_scale=IG.scale_at(layer, pos, s, cfg.n_layers, seq))))
        return weights @ jax.vmap(lambda a: grad(jnp.full((cfg.width,), a)))(alphas)

    def loop():
        items = zip(enc["tokens"], enc["predict_pos"], enc["target"])
        return [layer_call(jnp.asarray(t), p, g, layer) for t, p, g in items for layer in range(cfg.n_layers)]
    return common.seconds(loop, repeats=3)


def measure(ffn: str = "relu", prompts: int = 1, seq: int = 16, steps: int = 20, rule: str = "midpoint",
            batch: int = 2, compare: bool = False, repeats: int = 3) -> dict:
    """Seconds of ``analysis.integrated_gradients.integrated_gradients`` (all layers) on random prompts with the
    cached-prefix method and the full-recompute method, timed interleaved in one process; attributions
    checked equal. FLOPs: :func:`prefix_prompt_flops` vs :func:`prompt_flops`. ``compare`` adds the
    per-(prompt, layer) loop of the reference code."""
    cfg = ffnkv.ModelConfig(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, d_ff=1024, ffn=ffn, max_len=seq)
    params = ffnkv.init_params(jax.random.key(0), cfg)
    rng = np.random.default_rng(0)
    enc = {"tokens": rng.integers(0, cfg.vocab_size, (prompts, seq)).astype(np.int32),
           "predict_pos": np.full(prompts, seq - 1, np.int32),
           "target": rng.integers(0, cfg.vocab_size, prompts).astype(np.int32)}
    run = {m: (lambda m=m: IG.integrated_gradients(params, cfg, enc, steps, rule, batch, recompute=m))
           for m in ("prefix", "full")}
    result, first, diff, secs, peaks = common.prefix_vs_full(run, "attributions", repeats, lambda out: out["attr"])
    flops = {"prefix": prompts * prefix_prompt_flops(cfg, seq, steps, rule),
             "full": prompts * prompt_flops(cfg, seq, steps, rule)}
    extras = {}
    if compare:
        loop_s = _loop_seconds(params, cfg, enc, steps, rule, seq)
        extras = {"loop_seconds": loop_s, "speedup_vs_loop": loop_s / secs["prefix"]}
    return common.row("attribution", "prompts", prompts, secs["prefix"], flops["prefix"], peaks,
                      ffn=ffn, seq=seq, steps=steps, rule=rule, batch=batch, first_call_s=first,
                      full_seconds=secs["full"], full_model_flops=flops["full"], speedup=secs["full"] / secs["prefix"],
                      full_ratio_to_peak=flops["full"] / secs["full"] / max(peaks), max_abs_difference=diff,
                      completeness_relative_error=result["prefix"]["completeness"]["relative_error"],
                      load_average=common.load_average(), **extras)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ffn", default="relu", choices=[k for k in ffnkv.FFN_KINDS if k != "none"])
    parser.add_argument("--prompts", type=int, default=1)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rule", default="midpoint", choices=IG.RULES)
    parser.add_argument("--batch", type=int, default=2, help="prompts in flight (lax.map batch_size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", action="store_true")
    r = measure(**vars(parser.parse_args()))
    print(f"device: {r['device']}  ffn={r['ffn']}  prompts={r['units']} seq={r['seq']} steps={r['steps']} "
          f"load average {r['load_average']}")
    common.print_comparison(r)
    print(f"completeness relative error: {r['completeness_relative_error']:.2e}")
    if "loop_seconds" in r:
        print(f"per-(prompt, layer) calls: {r['loop_seconds']:.3f} s ({r['speedup_vs_loop']:.1f}x the cached "
              "prefix's time)")


if __name__ == "__main__":
    main()
