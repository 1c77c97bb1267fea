"""Causal tracing (Meng et al. 2022, §2.1): where does the model recall a fact?

Three runs per fact (subject s, prompt x, answer o):

* clean: P[o], caching every hidden state h_t^l (``resid_post``), MLP output and attention output;
* corrupted: the embeddings of the subject tokens get Gaussian noise ε ~ N(0, ν²) (ν = 3 × the std of the
  token embeddings by default), S samples with a fixed seed: P_*[o];
* corrupted-with-restoration: the corrupted run with one state set back to its clean value: P_{*, clean h}[o].

Total effect TE = P[o] − P_*[o]; indirect effect of a state IE = P_{*, clean h}[o] − P_*[o] (probabilities
averaged over the S noise samples). MLP and attention outputs are restored over a window of layers
[l − ⌊w/2⌋, l + ⌈w/2⌉) clipped to the model (Meng et al. use w = 10). The severed-path variant (§2.3, Fig. 3)
restores h_t^l while freezing the MLP (or attention) outputs at token t, all layers, at their corrupted values.

The whole grid (kind × token × layer × noise sample) of every fact is one jitted program: a sweep over facts
(noise, clean and corrupted runs), then sweeps over (fact, cell, block of samples) items with the block's
samples ``vmap``-ped, all split over the "data" axis of ``mesh`` (ffnkv.sharding). Restorations are ``Hooks``
patch masks, so no value recompiles.

A restoration at token t from layer l on leaves positions < t and layers < l as in the corrupted run, so
``recompute="prefix"`` (default) caches each corrupted run once and recomputes only positions ≥ t in layers
≥ l (ffnkv.prefix): a restored state h_t^l enters block l + 1; a restored MLP/attention window starts at its
lowest layer. Cells are grouped by suffix length (``position_buckets`` lengths) and first changed block, both
static, so each group's program holds only the work its cells need. ``recompute="full"`` reruns the whole corrupted
forward for every cell and sample (same numbers; the benchmark's baseline).
"""
from __future__ import annotations

import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from analysis.plan import tracing_plan
from analysis.prompt_prob import check_prompts, gold_prob, prob_of
from ffnkv import sharding
from ffnkv.errors import FfnkvError
from ffnkv.hooks import Hooks
from ffnkv.model import forward
from ffnkv.prefix import entering_sweep, forward_from, logits_at, prefix_cache, suffix_groups, take

KINDS = ("resid", "mlp", "attn", "resid_sever_mlp", "resid_sever_attn")
CATEGORIES = ("first_subject", "middle_subject", "last_subject", "first_subsequent", "further", "last")


def embedding_noise(params, factor: float = 3.0) -> float:
    """ν = ``factor`` × the standard deviation of the token-embedding entries (Meng et al. 2022, §2.1)."""
    return float(factor * np.asarray(params["embed"]["tok"], np.float32).std())


