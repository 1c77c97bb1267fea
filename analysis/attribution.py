"""Knowledge neurons (Dai et al. 2022): integrated gradients of p(gold) over the FFN coefficients.

For prompt x with gold token y, layer l and neuron i, Dai et al. (2022), eq. 3–4 attribute

    Attr(w_i^l) = w̄_i^l ∫_0^1 ∂P_x(α w̄^l) / ∂w_i^l dα,

where w̄^l are the layer's coefficients at the prediction position and P_x(α w̄^l) is p(y | x) with the whole
coefficient vector of layer l at that position scaled by α (every other activation recomputed as usual).
Differentiating with respect to the scale ``s = α`` (a ``Hooks.ffn_scale`` row) gives
``∂P/∂s_i = w̄_i ∂P/∂w_i`` directly, so the attribution is ``∫ ∂P/∂s_i(α) dα``, approximated by a Riemann
sum over ``steps`` nodes (:func:`riemann_nodes`). Completeness (Sundararajan et al. 2017, prop. 1): per
prompt and layer, ``Σ_i Attr_i = P(α=1) − P(α=0)`` up to the quadrature error, which every run reports.

``path="joint"`` instead integrates along one straight path in the space of *all* layers' coefficients at the
prediction position (Sundararajan et al. 2017, eq. 1, with the input x = (w^1, …, w^L) and a zero baseline):
every layer's coefficient vector there is patched to α·w̄^l at once, so downstream layers do not recompute
them. One path instead of L costs L times less, and completeness then holds for the sum over all layers,
``Σ_{l,i} Attr = P(α=1) − P(α=0)``. The pretrained-model study (SmolLM2) uses it.

All layers, all α and all prompts are one jitted program whose size does not grow with depth: with the cached
prefix, one sweep over (prompt, block of α nodes) items, each running every layer's rows at once
(``ffnkv.prefix.forward_entering``); otherwise a sweep over prompts (their clean contexts), then one sweep over
(prompt, layer, block of α nodes) items with the layer traced; the block's α ``vmap``-ped, all split over the
"data" axis of ``mesh`` (ffnkv.sharding). Only the prediction position's coefficients are scaled, so positions
before it and layers below l keep their clean values: ``recompute="prefix"`` (default) caches the clean run
once per prompt and recomputes only the prediction position in layers ≥ l (ffnkv.prefix; bidirectional models
recompute every position, still only layers ≥ l); ``recompute="full"`` reruns the whole forward for every α, as the reference
code does (same numbers, kept as the benchmark's baseline). Selection (§3.2) and the suppression /
amplification experiment (§4.1) follow below; they work on any encoded prompts (real-model prompts too:
``tokens`` right-padded, ``predict_pos`` = length − 1).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ffnkv import sharding
from ffnkv.errors import FfnkvError
from ffnkv.hooks import Hooks
from ffnkv.model import forward
from ffnkv.prefix import forward_entering, forward_from, logits_at, prefix_cache, suffix, take

RULES = ("left", "right", "midpoint", "trapezoid")
PATHS = ("layer", "joint")
RECOMPUTE = ("prefix", "full")


def riemann_nodes(steps: int, rule: str = "midpoint") -> tuple[np.ndarray, np.ndarray]:
    """Nodes α_k and weights w_k with ``∫_0^1 g ≈ Σ_k w_k g(α_k)``.

    ``right`` is Dai et al.'s eq. 5 (α = k/m, k = 1…m); ``left`` is α = (k−1)/m; ``midpoint`` α = (k − ½)/m;
    ``trapezoid`` uses the m + 1 nodes k/m, k = 0…m, with half weight at the ends.
    """
    if rule not in RULES or steps < 1:
        raise FfnkvError(f"integration rule {rule!r} with {steps} steps is not allowed; use steps ≥ 1 and one of {RULES}.")
    k = np.arange(steps, dtype=np.float32)
    if rule == "trapezoid":
        alphas = np.arange(steps + 1, dtype=np.float32) / steps
        weights = np.full(steps + 1, 1.0 / steps, np.float32)
        weights[[0, -1]] /= 2
        return alphas, weights
    offset = {"left": 0.0, "right": 1.0, "midpoint": 0.5}[rule]
    return (k + offset) / steps, np.full(steps, 1.0 / steps, np.float32)


def prob_of(logits_V, gold):
    """softmax(logits)[gold] as exp(logit_gold − logsumexp): one pass over the vocabulary, forward and back."""
    return jnp.exp(jnp.take(logits_V, gold, axis=-1) - jax.nn.logsumexp(logits_V, axis=-1))


def gold_prob(params, cfg, tokens_T, pos, gold, hooks: Hooks, mask_T=None):
    """p(gold | prompt) at position ``pos`` of one prompt under ``hooks``."""
    mask_BT = None if mask_T is None else mask_T[None]
    logits_V = forward(params, tokens_T[None], cfg, hooks, mask_BT).logits[0, pos]
    return prob_of(logits_V, gold)


def _scale_at(layer, pos, s_F, n_layers, seq_len):
    """``ffn_scale`` rows ``[L, T, F]``: ``s_F`` at (layer, pos), 1 elsewhere."""
    hit_LT = (jnp.arange(n_layers)[:, None] == layer) & (jnp.arange(seq_len)[None, :] == pos)
    return jnp.where(hit_LT[:, :, None], s_F, 1.0)


def _prompt_context(params, cfg, recompute, prompt):
    """Per prompt, once: P(α=1), the clean coefficients at the prediction position ``m_LF`` and (prefix) the
    clean run's cache."""
    tokens_T, pos, gold, mask_T = prompt
    if recompute == "prefix":  # logits of the prediction position only (the others' unembedding is dropped)
        out, cache = prefix_cache(params, tokens_T[None], cfg, None, mask_T[None])
        logits_V = logits_at(params, cache.resid[-1], cfg, pos)[0]
    else:
        out, cache = forward(params, tokens_T[None], cfg, None, mask_T[None]), None
        logits_V = out.logits[0, pos]
    return {"cache": cache, "p_one": prob_of(logits_V, gold), "m_LF": out.acts.ffn[:, 0, pos]}


