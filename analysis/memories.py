"""Feed-forward layers as key-value memories (Geva et al. 2021).

``FF(x) = f(x·K)·V`` (eq. 2): key k_i (column i of W_in) fires on input patterns, value v_i (row i of W_out)
is read as a distribution over the next token, ``p_i = softmax(v_i·E)`` (§4), E the output embedding
(``ffnkv.readout``). Projections are raw ``x·E`` by default, as in the paper; ``final_norm=True`` applies
the model's final norm first (the logit-lens reading of Geva et al. 2022). Implemented here:

* trigger examples (§3): the top-k prefixes of every key by its coefficient m_i at the prefix's last
  position, as a running top-k merged chunk by chunk (bounded memory, never all coefficients at once);
* agreement rate (§4): a value's top token equals the next token of its key's top trigger, per layer,
  against a shuffled-pairing baseline (values permuted within the layer, many permutations) and the uniform 1/V;
* active memories and zero-agreement (§5.1): how many m_i > threshold per position, and how often the FFN
  output's top token differs from the top token of every active memory, beside the same rate for shuffled
  values (the chance level on this model's vocabulary);
* inter-layer refinement (§5.2): does the layer output's top token come from the residual (FFN input),
  the FFN output, both, or neither;
* last-token removal (§3.2): the change of each key's coefficient on its top triggers when the last (or
  the first) token of the prefix is removed: shallow keys depend on the last token, semantic keys do not.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from analysis.stream import stream
from ffnkv import sharding
from ffnkv.errors import FfnkvError
from ffnkv.model import forward
from ffnkv.readout import logit_lens

REFINEMENT = ("residual", "ffn", "both", "neither")


def value_vectors(params, cfg):
    """V ``[L, F, D]``: row i of each layer's W_out is value v_i."""
    if cfg.ffn == "none":
        raise FfnkvError("this model has no FFN (ffn='none'), so it has no keys or values to analyse.")
    return params["blocks"]["ffn"]["W_out"]


@functools.partial(jax.jit, static_argnames=("cfg", "k", "final_norm"))
def value_top_tokens(params, cfg, k: int = 10, final_norm: bool = False):
    """Top-k tokens (ids ``[L,F,k]``, logits ``[L,F,k]``) of every value's projection ``v_i·E`` (§4), layer by layer."""
    V_LFD = value_vectors(params, cfg)
    logits_LFk, ids_LFk = jax.lax.map(lambda v_FD: jax.lax.top_k(logit_lens(params, v_FD, cfg, final_norm), k), V_LFD)
    return ids_LFk, logits_LFk


def value_logits(params, cfg, layer: int, neurons, final_norm: bool = True):
    """``[N, V]`` vocabulary logits of the values ``neurons`` of ``layer`` (Geva et al. 2022, §3: the
    sub-update's direction read through ``ffnkv.readout.logit_lens``)."""
    return logit_lens(params, value_vectors(params, cfg)[layer][jnp.asarray(neurons)], cfg, final_norm)


def token_rank(params, cfg, layer: int, neurons, token: int, final_norm: bool = True):
    """Rank (0 = top) of ``token`` in each value's projection ``[N]``: does the value promote it?"""
    scores_NV = value_logits(params, cfg, layer, neurons, final_norm)
    return (scores_NV > scores_NV[:, token][:, None]).sum(-1)


# ---- trigger examples ----------------------------------------------------------------------------------
def init_topk(cfg, k: int):
    """The empty running top-k: coefficients ``[L,F,k]`` at -inf, flat token indices ``[L,F,k]`` at -1."""
    return (jnp.full((cfg.n_layers, cfg.width, k), -jnp.inf, jnp.float32),
            jnp.full((cfg.n_layers, cfg.width, k), -1, jnp.int32))