def window_L(layer, n_layers: int, window: int):
    """Layers [l − ⌊w/2⌋, l + ⌈w/2⌉) ∩ [0, L), as a boolean ``[L]`` (traced ``layer`` allowed)."""
    ls = jnp.arange(n_layers)
    return (ls >= layer - window // 2) & (ls < layer - (-window // 2))


def cell_hooks(kind, t, layer, noise_TD, clean, corrupt, cfg, window, T):
    """Hooks for grid cell (kind, t, layer) under one noise sample; ``clean``/``corrupt`` are Acts."""
    L = cfg.n_layers
    at_T = jnp.arange(T) == t
    here_L = jnp.arange(L) == layer
    win = window_L(layer, L, window)
    resid = (kind == 0) | (kind == 3) | (kind == 4)
    mlp_L = jnp.where(kind == 1, win, kind == 3)
    attn_L = jnp.where(kind == 2, win, kind == 4)
    mask = lambda rows_L: (rows_L[:, None] & at_T[None, :])[:, None, :, None]
    return Hooks(
        embed_add=noise_TD,
        resid_post_patch_mask=mask(here_L & resid), resid_post_patch_value=clean.resid_post,
        mlp_out_patch_mask=mask(mlp_L), mlp_out_patch_value=jnp.where(kind == 1, clean.mlp_out, corrupt.mlp_out),
        attn_out_patch_mask=mask(attn_L), attn_out_patch_value=jnp.where(kind == 2, clean.attn_out, corrupt.attn_out))


def _uses(kind_ids):
    """Which patched activations the kinds need: (mlp_out, attn_out)."""
    return any(k in (1, 3) for k in kind_ids), any(k in (2, 4) for k in kind_ids)


def _fact_context(params, cfg, nu, samples, recompute, kind_ids, item):
    """Per fact, once: the noise, P[o] clean and per sample corrupted, and the clean and corrupted activations
    the cells read — for ``"full"`` the patch values, for ``"prefix"`` the clean residuals, the corrupted
    caches and the MLP/attention outputs the kinds restore or freeze."""
    tokens_T, pos, gold, s0, s1, key = item
    T, D = tokens_T.shape[0], cfg.d_model
    subject_T = (jnp.arange(T) >= s0) & (jnp.arange(T) < s1)
    noise_STD = nu * jax.random.normal(key, (samples, T, D)) * subject_T[None, :, None]
    clean_out, clean = prefix_cache(params, tokens_T[None], cfg)
    corrupt_out, corrupt = jax.vmap(lambda z: prefix_cache(params, tokens_T[None], cfg, Hooks(embed_add=z)))(noise_STD)
    ctx = {"noise": noise_STD, "p_clean": jax.nn.softmax(clean_out.logits[0, pos])[gold],
           "p_corrupt": jax.nn.softmax(corrupt_out.logits[:, 0, pos], -1)[:, gold]}
    if recompute == "full":
        keep = lambda acts: {"resid_post": acts.resid_post, "mlp_out": acts.mlp_out, "attn_out": acts.attn_out}
        return ctx | {"clean": keep(clean_out.acts), "corrupt": keep(corrupt_out.acts)}
    mlp, attn = _uses(kind_ids)
    ctx |= {"clean_resid": clean.resid, "corrupt_cache": corrupt}
    for name, used in (("mlp_out", mlp), ("attn_out", attn)):
        if used:
            ctx |= {f"clean_{name}": getattr(clean_out.acts, name), f"corrupt_{name}": getattr(corrupt_out.acts, name)}
    return ctx


def _cell_full(params, cfg, window, ctx, fact, cell, samples_S):
    """Σ over the samples ``samples_S`` of the restored P[o] of one cell, rerunning the whole corrupted forward."""
    tokens_T, pos, gold = fact[:3]
    kind, t, layer = cell
    T = tokens_T.shape[0]
    clean = struct_acts(ctx["clean"])

    def sample(s):
        corrupt = struct_acts(take(ctx["corrupt"], s))
        hooks = cell_hooks(kind, t, layer, ctx["noise"][s], clean, corrupt, cfg, window, T)
        return gold_prob(params, cfg, tokens_T, pos, gold, hooks)

    return jax.vmap(sample)(samples_S).sum()


def first_layer(kind: int, layer: int, window: int) -> int:
    """The first block a cell changes: l + 1 for a restored state h_t^l, the window's lowest layer otherwise."""
    return layer + 1 if kind in (0, 3, 4) else max(layer - window // 2, 0)


def _cell_prefix(params, cfg, window, start, kind_ids, ctx, facts, first, x):
    """:func:`_cell_full` over fact n's cached corrupted prefixes: positions ≥ ``start`` (static) in blocks ≥
    ``first`` (traced, the same for the whole chunk: ffnkv.prefix.entering_sweep), each block reading its
    cached keys/values and patch values from the context as it runs; the last block at the prediction position
    only (``forward_from``'s ``query``)."""
    n, kind, t, layer, samples_S = x
    pos, gold = facts[1][n], facts[2][n]
    L, T = cfg.n_layers, ctx["clean_resid"].shape[-2]
    resid = (kind == 0) | (kind == 3) | (kind == 4)
    at_S = jnp.arange(start, T) == t
    win = window_L(layer, L, window)
    mlp, attn = _uses(kind_ids)
    cache = ctx["corrupt_cache"]
    clean_x_BSD = ctx["clean_resid"][n, first][:, start:]

    def sample(s):
        x_BSD = jnp.where(resid & at_S[None, :, None], clean_x_BSD, cache.resid[n, s, first][:, start:])

        def hooks(j):
            out = {}
            for site, restore, freeze, used in (("mlp_out", 1, 3, mlp), ("attn_out", 2, 4, attn)):
                if used:
                    on = jnp.where(kind == restore, win[j], (kind == freeze) & (j > layer))
                    value_1D = jnp.where(kind == restore, ctx[f"clean_{site}"][n, j, :, t],
                                         ctx[f"corrupt_{site}"][n, s, j, :, t])
                    out |= {f"{site}_patch_mask": (on & at_S)[None, :, None], f"{site}_patch_value": value_1D[:, None]}
            return Hooks(**out)

        x_B1D = forward_from(params, lambda j: (cache.k[n, s, j], cache.v[n, s, j]), cfg, first, start, x_BSD, hooks,
                             query=pos - start)
        p = prob_of(logits_at(params, x_B1D, cfg, 0)[0], gold)
        return jnp.where(pos >= start, p, ctx["p_corrupt"][n, s])

    return jax.vmap(sample)(samples_S).sum()


def struct_acts(d):
    """The three patched Acts fields of a context as an object with attributes (what ``cell_hooks`` reads)."""
    return SimpleNamespace(**d)


def trace_impl(params, tokens_NT, pos_N, gold_N, s0_N, s1_N, keys_N, nu, cfg, kind_ids, window, samples, cell_batch,
               layers=None, recompute="prefix", mesh=None, position_buckets=8, sample_blocks=1):
    """Un-jitted core (tests wrap it in ``chex.assert_max_traces``); see :func:`causal_trace`.

    A sweep over facts (contexts), then sweeps over (fact, cell, block of samples) items, ``cell_batch`` in
    flight: for ``"prefix"`` one per suffix length (static; at most ``position_buckets``), its items in chunks
    entering at one block (ffnkv.prefix.entering_sweep), so the program does not grow with depth and holds
    only the work each cell needs; one sweep for ``"full"``. All split over the "data" axis of ``mesh``."""
    layers = tuple(range(cfg.n_layers)) if layers is None else layers
    facts = (tokens_NT, pos_N, gold_N, s0_N, s1_N, keys_N)
    ctx = sharding.sweep(lambda p, f: _fact_context(p, cfg, nu, samples, recompute, kind_ids, f), facts, mesh, None,
                         (params,))
    N, T, C, K = tokens_NT.shape[0], tokens_NT.shape[1], len(kind_ids), len(layers)
    samples_BS = jnp.arange(samples).reshape(sample_blocks, -1)
    cells = [(c, kind, t, li, l) for c, kind in enumerate(kind_ids) for t in range(T) for li, l in enumerate(layers)]
    length = {t: n for n, ts in suffix_groups(T, cfg.causal, position_buckets).items() for t in ts}
    groups: dict[int, list] = {}
    for cell in cells:
        groups.setdefault(T if recompute == "full" else length[cell[2]], []).append(cell)
    total = jnp.zeros((N, C, T, K, sample_blocks), jnp.float32)
    for n_suffix, group in groups.items():
        n_X, x_X, b_X = (a.reshape(-1) for a in np.indices((N, len(group), sample_blocks)))
        cell_X = np.asarray(group, np.int32)[x_X]
        if recompute == "full":
            def item(p, ctx, facts, x):
                n, kind, t, layer, b = x
                return _cell_full(p, cfg, window, take(ctx, n), take(facts, n), (kind, t, layer), samples_BS[b])

            xs = tuple(jnp.asarray(a, jnp.int32) for a in (n_X, cell_X[:, 1], cell_X[:, 2], cell_X[:, 4], b_X))
            values_X = sharding.sweep(item, xs, mesh, cell_batch, (params, ctx, facts))
        else:
            def item(p, ctx, facts, first, x, start=T - n_suffix):
                n, kind, t, layer, b = x
                return _cell_prefix(p, cfg, window, start, kind_ids, ctx, facts, first,
                                    (n, kind, t, layer, samples_BS[b]))

            first_X = [first_layer(kind, layer, window) for kind, layer in zip(cell_X[:, 1], cell_X[:, 4])]
            xs = tuple(np.asarray(a, np.int32) for a in (n_X, cell_X[:, 1], cell_X[:, 2], cell_X[:, 4], b_X))
            values_X = entering_sweep(item, xs, first_X, cell_batch, mesh, (params, ctx, facts))
        total = total.at[n_X, cell_X[:, 0], cell_X[:, 2], cell_X[:, 3], b_X].set(values_X)
    return ctx["p_clean"], ctx["p_corrupt"].mean(-1), total.sum(-1) / samples


trace_jit = jax.jit(trace_impl, static_argnames=("cfg", "kind_ids", "window", "samples", "cell_batch", "layers",
                                                 "recompute", "mesh", "position_buckets", "sample_blocks"))


def causal_trace(params, cfg, enc, noise: float | None = None, samples: int = 10, window: int = 10,
                 kinds=KINDS, seed: int = 0, cell_batch: int | None = None, layers=None, keys=None,
                 recompute: str = "prefix", mesh=None, sample_blocks: int = 1, position_buckets: int = 8,
                 memory_gb: float | None = None, on_plan=None) -> dict:
    """Causal traces of every encoded prompt.

    ``enc``: ``tokens`` [N, T], ``predict_pos`` [N], ``target`` [N], ``subject_start`` / ``subject_end`` [N]
    (subject tokens are ``[start, end)``). ``noise`` is ν (default :func:`embedding_noise`). Fact n's noise
    comes from ``keys[n]`` (typed PRNG keys [N]; default ``fold_in(key(seed), n)``). ``layers``: the layers
    l whose states are restored (default all; a subset makes a deep model's grid cheaper). Returns numpy
    ``p_clean`` [N], ``p_corrupt`` [N] and ``restored`` [N, kinds, T, K] (mean restored P[o] for the K
    ``layers``); positions after ``predict_pos`` are padding. ``recompute``: ``"prefix"`` or ``"full"`` (module
    docstring; ``cell_batch`` cells in flight). ``mesh``: a ffnkv.sharding mesh whose
    "data" axis splits the (fact, cell, sample block) items; ``sample_blocks`` (dividing ``samples``) cuts
    each cell's samples into that many items (more to split over the mesh; same numbers). ``position_buckets``:
    suffix lengths are multiples of ⌈T / buckets⌉ (fewer programs, a little more recompute). The cells in
    flight come from the memory plan (analysis.plan.tracing_plan: the largest chunk within ``memory_gb``,
    default half the available memory; at most ``cell_batch`` when given), shown to ``on_plan`` before compiling;
    the plan refuses (FfnkvError) when one item does not fit.
    """
    check_prompts(enc, cfg, width_needed=False)
    bad = [k for k in kinds if k not in KINDS]
    if bad or samples < 1 or window < 1 or recompute not in ("prefix", "full") or sample_blocks < 1 \
            or samples % sample_blocks:
        raise FfnkvError(f"tracing needs kinds from {KINDS}, samples ≥ 1 divisible by sample_blocks ≥ 1 and "
                         f"window ≥ 1; got {bad or kinds}, {samples}, {sample_blocks}, {window}.")
    s0, s1 = np.asarray(enc["subject_start"]), np.asarray(enc["subject_end"])
    if ((s0 < 0) | (s1 <= s0) | (s1 > np.asarray(enc["predict_pos"]) + 1)).any():
        raise FfnkvError("every prompt needs a non-empty subject span [start, end) ending at or before "
                         "predict_pos + 1.")
    layers = tuple(range(cfg.n_layers)) if layers is None else tuple(int(l) for l in layers)
    if not layers or min(layers) < 0 or max(layers) >= cfg.n_layers:
        raise FfnkvError(f"tracing layers must be a non-empty subset of 0…{cfg.n_layers - 1}; got {list(layers)}.")
    nu = embedding_noise(params) if noise is None else float(noise)
    N = len(enc["tokens"])
    if keys is None:
        keys = jax.vmap(lambda n: jax.random.fold_in(jax.random.key(seed), n))(jnp.arange(N))
    kind_ids = tuple(KINDS.index(k) for k in kinds)
    T = np.asarray(enc["tokens"]).shape[1]
    arrays = sharding.put_inputs((enc["tokens"], enc["predict_pos"], enc["target"], s0, s1), mesh)
    keys = keys if mesh is None else sharding.put(keys, sharding.replicated(mesh))
    buckets = max(1, int(position_buckets))
    p = tracing_plan(cfg, N, T, kind_ids, layers, int(samples), int(sample_blocks), int(window), recompute, buckets,
                     memory_gb, cell_batch)
    if on_plan is not None:
        on_plan(p)
    out = trace_jit(sharding.put_params(params, mesh), *arrays, keys, jnp.float32(nu), cfg, kind_ids, int(window),
                    int(samples), p.chunk, layers, recompute, mesh, buckets, int(sample_blocks))
    p_clean, p_corrupt, restored = (sharding.fetch(a) for a in out)
    return {"p_clean": p_clean, "p_corrupt": p_corrupt, "restored": restored,
            "kinds": list(kinds), "layers": list(layers), "noise": nu, "samples": samples, "window": window,
            "seed": seed}


def token_categories(subject_start: int, subject_end: int, predict_pos: int) -> dict[str, list[int]]:
    """Positions of Meng et al.'s token categories for one prompt (empty lists where a category is absent).

    first/last subject token; middle = subject tokens strictly between them; first subsequent = the token
    after the subject (if it is not the last token); further = tokens after that and before the last; last =
    the prediction position.
    """
    s0, s1, last = int(subject_start), int(subject_end), int(predict_pos)
    after = [t for t in range(s1, last)]
    return {"first_subject": [s0], "middle_subject": list(range(s0 + 1, s1 - 1)), "last_subject": [s1 - 1],
            "first_subsequent": after[:1], "further": after[1:], "last": [last]}


def mean_ci(values_N, z: float = 1.96):
    """Mean and the half-width of the normal-approximation 95% confidence interval, along axis 0."""
    v = np.asarray(values_N, np.float64)
    n = v.shape[0]
    sd = v.std(0, ddof=1) if n > 1 else np.zeros(v.shape[1:])
    return v.mean(0), z * sd / np.sqrt(max(n, 1)), n


def average_by_category(trace: dict, enc, facts_mask=None, per_fact: bool = False) -> dict:
    """Indirect effects averaged over facts per token category and layer, with 95% CIs (Meng et al. Fig. 2).

    Returns ``{kind: {category: {mean: [K], ci: [K], n}}}`` (K traced layers) plus the average total effect and the
    average clean / corrupted probabilities over the facts kept by ``facts_mask``. ``per_fact``: also each kept
    fact's row under ``facts`` (``[K]``, None where the fact's prompt has no token of the category; the total
    effect a number), aligned across categories: the items of the verdicts' bootstrap intervals.
    """
    keep = np.ones(len(trace["p_clean"]), bool) if facts_mask is None else np.asarray(facts_mask, bool)
    ie = trace["restored"] - trace["p_corrupt"][:, None, None, None]
    out = {"n_facts": int(keep.sum())}
    for k, kind in enumerate(trace["kinds"]):
        per_cat = {c: [] for c in CATEGORIES}
        aligned = {c: [] for c in CATEGORIES}
        for n in np.flatnonzero(keep):
            cats = token_categories(enc["subject_start"][n], enc["subject_end"][n], enc["predict_pos"][n])
            for c, positions in cats.items():
                row = ie[n, k, positions].mean(0) if positions else None
                if positions:
                    per_cat[c].append(row)
                aligned[c].append(None if row is None else np.round(row, 6).tolist())
        out[kind] = {}
        for c, rows in per_cat.items():
            if rows:
                mean, ci, n = mean_ci(np.stack(rows))
                out[kind][c] = {"mean": mean.tolist(), "ci": ci.tolist(), "n": n}
                if per_fact:
                    out[kind][c]["facts"] = aligned[c]
    te = trace["p_clean"][keep] - trace["p_corrupt"][keep]
    for name, v in (("total_effect", te), ("p_clean", trace["p_clean"][keep]), ("p_corrupt", trace["p_corrupt"][keep])):
        mean, ci, n = mean_ci(v[:, None]) if len(v) else (np.zeros(1), np.zeros(1), 0)
        out[name] = {"mean": float(mean[0]), "ci": float(ci[0]), "n": n}
        if per_fact:
            out[name]["facts"] = np.asarray(v, float).tolist()
    return out


def _span_fact(params, item, cfg, nu, samples, layers):
    tokens_T, pos, gold, s0, s1, key = item
    T, L, D = tokens_T.shape[0], cfg.n_layers, cfg.d_model
    subject_T = (jnp.arange(T) >= s0) & (jnp.arange(T) < s1)
    noise_STD = nu * jax.random.normal(key, (samples, T, D)) * subject_T[None, :, None]
    clean = forward(params, tokens_T[None], cfg).acts

    def restored(kind, layer):
        at = (jnp.arange(L) == layer)[:, None, None, None] & subject_T[None, None, :, None]

        def sample(noise_TD):
            hooks = Hooks(embed_add=noise_TD, resid_post_patch_mask=at & (kind == 1),
                          resid_post_patch_value=clean.resid_post, mlp_out_patch_mask=at & (kind == 2),
                          mlp_out_patch_value=clean.mlp_out)
            return gold_prob(params, cfg, tokens_T, pos, gold, hooks)

        return jax.vmap(sample)(noise_STD).mean()

    K = len(layers)
    kind_X, layer_X = jnp.repeat(jnp.arange(3), K), jnp.tile(jnp.asarray(layers), 3)
    p_X = jax.lax.map(lambda c: restored(*c), (kind_X, layer_X)).reshape(3, K)
    return p_X[0, 0], p_X[1:]


@functools.partial(jax.jit, static_argnames=("cfg", "samples", "layers"))
def _span_all(params, tokens_NT, pos_N, gold_N, s0_N, s1_N, keys_N, nu, cfg, samples, layers):
    return jax.lax.map(lambda item: _span_fact(params, item, cfg, nu, samples, layers),
                       (tokens_NT, pos_N, gold_N, s0_N, s1_N, keys_N))


def restore_subject(params, cfg, enc, noise: float | None = None, samples: int = 10, seed: int = 0,
                    layers=None, keys=None) -> dict:
    """Restoring the *whole* subject at once: the clean hidden states (``resid``) or MLP outputs (``mlp``) of
    every subject token at one layer l, in the corrupted run of :func:`causal_trace` (same noise: fact n's
    samples from ``keys[n]``, default ``fold_in(key(seed), n)``). Meng et al. restore one token; a model whose last
    token reads the fact from all subject tokens shows the early site only here. Returns ``p_corrupt`` [N] and
    ``restored`` ``{resid, mlp}`` [N, K] (mean restored P[o]) for the K ``layers`` (default all)."""
    check_prompts(enc, cfg, width_needed=False)
    nu = embedding_noise(params) if noise is None else float(noise)
    if keys is None:
        keys = jax.vmap(lambda n: jax.random.fold_in(jax.random.key(seed), n))(jnp.arange(len(enc["tokens"])))
    arrays = [jnp.asarray(enc[k], jnp.int32)
              for k in ("tokens", "predict_pos", "target", "subject_start", "subject_end")]
    layers = tuple(range(cfg.n_layers)) if layers is None else tuple(int(l) for l in layers)
    p_corrupt, p_KNL = _span_all(params, *arrays, keys, jnp.float32(nu), cfg, int(samples), layers)
    p_corrupt, p_NKL = np.asarray(p_corrupt), np.asarray(p_KNL)
    return {"p_corrupt": p_corrupt, "restored": {"resid": p_NKL[:, 0], "mlp": p_NKL[:, 1]}, "noise": nu}