def _prob_fn(params, cfg, recompute, ctx, prompt):
    """``prob(first_layer, hooks_fn)``: p(gold) under hooks ``hooks_fn(S, at)`` on S positions (``at`` = the
    prediction position among them). ``"full"``: the whole forward (S = T). ``"prefix"``: over the cached
    clean prefix, the prediction position only (every position for bidirectional models) in layers ≥
    ``first_layer``."""
    tokens_T, pos, gold, mask_T = prompt
    T = tokens_T.shape[0]
    if recompute == "full":
        return lambda first_layer, hooks_fn: gold_prob(params, cfg, tokens_T, pos, gold, hooks_fn(T, pos), mask_T)
    cache = ctx["cache"]
    start, S, at = (pos, 1, 0) if cfg.causal else (0, T, pos)

    def prob(first_layer, hooks_fn):
        x_BSD = forward_from(params, cache, cfg, first_layer, start, suffix(cache, first_layer, start, S),
                             hooks_fn(S, at))
        return prob_of(logits_at(params, x_BSD, cfg, at)[0], gold)

    return prob


def _layer_ig(params, cfg, recompute, alphas_K, weights_K, ctx, prompt, layer):
    """Dai et al. eq. 3–4 for one layer over the nodes ``alphas_K``: ``(Σ_k w_k ∂P/∂s(α_k) [F], P(α=0))``."""
    L, F = cfg.n_layers, cfg.width
    prob_at = _prob_fn(params, cfg, recompute, ctx, prompt)

    def prob(s_F):
        def hooks(S, at):
            hit_LS = (jnp.arange(L)[:, None] == layer) & (jnp.arange(S)[None, :] == at)
            return Hooks(ffn_scale=jnp.where(hit_LS[:, :, None], s_F, 1.0))
        return prob_at(layer, hooks)

    grads_KF = jax.vmap(lambda a: jax.grad(prob)(jnp.full((F,), a, jnp.float32)))(alphas_K)
    return weights_K @ grads_KF, prob(jnp.zeros((F,), jnp.float32))


def _joint_ig(params, cfg, recompute, alphas_K, weights_K, ctx, prompt, layer):
    """``path="joint"``: every layer's coefficients at the prediction position patched to ``s ⊙ w̄`` (one path)."""
    m_LF = ctx["m_LF"]
    prob_at = _prob_fn(params, cfg, recompute, ctx, prompt)

    def prob(s_LF):
        def hooks(S, at):
            at_LS = jnp.broadcast_to(jnp.arange(S) == at, (cfg.n_layers, S))
            return Hooks(ffn_patch_mask=at_LS[:, None, :, None], ffn_patch_value=(s_LF * m_LF)[:, None, None, :])
        return prob_at(0, hooks)

    grads_KLF = jax.vmap(lambda a: jax.grad(prob)(jnp.full_like(m_LF, a)))(alphas_K)
    return jnp.tensordot(weights_K, grads_KLF, 1), prob(jnp.zeros_like(m_LF))