def chunk_topk(m_LNF, k: int, block: int = 32):
    """Exact top-k over N of ``m_LNF`` per (layer, key), as ``(values [L,F,k], positions [L,F,k])``.

    Without transposing or sorting all of N: the positions are cut into blocks of ``block``; the top-k
    elements lie in the k blocks with the largest maxima (a block holding one of them has its maximum ≥ the
    k-th largest value, and at most k blocks can), so only those k·block candidates are ranked.
    """
    L, N, F = m_LNF.shape
    pad = -N % block
    m_LNF = jnp.pad(m_LNF, ((0, 0), (0, pad), (0, 0)), constant_values=-jnp.inf)
    G = (N + pad) // block
    blockmax_LFG = jnp.swapaxes(m_LNF.reshape(L, G, block, F).max(2), 1, 2)
    _, blocks_LFb = jax.lax.top_k(blockmax_LFG, min(k, G))
    pos_LFc = (blocks_LFb[..., None] * block + jnp.arange(block)).reshape(L, F, -1)
    cand_LFc = m_LNF[jnp.arange(L)[:, None, None], pos_LFc, jnp.arange(F)[None, :, None]]
    top_LFk, pick = jax.lax.top_k(cand_LFc, k)
    return top_LFk, jnp.take_along_axis(pos_LFc, pick, -1)


def _local_topk(params, offset, rows, first, cfg, k):
    """Top-k coefficients of one device's rows, with flat corpus indices ``offset + row·T + t``."""
    tokens_BT, mask_BT = rows
    m_LBTF = forward(params, tokens_BT, cfg).acts.ffn.astype(jnp.float32)
    L, B, T, F = m_LBTF.shape
    m_LNF = jnp.where(mask_BT.reshape(1, B * T, 1), m_LBTF.reshape(L, B * T, F), -jnp.inf)
    top_LFk, pos_LFk = chunk_topk(m_LNF, k)
    return top_LFk, offset + first * T + pos_LFk.astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("cfg", "k", "mesh"), donate_argnums=(0,))
def trigger_step(state, params, tokens_BT, mask_BT, offset, cfg, k, mesh=None):
    """Merge one chunk into the running top-k; its rows split over the "data" axis of ``mesh``, each device's
    top-k gathered and merged (the top-k of a union is the top-k of the parts' top-ks)."""
    fn = lambda p, off, rows, first: _local_topk(p, off, rows, first, cfg, k)
    top_dLFk, idx_dLFk = sharding.split_gather(fn, (tokens_BT, mask_BT), mesh, (params, offset))
    flat = lambda a: jnp.moveaxis(a, 0, -2).reshape(a.shape[1:3] + (-1,))
    best_LFk, where_LFk = state
    top, pick = jax.lax.top_k(jnp.concatenate([best_LFk, flat(top_dLFk)], -1), k)
    idx = jnp.take_along_axis(jnp.concatenate([where_LFk, flat(idx_dLFk)], -1), pick, -1)
    out = (top, jnp.where(top > -jnp.inf, idx, -1))
    return out if mesh is None else jax.lax.with_sharding_constraint(out, sharding.replicated(mesh))


def trigger_search(params, cfg, tokens_NT, mask_NT=None, k: int = 25, batch_size: int = 32, progress=False,
                   mesh=None):
    """Top-k trigger prefixes of every key (§3): ``coef [L,F,k]`` and flat indices ``n = row·T + t`` ``[L,F,k]``.

    The prefix of index n is ``tokens_NT[row, :t+1]``. Only positions where ``mask_NT`` is true compete.
    ``mesh``: each chunk's rows (tokens) are split over its "data" axis (``batch_size`` rounded up to a
    multiple of it), parameters replicated or FSDP-split on "model".
    """
    value_vectors(params, cfg)
    batch_size = sharding.round_up_rows(batch_size, mesh)
    per_device = batch_size // (1 if mesh is None else mesh.shape["data"])
    if per_device * tokens_NT.shape[1] < k:
        raise FfnkvError(f"k={k} trigger prefixes need chunks of at least k tokens per device; raise batch_size or "
                         "lower k.")
    placed = sharding.put_params(params, mesh)
    state = sharding.put_inputs(init_topk(cfg, k), mesh)
    step = lambda s, tok, mask, off: trigger_step(s, placed, tok, mask, off, cfg, k, mesh)
    coef, index = stream(step, state, tokens_NT, mask_NT, batch_size, progress, mesh)
    return {"coef": coef, "index": index}


