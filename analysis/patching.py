"""Activation patching (Vig et al. 2020; Meng et al. 2022, §2.1 with a clean/corrupted prompt pair).

Two runs per prompt pair of equal length: clean x (answer o) and corrupted x* (e.g. another subject). For each
cell (layer l, position t) one activation of the corrupted run is set to its value in the clean run and the
corrupted run continues: ``patched[l, t] = P_{x*, clean a_t^l}[o]``. The indirect effect of the cell is
``patched − P_{x*}[o]``; :func:`restored_fraction` divides it by the total effect ``P_x[o] − P_{x*}[o]``.
Sites: ``resid_pre`` (the input of block l, the residual stream h_t^{l−1}), ``attn_out`` and ``mlp_out``
(block l's attention / MLP output). :func:`head_patching` patches attention heads instead: cell (l, h) is head h
of block l, its output ``z_h W_O[h]`` set to the clean run's at every position (head-level patching as in
Wang et al. 2023, "Interpretability in the wild").

A patch at (l, t) leaves positions < t and blocks < l as in the corrupted run, so ``recompute="prefix"``
(default) caches the corrupted run once and recomputes only positions ≥ t in blocks ≥ l (ffnkv.prefix), the
cells grouped by suffix length (static) and run in chunks entering at one block (a traced layer), so the
program does not grow with depth. ``recompute="full"`` reruns the whole corrupted forward
per cell (same numbers; the benchmark's baseline). All cells of all pairs are one jitted program: a sweep
over pairs (clean and corrupted runs), then sweeps over (pair, cell) items, all split over the "data" axis
of ``mesh`` (ffnkv.sharding).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from analysis.prompt_prob import check_prompts, gold_prob
from ffnkv import sharding
from ffnkv.errors import FfnkvError
from ffnkv.hooks import Hooks
from ffnkv.model import forward
from ffnkv.prefix import entering_sweep, forward_from, logits_at, prefix_cache, suffix, suffix_groups, take

SITES = ("resid_pre", "attn_out", "mlp_out")


def _pair_context(params, cfg, recompute, pair):
    """Per pair, once: P[o] clean and corrupted, the clean activations and (prefix) the corrupted cache."""
    clean_T, corrupt_T, pos, gold = pair
    clean_out = prefix_cache(params, clean_T[None], cfg)[0]
    corrupt_out, cache = prefix_cache(params, corrupt_T[None], cfg)
    acts = clean_out.acts
    ctx = {"p_clean": jax.nn.softmax(clean_out.logits[0, pos])[gold],
           "p_corrupt": jax.nn.softmax(corrupt_out.logits[0, pos])[gold],
           "resid_pre": acts.resid_pre, "attn_out": acts.attn_out, "mlp_out": acts.mlp_out,
           "corrupt_embed": corrupt_out.acts.resid_pre[0]}
    return ctx | ({"cache": cache} if recompute == "prefix" else {})


def _cell_full(params, cfg, site, ctx, pair, layer, t):
    """P[o] of the corrupted prompt with (site, layer, t) patched, the whole forward rerun (layer traced)."""
    _, corrupt_T, pos, gold = pair
    L, T = cfg.n_layers, corrupt_T.shape[0]
    at_T = jnp.arange(T) == t
    rows = lambda l: ((jnp.arange(L) == l)[:, None] & at_T[None, :])[:, None, :, None]
    if site == "resid_pre":  # h^{l−1} is block l−1's output; for l = 0 the embedding is shifted to the clean one
        shift_TD = (ctx["resid_pre"][0] - ctx["corrupt_embed"])[0] * (at_T[:, None] & (layer == 0))
        hooks = Hooks(embed_add=shift_TD, resid_post_patch_mask=rows(layer - 1),
                      resid_post_patch_value=jnp.roll(ctx["resid_pre"], -1, 0))
    else:
        hooks = Hooks(**{f"{site}_patch_mask": rows(layer), f"{site}_patch_value": ctx[site]})
    return gold_prob(params, cfg, corrupt_T, pos, gold, hooks)


def _cell_prefix(params, cfg, site, start, ctx, pairs, layer, x):
    """:func:`_cell_full` over pair n's cached corrupted prefix: positions ≥ ``start`` (static) in blocks ≥
    ``layer`` (traced, the same for the whole chunk: ffnkv.prefix.entering_sweep)."""
    n, t = x
    pos, gold = pairs[2][n], pairs[3][n]
    T = pairs[1].shape[1]
    cache = ctx["cache"]
    at_S = jnp.arange(start, T) == t
    x_BSD = cache.resid[n, layer][:, start:]
    if site == "resid_pre":
        x_BSD = jnp.where(at_S[None, :, None], ctx["resid_pre"][n, layer][:, start:], x_BSD)
        hooks = None
    else:
        def hooks(j):
            mask = ((j == layer) & at_S)[None, :, None]
            return Hooks(**{f"{site}_patch_mask": mask, f"{site}_patch_value": ctx[site][n, j, :, t][:, None]})
    x_BSD = forward_from(params, lambda j: (cache.k[n, j], cache.v[n, j]), cfg, layer, start, x_BSD, hooks)
    p = jax.nn.softmax(logits_at(params, x_BSD, cfg, jnp.maximum(pos - start, 0))[0])[gold]
    return jnp.where(pos >= start, p, ctx["p_corrupt"][n])


def patch_impl(params, clean_NT, corrupt_NT, pos_N, gold_N, cfg, site, layers, recompute="prefix", mesh=None,
               cell_batch=8, position_buckets=8):
    """Un-jitted core of :func:`activation_patching`: ``(p_clean [N], p_corrupt [N], patched [N, K, T])``.

    For ``"prefix"`` one sweep per suffix length (static; at most ``position_buckets``), its (pair, cell) items
    in chunks entering at one block (ffnkv.prefix.entering_sweep), so the program does not grow with depth."""
    pairs = (clean_NT, corrupt_NT, pos_N, gold_N)
    ctx = sharding.sweep(lambda p, x: _pair_context(p, cfg, recompute, x), pairs, mesh, None, (params,))
    N, T, K = clean_NT.shape[0], clean_NT.shape[1], len(layers)
    groups: dict[int, list] = {}
    length = {t: n for n, ts in suffix_groups(T, cfg.causal, position_buckets).items() for t in ts}
    for k, layer in enumerate(layers):
        for t in range(T):
            groups.setdefault(T if recompute == "full" else length[t], []).append((k, layer, t))
    patched = jnp.zeros((N, K, T), jnp.float32)
    for n_suffix, group in groups.items():
        n_X, c_X = (a.reshape(-1) for a in np.indices((N, len(group))))
        cell_X = np.asarray(group, np.int32)[c_X]
        if recompute == "full":
            def item(p, ctx, pairs, x):
                return _cell_full(p, cfg, site, take(ctx, x[0]), take(pairs, x[0]), x[1], x[2])

            xs = tuple(jnp.asarray(a, jnp.int32) for a in (n_X, cell_X[:, 1], cell_X[:, 2]))
            values_X = sharding.sweep(item, xs, mesh, cell_batch, (params, ctx, pairs))
        else:
            def item(p, ctx, pairs, layer, x, start=T - n_suffix):
                return _cell_prefix(p, cfg, site, start, ctx, pairs, layer, x)

            xs = (np.asarray(n_X, np.int32), cell_X[:, 2])
            values_X = entering_sweep(item, xs, cell_X[:, 1], cell_batch, mesh, (params, ctx, pairs))
        patched = patched.at[n_X, cell_X[:, 0], cell_X[:, 2]].set(values_X)
    return ctx["p_clean"], ctx["p_corrupt"], patched


patch_jit = jax.jit(patch_impl, static_argnames=("cfg", "site", "layers", "recompute", "mesh", "cell_batch",
                                                 "position_buckets"))


def activation_patching(params, cfg, enc, corrupt_tokens, site: str = "resid_pre", layers=None,
                        recompute: str = "prefix", mesh=None, cell_batch: int = 8, position_buckets: int = 8) -> dict:
    """Patch every (layer, position) cell of the clean runs into the corrupted runs.

    ``enc``: ``tokens`` [N, T] (clean), ``predict_pos`` [N], ``target`` [N] (o); ``corrupt_tokens`` [N, T] the
    corrupted prompts (same length and prediction position). ``site``: one of ``SITES``. ``layers``: the
    layers patched (default all). ``recompute``: ``"prefix"`` or ``"full"`` (module docstring). ``mesh``: a
    ffnkv.sharding mesh whose "data" axis splits the (pair, cell) items. Returns numpy ``p_clean`` [N],
    ``p_corrupt`` [N] and ``patched`` [N, K, T] (P[o] with the cell patched; positions after
    ``predict_pos`` give ``p_corrupt``). ``position_buckets``: suffix lengths are multiples of ⌈T / buckets⌉
    (fewer programs, a little more recompute).
    """
    check_prompts(enc, cfg, width_needed=False)
    corrupt = np.asarray(corrupt_tokens)
    if corrupt.shape != np.asarray(enc["tokens"]).shape:
        raise FfnkvError("corrupt_tokens must have the clean prompts' shape [N, T]; pad both prompts alike.")
    if site not in SITES or recompute not in ("prefix", "full"):
        raise FfnkvError(f"patching needs a site from {SITES} and recompute 'prefix' or 'full'; got {site!r}, "
                         f"{recompute!r}.")
    layers = tuple(range(cfg.n_layers)) if layers is None else tuple(int(l) for l in layers)
    if not layers or min(layers) < 0 or max(layers) >= cfg.n_layers:
        raise FfnkvError(f"patching layers must be a non-empty subset of 0…{cfg.n_layers - 1}; got {list(layers)}.")
    arrays = sharding.put_inputs((enc["tokens"], corrupt, enc["predict_pos"], enc["target"]), mesh)
    out = patch_jit(sharding.put_params(params, mesh), *arrays, cfg, site, layers, recompute, mesh,
                    max(1, int(cell_batch)), max(1, int(position_buckets)))
    p_clean, p_corrupt, patched = (sharding.fetch(a) for a in out)
    return {"p_clean": p_clean, "p_corrupt": p_corrupt, "patched": patched, "site": site, "layers": list(layers)}


def restored_fraction(result: dict) -> np.ndarray:
    """``(patched − P_{x*}) / (P_x − P_{x*})`` per cell ``[N, K, T]``: the share of the total effect a cell restores."""
    te_N = result["p_clean"] - result["p_corrupt"]
    safe_N = np.where(np.abs(te_N) > 1e-12, te_N, 1.0)
    return (result["patched"] - result["p_corrupt"][:, None, None]) / safe_N[:, None, None]


def _head_context(params, cfg, recompute, pair):
    """Per pair, once: P[o] clean and corrupted, the clean head outputs ``[L, 1, T, H, D]`` and (prefix) the
    corrupted cache."""
    clean_T, corrupt_T, pos, gold = pair
    clean_out = forward(params, clean_T[None], cfg, capture_heads=True)
    corrupt_out, cache = prefix_cache(params, corrupt_T[None], cfg)
    ctx = {"p_clean": jax.nn.softmax(clean_out.logits[0, pos])[gold],
           "p_corrupt": jax.nn.softmax(corrupt_out.logits[0, pos])[gold], "head_out": clean_out.acts.head_out}
    return ctx | ({"cache": cache} if recompute == "prefix" else {})


def _heads_of_layer(params, cfg, recompute, ctx, pair, layer):
    """P[o] of the corrupted prompt with head h of ``layer`` (traced) patched at every position, for every h:
    ``[H]``. The heads are one vmapped batch; ``layer`` is not batched, so with ``recompute="prefix"`` the blocks
    below it are skipped (ffnkv.prefix.forward_from from position 0 over the corrupted cache)."""
    _, corrupt_T, pos, gold = pair
    L, H, T = cfg.n_layers, cfg.n_heads, corrupt_T.shape[0]

    def one(h):
        mask_L11H = ((jnp.arange(L) == layer)[:, None] & (jnp.arange(H) == h)[None, :])[:, None, None, :]
        hooks = Hooks(head_patch_mask=mask_L11H, head_patch_value=ctx["head_out"])
        if recompute == "full":
            return gold_prob(params, cfg, corrupt_T, pos, gold, hooks)
        cache = ctx["cache"]
        x_BTD = forward_from(params, cache, cfg, layer, 0, suffix(cache, layer, 0, T), hooks)
        return jax.nn.softmax(logits_at(params, x_BTD, cfg, pos)[0])[gold]

    return jax.vmap(one)(jnp.arange(H))


def head_patch_impl(params, clean_NT, corrupt_NT, pos_N, gold_N, cfg, layers, recompute="prefix", mesh=None):
    """Un-jitted core of :func:`head_patching`: ``(p_clean [N], p_corrupt [N], patched [N, K, H])``. One sweep
    over pairs, one over (pair, layer) items: one program whatever the number of layers and heads."""
    pairs = (clean_NT, corrupt_NT, pos_N, gold_N)
    ctx = sharding.sweep(lambda p, x: _head_context(p, cfg, recompute, x), pairs, mesh, None, (params,))
    N, K = clean_NT.shape[0], len(layers)
    n_X, layer_X = (jnp.asarray(a.reshape(-1), jnp.int32) for a in np.meshgrid(np.arange(N), layers, indexing="ij"))

    def item(p, ctx, pairs, x):
        return _heads_of_layer(p, cfg, recompute, take(ctx, x[0]), take(pairs, x[0]), x[1])

    patched_XH = sharding.sweep(item, (n_X, layer_X), mesh, None, (params, ctx, pairs))
    return ctx["p_clean"], ctx["p_corrupt"], patched_XH.reshape(N, K, cfg.n_heads)


head_patch_jit = jax.jit(head_patch_impl, static_argnames=("cfg", "layers", "recompute", "mesh"))


def head_patching(params, cfg, enc, corrupt_tokens, layers=None, recompute: str = "prefix", mesh=None) -> dict:
    """Patch every (layer, head) cell of the clean runs into the corrupted runs: head h of block l takes its
    clean output at every position.

    Arguments as :func:`activation_patching` (no site: the site is each head's output). Returns numpy
    ``p_clean`` [N], ``p_corrupt`` [N] and ``patched`` [N, K, H] (P[o] with the cell patched);
    :func:`restored_fraction` reads it as it reads position cells.
    """
    check_prompts(enc, cfg, width_needed=False)
    corrupt = np.asarray(corrupt_tokens)
    if corrupt.shape != np.asarray(enc["tokens"]).shape:
        raise FfnkvError("corrupt_tokens must have the clean prompts' shape [N, T]; pad both prompts alike.")
    if recompute not in ("prefix", "full"):
        raise FfnkvError(f"head patching needs recompute 'prefix' or 'full'; got {recompute!r}.")
    layers = tuple(range(cfg.n_layers)) if layers is None else tuple(int(l) for l in layers)
    if not layers or min(layers) < 0 or max(layers) >= cfg.n_layers:
        raise FfnkvError(f"patching layers must be a non-empty subset of 0…{cfg.n_layers - 1}; got {list(layers)}.")
    arrays = sharding.put_inputs((enc["tokens"], corrupt, enc["predict_pos"], enc["target"]), mesh)
    out = head_patch_jit(sharding.put_params(params, mesh), *arrays, cfg, layers, recompute, mesh)
    p_clean, p_corrupt, patched = (sharding.fetch(a) for a in out)
    return {"p_clean": p_clean, "p_corrupt": p_corrupt, "patched": patched, "site": "head_out", "layers": list(layers)}