def _entering_ig(params, cfg, alphas_K, weights_K, ctx, prompt):
    """Dai et al. eq. 3–4 for every layer at once over the cached prefix (``ffnkv.prefix.forward_entering``): the K nodes
    of every layer plus an α = 0 row each, one program. ``(attr [L, F], P(α=0) [L])``."""
    tokens_T, pos, gold, _ = prompt
    cache, T, L, F = ctx["cache"], tokens_T.shape[0], cfg.n_layers, cfg.width
    start, S, at = (pos, 1, 0) if cfg.causal else (0, T, pos)
    alphas_R = jnp.concatenate([alphas_K, jnp.zeros((1,), alphas_K.dtype)])
    x_LSD = jax.vmap(lambda l: suffix(cache, l, start, S)[0])(jnp.arange(L))
    x_LRSD = jnp.broadcast_to(x_LSD[:, None], (L, alphas_R.shape[0]) + x_LSD.shape[1:])

    def probs(scale_LRF):
        at_S = (jnp.arange(S) == at)[None, None, :, None]
        out_LRSD = forward_entering(params, cache, cfg, start, x_LRSD, jnp.where(at_S, scale_LRF[:, :, None], 1.0))
        logits_XV = logits_at(params, out_LRSD.reshape((-1,) + out_LRSD.shape[2:]), cfg, at)
        p_LR = prob_of(logits_XV, gold).reshape(L, -1)
        return p_LR.sum(), p_LR

    scale_LRF = jnp.broadcast_to(alphas_R[None, :, None], (L, alphas_R.shape[0], F)).astype(jnp.float32)
    grads_LRF, p_LR = jax.grad(probs, has_aux=True)(scale_LRF)
    return jnp.einsum("k,lkf->lf", weights_K, grads_LRF[:, :-1]), p_LR[:, -1]