# ---- agreement -----------------------------------------------------------------------------------------
def shuffled_values(value_top1_LF, key, n_shuffles: int = 1):
    """``[S, L, F]``: the values' top tokens re-paired with the keys by a random permutation within each layer
    (S permutations): the chance baseline that keeps both marginals (which tokens values promote, which
    tokens follow triggers) and breaks only the pairing."""
    L, F = np.asarray(value_top1_LF).shape
    keys_SL = jax.random.split(key, n_shuffles * L).reshape(n_shuffles, L)
    perm_SLF = np.asarray(jax.vmap(jax.vmap(lambda kk: jax.random.permutation(kk, F)))(keys_SL))
    return np.take_along_axis(np.broadcast_to(np.asarray(value_top1_LF), (n_shuffles, L, F)), perm_SLF, 2)


def agreement(value_top1_LF, trigger_index_LFk, targets_NT, key, n_shuffles: int = 1):
    """Per layer: the fraction of keys whose value's top token is the next token of the key's top trigger (§4).

    ``baseline``: the same with values randomly re-paired to keys within the layer (:func:`shuffled_values`),
    the mean over ``n_shuffles`` pairings, with their standard deviation ``baseline_sd``; ``uniform``: 1/V is
    left to the caller. Keys that never fired (no trigger) are excluded.
    """
    flat = np.asarray(targets_NT).reshape(-1)
    top = np.asarray(trigger_index_LFk)[..., 0]
    valid = top >= 0
    next_LF = np.where(valid, np.asarray(flat[np.where(valid, top, 0).reshape(-1)]).reshape(top.shape), -1)
    shuffled_SLF = shuffled_values(value_top1_LF, key, n_shuffles)
    hit = (np.asarray(value_top1_LF) == next_LF) & valid
    n = np.maximum(valid.sum(1), 1)
    base_SL = ((shuffled_SLF == next_LF) & valid).sum(2) / n
    shuffled_LF = ((shuffled_SLF == next_LF) & valid).mean(0)
    return {"agreement": (hit.sum(1) / n).tolist(), "baseline": base_SL.mean(0).tolist(),
            "baseline_sd": base_SL.std(0).tolist(), "n_shuffles": n_shuffles,
            "n_keys": valid.sum(1).tolist(), "next_token_LF": next_LF,
            # per key (the verdicts' bootstrap items): agrees (1/0; -1: never fired), and its rate over the shuffles
            "per_key": {"hit": np.where(valid, hit, -1).astype(int).tolist(),
                        "shuffled": np.round(shuffled_LF, 4).tolist()}}


# ---- active memories, zero agreement, refinement -------------------------------------------------------
def _top1(params, cfg, x_LBTD, final_norm):
    """Top token of each layer's ``[B,T,D]`` slice, one layer at a time (bounds the ``[B,T,V]`` logits)."""
    return jax.lax.map(lambda x: jnp.argmax(logit_lens(params, x, cfg, final_norm), -1), x_LBTD)


def zero_agreement(active_XF, value_top1_XF, ffn_top1_X):
    """True where the FFN output's top token is the top token of no active memory (Geva et al. 2021, §5.1)."""
    return ~(active_XF & (value_top1_XF == ffn_top1_X[..., None])).any(-1)


def refinement_categories(res_top1_X, ffn_top1_X, out_top1_X):
    """One-hot ``[..., 4]`` in ``REFINEMENT`` order: the output's top token equals the residual's only, the
    FFN's only, both, or neither (Geva et al. 2021, §5.2)."""
    from_res, from_ffn = out_top1_X == res_top1_X, out_top1_X == ffn_top1_X
    return jnp.stack([from_res & ~from_ffn, from_ffn & ~from_res, from_res & from_ffn, ~from_res & ~from_ffn], -1)


@functools.partial(jax.jit, static_argnames=("cfg", "final_norm"), donate_argnums=(0,))
def _composition_step(state, params, value_top1_LF, shuffled_LF, threshold, tokens_BT, mask_BT, offset, cfg,
                      final_norm):
    acts = forward(params, tokens_BT, cfg).acts
    w_1BT = mask_BT[None].astype(jnp.float32)
    active_LBTF = acts.ffn > threshold
    res_LBT = _top1(params, cfg, acts.resid_mid, final_norm)
    ffn_LBT = _top1(params, cfg, acts.mlp_out, final_norm)
    out_LBT = _top1(params, cfg, acts.resid_post, final_norm)
    zero_LBT = zero_agreement(active_LBTF, value_top1_LF[:, None, None, :], ffn_LBT)
    zero_shuffled_LBT = zero_agreement(active_LBTF, shuffled_LF[:, None, None, :], ffn_LBT)
    cat_LBT4 = refinement_categories(res_LBT, ffn_LBT, out_LBT)
    sums = {"n": w_1BT.sum() * jnp.ones(cfg.n_layers), "active": (active_LBTF.sum(-1) * w_1BT).sum((1, 2)),
            "zero_agreement": (zero_LBT * w_1BT).sum((1, 2)),
            "zero_agreement_shuffled": (zero_shuffled_LBT * w_1BT).sum((1, 2)),
            "refinement": (cat_LBT4 * w_1BT[..., None]).sum((1, 2))}
    block = (offset // (tokens_BT.size)) % state["blocks"].shape[0]
    row_L7 = jnp.concatenate([jnp.stack([sums["n"], sums["zero_agreement"], sums["zero_agreement_shuffled"]], -1),
                              sums["refinement"]], -1)
    return {k: state[k] + v for k, v in sums.items()} | {"blocks": state["blocks"].at[block].add(row_L7)}


def composition(params, cfg, tokens_NT, mask_NT=None, final_norm=False, threshold=0.0, batch_size=32, progress=False,
                key=None, n_blocks: int = 64):
    """Active memories, zero-agreement rate (§5.1) and inter-layer refinement categories (§5.2), per layer.

    A memory is active where ``m_i > threshold``. Zero agreement: the FFN output's top token differs from
    the top token of every active memory. ``zero_agreement_shuffled``: the same with the values' top tokens
    re-paired with the keys (:func:`shuffled_values`, one permutation from ``key``): the chance level, which
    depends on the vocabulary size and on how many memories are active. Refinement: the block output's top
    token equals the residual's (the FFN input) only, the FFN output's only, both, or neither (fractions in
    ``REFINEMENT`` order). ``blocks``: the same counts per block of token rows (chunk i goes to block
    i mod ``n_blocks``), the items of the verdicts' bootstrap intervals (rows of one sequence stay together).
    """
    value_top1_LF = value_top_tokens(params, cfg, 1, final_norm)[0][..., 0]
    shuffled_LF = jnp.asarray(shuffled_values(value_top1_LF, jax.random.key(0) if key is None else key)[0])
    L = cfg.n_layers
    state = {"n": jnp.zeros(L), "active": jnp.zeros(L), "zero_agreement": jnp.zeros(L),
             "zero_agreement_shuffled": jnp.zeros(L), "refinement": jnp.zeros((L, 4)),
             "blocks": jnp.zeros((n_blocks, L, 3 + len(REFINEMENT)))}
    step = lambda s, tok, mask, off: _composition_step(s, params, value_top1_LF, shuffled_LF, threshold, tok,
                                                       mask, off, cfg, final_norm)
    sums = stream(step, state, tokens_NT, mask_NT, batch_size, progress)
    n = np.maximum(sums["n"], 1)
    return {"active_mean": (sums["active"] / n).tolist(), "active_fraction": (sums["active"] / n / cfg.width).tolist(),
            "zero_agreement": (sums["zero_agreement"] / n).tolist(),
            "zero_agreement_shuffled": (sums["zero_agreement_shuffled"] / n).tolist(),
            "refinement": {name: (sums["refinement"][:, i] / n).tolist() for i, name in enumerate(REFINEMENT)},
            "n_positions": int(sums["n"][0]),
            "blocks": {name: np.asarray(sums["blocks"][..., i]).tolist() for i, name in
                       enumerate(("n", "zero_agreement", "zero_agreement_shuffled") + REFINEMENT)}}


# ---- removing a token from the trigger prefixes --------------------------------------------------------
def removal_inputs(tokens_NT, index_LFk, protect: int = 0):
    """Rows for "remove last" and "remove first" (the first after ``protect`` leading tokens) of each trigger.

    Returns ``(last_MT, first_MT, pos_M, valid_M)``: prefixes left-aligned in ``[M, T]`` (M = L·F·k), the
    position of the new last token, and whether both variants keep ≥ 1 unprotected token.
    """
    T = tokens_NT.shape[1]
    flat = np.asarray(index_LFk).reshape(-1)
    row, t = np.maximum(flat, 0) // T, np.maximum(flat, 0) % T
    rows = np.asarray(tokens_NT[np.sort(np.unique(row))])
    lookup = np.searchsorted(np.sort(np.unique(row)), row)
    prefix_MT = rows[lookup]
    cols = np.arange(T)[None, :]
    keep = cols < t[:, None]
    last_MT = np.where(keep, prefix_MT, 0).astype(np.int32)
    shifted = np.concatenate([prefix_MT[:, 1:], np.zeros((len(flat), 1), prefix_MT.dtype)], 1)
    first_MT = np.where(cols < protect, prefix_MT, shifted)
    first_MT = np.where(keep, first_MT, 0).astype(np.int32)
    valid = (flat >= 0) & (t - protect >= 1)
    return last_MT, first_MT, np.maximum(t - 1, 0).astype(np.int32), valid


@functools.partial(jax.jit, static_argnames=("cfg",))
def coefficient_at(params, tokens_CT, layer_C, neuron_C, pos_C, cfg):
    """Coefficient m of neuron ``neuron_C[c]`` in layer ``layer_C[c]`` at position ``pos_C[c]`` of row c (one
    forward)."""
    m_LCTF = forward(params, tokens_CT, cfg).acts.ffn.astype(jnp.float32)
    return m_LCTF[layer_C, jnp.arange(tokens_CT.shape[0]), pos_C, neuron_C]


def removal_effect(params, cfg, tokens_NT, triggers: dict, k: int = 5, protect: int = 0, chunk: int = 256):
    """Relative coefficient change ``(m' - m) / |m|`` of each key on its top-``k`` triggers when the last or the
    first token of the prefix is removed (§3.2), averaged per layer, plus the fraction that drop by > 50%."""
    index_LFk = np.asarray(triggers["index"])[..., :k]
    coef_M = np.asarray(triggers["coef"])[..., :k].reshape(-1)
    L, F, kk = index_LFk.shape
    layer_M = np.repeat(np.arange(L), F * kk).astype(np.int32)
    neuron_M = np.tile(np.repeat(np.arange(F), kk), L).astype(np.int32)
    last_MT, first_MT, pos_M, valid_M = removal_inputs(tokens_NT, index_LFk, protect)
    valid_M &= np.abs(coef_M) > 1e-6
    out = {}
    for name, rows_MT in (("last", last_MT), ("first", first_MT)):
        new = []
        for s in range(0, len(rows_MT), chunk):
            sl = slice(s, s + chunk)
            pad = chunk - len(rows_MT[sl])
            args = [np.pad(a[sl], [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in (rows_MT, layer_M, neuron_M, pos_M)]
            new.append(coefficient_at(params, *args, cfg)[: chunk - pad])
        rel_M = (np.concatenate([np.asarray(x) for x in new]) - coef_M) / np.where(valid_M, np.abs(coef_M), 1.0)
        rel_LX = np.where(valid_M, rel_M, 0.0).reshape(L, F * kk)
        n_L = np.maximum(valid_M.reshape(L, -1).sum(1), 1)
        valid_LX = valid_M.reshape(L, -1)
        out[name] = {"mean_relative_change": (rel_LX.sum(1) / n_L).tolist(),
                     "fraction_drop_over_half": (((rel_LX < -0.5) & valid_LX).sum(1) / n_L).tolist(),
                     # per layer, each valid trigger's relative change (the verdicts' bootstrap items)
                     "relative_change": [np.round(rel_LX[l][valid_LX[l]], 4).tolist() for l in range(L)]}
    out["n_valid"] = valid_M.reshape(L, -1).sum(1).tolist()
    return out