def node_blocks(steps: int, rule: str, blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`riemann_nodes` cut into ``blocks`` equal rows ``[blocks, K']``, padded with weight-0 nodes."""
    alphas, weights = riemann_nodes(steps, rule)
    pad = -len(alphas) % blocks
    alphas = np.concatenate([alphas, np.full(pad, 0.5, np.float32)])
    weights = np.concatenate([weights, np.zeros(pad, np.float32)])
    return alphas.reshape(blocks, -1), weights.reshape(blocks, -1)


def ig_impl(params, tokens_NT, pos_N, gold_N, mask_NT, cfg, steps, rule, batch_size, path="layer",
            recompute="prefix", mesh=None, alpha_blocks=1):
    """Un-jitted core of :func:`integrated_gradients` (tests wrap it in ``chex.assert_max_traces``).

    Layer paths over the cached prefix: one sweep over (prompt n, block b of α nodes) items, each the prompt's
    clean cache and every layer's rows entering at their block (:func:`_entering_ig`). Otherwise a sweep over
    prompts (P(α=1), coefficients), then one over (prompt n, path, block b) items (the layer traced), each the
    weighted gradient sum of its block. ``batch_size`` items in flight, split over the "data" axis of ``mesh``."""
    alphas_BK, weights_BK = (jnp.asarray(a) for a in node_blocks(steps, rule, alpha_blocks))
    prompts = (tokens_NT, pos_N, gold_N, mask_NT)
    N, Bk = tokens_NT.shape[0], alpha_blocks
    n_X, b_X = (jnp.asarray(a.reshape(-1), jnp.int32) for a in np.indices((N, Bk)))
    if path == "layer" and recompute == "prefix":  # one item: the prompt's clean cache, then every layer's rows
        def item(p, prompts, x):
            n, b = x
            prompt = take(prompts, n)
            ctx = _prompt_context(p, cfg, recompute, prompt)
            attr_LF, p_zero_L = _entering_ig(p, cfg, alphas_BK[b], weights_BK[b], ctx, prompt)
            return attr_LF, p_zero_L, ctx["p_one"]

        attr_XLF, p_zero_XL, p_one_X = sharding.sweep(item, (n_X, b_X), mesh, batch_size, (params, prompts))
        first = lambda a: a.reshape((N, Bk) + a.shape[1:])[:, 0]  # noqa: E731
        return attr_XLF.reshape((N, Bk) + attr_XLF.shape[1:]).sum(1), first(p_zero_XL), first(p_one_X)
    ctx = sharding.sweep(lambda p, item: _prompt_context(p, cfg, recompute, item), prompts, mesh, batch_size, (params,))
    one = _layer_ig if path == "layer" else _joint_ig
    P = cfg.n_layers if path == "layer" else 1  # one sweep over (prompt, path, α block) items, the layer traced
    n_X, l_X, b_X = (jnp.asarray(a.reshape(-1), jnp.int32) for a in np.indices((N, P, Bk)))

    def item(p, ctx, prompts, x):
        n, layer, b = x
        return one(p, cfg, recompute, alphas_BK[b], weights_BK[b], take(ctx, n), take(prompts, n), layer)

    attr_X, p_zero_X = sharding.sweep(item, (n_X, l_X, b_X), mesh, batch_size, (params, ctx, prompts))
    attr_NLF = attr_X.reshape((N, P, Bk) + attr_X.shape[1:]).sum(2).reshape(N, cfg.n_layers, cfg.width)
    return attr_NLF, p_zero_X.reshape(N, P, Bk)[:, :, 0], ctx["p_one"]


_ig_all = jax.jit(ig_impl, static_argnames=("cfg", "steps", "rule", "batch_size", "path", "recompute", "mesh",
                                            "alpha_blocks"))


def _mask(enc, cfg):
    tokens = np.asarray(enc["tokens"])
    if cfg.causal or "lengths" not in enc:
        return np.ones(tokens.shape, bool)
    return np.arange(tokens.shape[1])[None, :] < np.asarray(enc["lengths"])[:, None]


def check_prompts(enc, cfg, width_needed=True) -> None:
    if width_needed and cfg.width == 0:
        raise FfnkvError("the model has no FFN (ffn='none'), so it has no FFN neurons to attribute.")
    tokens, pos = np.asarray(enc["tokens"]), np.asarray(enc["predict_pos"])
    if tokens.ndim != 2 or pos.shape != tokens.shape[:1] or np.asarray(enc["target"]).shape != pos.shape:
        raise FfnkvError("encoded prompts need tokens [N, T] with predict_pos [N] and target [N]; check the arrays.")
    if (pos < 0).any() or (pos >= tokens.shape[1]).any():
        raise FfnkvError("predict_pos must lie inside each prompt; re-encode the prompts.")


def integrated_gradients(params, cfg, enc, steps: int = 20, rule: str = "midpoint", batch_size: int | None = None,
                         path: str = "layer", recompute: str = "prefix", mesh=None, alpha_blocks: int = 1,
                         memory_gb: float | None = None, on_plan=None) -> dict:
    """Attributions of every (layer, neuron) for every prompt, with the completeness check.

    ``enc``: ``tokens`` [N, T], ``predict_pos`` [N] (the position whose logits predict the gold token),
    ``target`` [N] (gold token ids), optionally ``lengths`` [N] (padding mask for bidirectional models).
    ``path``: ``"layer"`` (Dai et al.'s eq. 3, one path per layer) or ``"joint"`` (one path over all layers;
    module docstring). ``recompute``: ``"prefix"`` or ``"full"`` (module docstring). ``mesh``: a
    ffnkv.sharding mesh whose "data" axis splits the prompts (parameters FSDP-split on "model" when it has
    several devices); ``None`` runs on the default device. ``alpha_blocks``: the α nodes of each path are cut
    into this many blocks, each its own sweep item (more items to split over the mesh; same numbers). Items in
    flight: the memory plan's chunk (analysis.plan.attribution_plan within ``memory_gb``, default half the
    available memory; at most ``batch_size`` when given), shown to ``on_plan``. Returns numpy arrays ``attr`` [N, L, F], ``prob``
    [N] (= P(α=1)), ``prob_zero`` [N, P] (= P(α=0) per path: P = L, or 1 for the joint path) and
    ``completeness`` (see :func:`completeness`).
    """
    check_prompts(enc, cfg)
    if path not in PATHS or recompute not in RECOMPUTE:
        raise FfnkvError(f"integration path {path!r} / recompute {recompute!r} is not allowed; use one of {PATHS} / {RECOMPUTE}.")
    arrays = sharding.put_inputs((enc["tokens"], enc["predict_pos"], enc["target"], _mask(enc, cfg)), mesh)
    if alpha_blocks < 1:
        raise FfnkvError(f"alpha_blocks={alpha_blocks} is not allowed; use a positive integer.")
    from analysis.plan import attribution_plan

    p = attribution_plan(cfg, len(enc["tokens"]), np.asarray(enc["tokens"]).shape[1], steps, int(alpha_blocks), path,
                         recompute, memory_gb, batch_size)
    if on_plan is not None:
        on_plan(p)
    attr, p_zero, prob = _ig_all(sharding.put_params(params, mesh), *arrays, cfg, steps, rule, p.chunk, path,
                                 recompute, mesh, int(alpha_blocks))
    attr, p_zero, prob = sharding.fetch(attr), sharding.fetch(p_zero), sharding.fetch(prob)
    per_path = (attr, cfg.has_ffn_L()) if path == "layer" else (attr.reshape(len(attr), 1, -1), [True])
    return {"attr": attr, "prob": prob, "prob_zero": p_zero, "steps": steps, "rule": rule, "path": path,
            "completeness": completeness(per_path[0], prob, p_zero, per_path[1])}


def completeness(attr_NLF, prob_N, prob_zero_NL, has_ffn_L) -> dict:
    """Σ_i Attr_i against P(1) − P(0), per prompt and FFN layer.

    ``relative_error`` = Σ|Σ_i Attr_i − ΔP| / Σ|ΔP| over all (prompt, layer) pairs; also the largest
    absolute error and the median, mean and largest per-pair relative error (pairs with |ΔP| > 1e-4).
    """
    keep = np.asarray(has_ffn_L, bool)
    delta_NL = (prob_N[:, None] - prob_zero_NL)[:, keep]
    err_NL = attr_NLF.sum(-1)[:, keep] - delta_NL
    big = np.abs(delta_NL) > 1e-4
    per_pair = np.abs(err_NL[big]) / np.abs(delta_NL[big])
    return {"relative_error": float(np.abs(err_NL).sum() / max(np.abs(delta_NL).sum(), 1e-30)),
            "max_abs_error": float(np.abs(err_NL).max(initial=0.0)),
            "median_pair_relative_error": float(np.median(per_pair)) if per_pair.size else 0.0,
            "mean_pair_relative_error": float(per_pair.mean()) if per_pair.size else 0.0,
            "max_pair_relative_error": float(per_pair.max()) if per_pair.size else 0.0,
            "mean_abs_delta": float(np.abs(delta_NL).mean()) if delta_NL.size else 0.0}


# ---------------------------------------------------------------- selection (Dai et al. 2022, §3.2)

def coarse_neurons(attr_NLF, threshold: float = 0.2) -> np.ndarray:
    """Per prompt, the neurons whose attribution exceeds ``threshold`` × that prompt's largest attribution."""
    top_N = attr_NLF.reshape(len(attr_NLF), -1).max(-1)
    return (attr_NLF > threshold * top_N[:, None, None]) & (attr_NLF > 0)


def refine_neurons(coarse_PLF, share: float = 0.7, target: tuple[int, int] = (2, 5), step: float = 0.05,
                   share_bounds: tuple[float, float] = (0.5, 1.0)) -> tuple[np.ndarray, float]:
    """Neurons in at least ``share`` of one fact's prompts; ``share`` moves in ``step``s toward ``target``.

    Dai et al. keep neurons shared by > p% of the fact's prompts and tune p so that facts get 2–5 neurons.
    Here p starts at ``share``; while more than ``target[1]`` survive it rises (up to ``share_bounds[1]``),
    while fewer than ``target[0]`` survive it falls (down to ``share_bounds[0]``). Returns the mask and p.
    """
    freq_LF = coarse_PLF.mean(0)
    lo, hi = share_bounds
    pick = lambda p: freq_LF >= p - 1e-6  # noqa: E731
    p = share
    while pick(p).sum() > target[1] and p + step <= hi + 1e-6:
        p += step
    while pick(p).sum() < target[0] and p - step >= lo - 1e-6:
        p -= step
    return pick(p), float(p)


def knowledge_neurons(attr_NLF, fact_N, threshold: float = 0.2, share: float = 0.7,
                      target: tuple[int, int] = (2, 5), threshold_step: float = 0.05, exclude_LF=None) -> list[dict]:
    """The knowledge neurons of each fact (prompts grouped by ``fact_N``): ``[{fact, neurons, share, threshold}]``.

    Coarse neurons per prompt (:func:`coarse_neurons`), then :func:`refine_neurons`. Where even p = 1 leaves
    more than ``target[1]`` neurons, the coarse threshold rises in ``threshold_step``s (up to 0.95) — our
    extension of Dai et al.'s p adjustment for models whose prompts share many high-attribution neurons.
    With one prompt per fact the refinement keeps every coarse neuron and only the threshold rule trims.
    ``exclude_LF`` (e.g. :func:`generic_neurons`) marks neurons that are never selected.
    """
    keep_LF = True if exclude_LF is None else ~np.asarray(exclude_LF, bool)
    out = []
    for fact in np.unique(fact_N):
        rows = np.flatnonzero(fact_N == fact)
        t = threshold
        while True:
            coarse = coarse_neurons(attr_NLF[rows], t) & keep_LF
            mask_LF, p = refine_neurons(coarse, share, target)
            if mask_LF.sum() <= target[1] or t + threshold_step > 0.95 + 1e-6:
                break
            t += threshold_step
        layers, units = np.nonzero(mask_LF)
        order = np.argsort(-attr_NLF[rows].mean(0)[layers, units])
        out.append({"fact": int(fact), "share": p, "threshold": float(t),
                    "n_coarse_mean": float(coarse_neurons(attr_NLF[rows], threshold).sum((1, 2)).mean()),
                    "neurons": [[int(layers[i]), int(units[i])] for i in order]})
    return out


def generic_neurons(attr_NLF, relation_N, threshold: float = 0.2, min_relations: int = 3) -> np.ndarray:
    """``[L, F]`` mask of neurons that are coarse neurons for prompts of ≥ ``min_relations`` different relations.

    They express something other than a fact (the answer's position or format); setting them aside is our
    stand-in for Dai et al.'s refinement across paraphrases where a fact has a single prompt.
    """
    coarse_NLF = coarse_neurons(attr_NLF, threshold)
    relation_N = np.asarray(relation_N)
    per_relation = np.stack([coarse_NLF[relation_N == r].any(0) for r in np.unique(relation_N)])
    return per_relation.sum(0) >= min_relations


def relation_sharing(neurons_by_fact: list[list[list[int]]], relation_K, min_share: float = 0.5) -> dict:
    """Neurons shared by facts of one relation, and intra- vs inter-relation overlap (Dai et al. 2022, §5.1).

    For each relation: the neurons in ≥ ``min_share`` of its facts. Overlap: the mean number of knowledge
    neurons two facts share, over pairs of facts with the same relation and with different relations.
    """
    sets = [set(map(tuple, ns)) for ns in neurons_by_fact]
    relation_K = np.asarray(relation_K)
    per_relation = {}
    for rel in np.unique(relation_K):
        idx = np.flatnonzero(relation_K == rel)
        counts: dict = {}
        for k in idx:
            for n in sets[k]:
                counts[n] = counts.get(n, 0) + 1
        shared = sorted((n for n, c in counts.items() if c >= min_share * len(idx)), key=lambda n: -counts[n])
        per_relation[str(rel)] = {"n_facts": int(len(idx)), "shared": [[int(a), int(b), counts[(a, b)]] for a, b in shared]}
    same, diff = [], []
    for a in range(len(sets)):
        for b in range(a + 1, len(sets)):
            (same if relation_K[a] == relation_K[b] else diff).append(len(sets[a] & sets[b]))
    return {"per_relation": per_relation, "min_share": min_share,
            "intra_relation_overlap": float(np.mean(same)) if same else None,
            "inter_relation_overlap": float(np.mean(diff)) if diff else None}


# ------------------------------------------------- suppression / amplification (Dai et al. 2022, §4.1)

@functools.partial(jax.jit, static_argnames=("cfg", "batch_size", "all_positions"))
def _scaled_probs(params, tokens_NT, pos_N, gold_N, mask_NT, masks_KLF, fact_P, prompt_P, factor, cfg, batch_size,
                  all_positions=False):
    T = tokens_NT.shape[1]

    def one(pair):
        k, n = pair
        pos = pos_N[n]
        hit_T = (jnp.arange(T) == pos) | all_positions
        scale_LTF = jnp.where(hit_T[None, :, None] & masks_KLF[k][:, None, :], factor, 1.0)
        return gold_prob(params, cfg, tokens_NT[n], pos, gold_N[n], Hooks(ffn_scale=scale_LTF), mask_NT[n])

    return jax.lax.map(one, (fact_P, prompt_P), batch_size=batch_size)


def neuron_mask(neurons_by_fact, cfg) -> np.ndarray:
    """Boolean ``[K, L, F]`` masks from per-fact ``[[layer, neuron], …]`` lists."""
    masks = np.zeros((len(neurons_by_fact), cfg.n_layers, cfg.width), bool)
    for k, ns in enumerate(neurons_by_fact):
        for layer, unit in ns:
            masks[k, layer, unit] = True
    return masks


def scaled_probs(params, cfg, enc, masks_KLF, fact_P, prompt_P, factor: float, batch_size: int = 32,
                 all_positions: bool = False) -> np.ndarray:
    """p(gold) of prompt ``prompt_P[j]`` with the neurons of fact ``fact_P[j]`` multiplied by ``factor``
    at the prediction position (Dai et al. 2022, §4.1), or at every position with ``all_positions`` (the
    pretrained-model study's choice: a fact's neurons may act on the subject tokens as well).
    One compiled program for every (fact, prompt) pair and factor."""
    check_prompts(enc, cfg)
    probs = _scaled_probs(params, jnp.asarray(enc["tokens"], jnp.int32), jnp.asarray(enc["predict_pos"], jnp.int32),
                          jnp.asarray(enc["target"], jnp.int32), jnp.asarray(_mask(enc, cfg)), jnp.asarray(masks_KLF),
                          jnp.asarray(fact_P, jnp.int32), jnp.asarray(prompt_P, jnp.int32), jnp.float32(factor), cfg,
                          max(1, min(batch_size, len(fact_P))), bool(all_positions))
    return np.asarray(probs)


def suppression_amplification(params, cfg, enc, neurons_by_fact, own_prompts, unrelated_prompts, prob_N,
                              factors=(0.0, 2.0), batch_size: int = 32, all_positions: bool = False) -> dict:
    """Relative change of p(correct), ``(p' − p) / p``, when a fact's knowledge neurons are scaled.

    ``own_prompts[k]`` / ``unrelated_prompts[k]`` index the rows of ``enc`` for fact k's own prompts and for
    prompts of unrelated facts; ``prob_N`` is the clean p(gold). Returns per-fact means and overall means
    (facts with no knowledge neurons are skipped), for each factor (0 = suppress, 2 = amplify).
    ``all_positions``: see :func:`scaled_probs`.
    """
    masks = neuron_mask(neurons_by_fact, cfg)
    result = {"factors": list(factors), "per_fact": []}
    groups = {"own": own_prompts, "unrelated": unrelated_prompts}
    pairs = {g: (np.concatenate([np.full(len(p), k) for k, p in enumerate(rows)]).astype(np.int32),
                 np.concatenate([np.asarray(p, np.int64) for p in rows]).astype(np.int32)) for g, rows in groups.items()}
    changes = {}
    for factor in factors:
        for g, (fact_P, prompt_P) in pairs.items():
            p_new = scaled_probs(params, cfg, enc, masks, fact_P, prompt_P, factor, batch_size, all_positions)
            rel = (p_new - prob_N[prompt_P]) / np.maximum(prob_N[prompt_P], 1e-12)
            changes[(factor, g)] = np.array([rel[fact_P == k].mean() if (fact_P == k).any() else np.nan
                                             for k in range(len(neurons_by_fact))])
    has = np.array([len(ns) > 0 for ns in neurons_by_fact])
    for k in range(len(neurons_by_fact)):
        result["per_fact"].append({f"x{f:g}_{g}": float(changes[(f, g)][k]) for f in factors for g in groups})
    result["mean"] = {f"x{f:g}_{g}": float(np.nanmean(changes[(f, g)][has])) if has.any() else None
                      for f in factors for g in groups}
    result["median"] = {f"x{f:g}_{g}": float(np.nanmedian(changes[(f, g)][has])) if has.any() else None
                        for f in factors for g in groups}
    result["n_facts"] = int(has.sum())
    return result
