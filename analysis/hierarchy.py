"""Generalists routing to specialists (Rahman et al. 2026, "generalist neurons route information to
task-specialist sub-circuits").

Protocol (ours; Rahman et al. published none). For each FFN layer l with generalists G_l
(``analysis.specialisation``; at most ``max_generalists``, the most active first) and the specialists S of
every later FFN layer, zero-ablate one neuron n of layer l at a time (every position) and measure the mean
|m| of each specialist s at the answer position on the probes of each op k. The **relative effect** is
``r(n, s, k) = (ā_s,k(ablate n) − ā_s,k) / ā_s,k`` (s with ā_s,k = 0 are skipped), and the **drive** of n on s
is ``−r`` on s's preferred op(s) (the ops it specialises in, averaged): 1 means s goes silent without n.

**Controls**: ``n_control`` random single neurons of the same layer that are neither generalists nor
specialists, ablated the same way. Each ablated neuron gets a score ``e_n = mean_s |r(n, s, pref(s))|``; the
summary compares the generalists' mean score with the controls' by a one-sided permutation test
(``n_perm`` label shuffles). Generalists **drive specialists more than chance** when that p < 0.05, the
generalists' mean score exceeds the controls' and is at least ``MIN_SCORE`` (a 5 % mean relative change:
a significant but negligible effect does not count as routing). With two or more FFN layers but no
generalist before a layer with specialists, there is nothing to route and the claim fails; with fewer than two
FFN layers it is not applicable.
"""
from __future__ import annotations

import numpy as np

from analysis.ablation import padded_sweep, probe_arrays

MAX_GENERALISTS = 64
N_CONTROL = 32
N_PERM = 10000
MIN_SCORE = 0.05


def permutation_greater(x, y, n_perm: int, rng: np.random.Generator) -> float:
    """One-sided permutation p-value of mean(x) > mean(y) (with the +1 correction of Phipson & Smyth 2010)."""
    pooled = np.concatenate([x, y]).astype(np.float64)
    observed = x.mean() - y.mean()
    perms = rng.permuted(np.broadcast_to(pooled, (n_perm, pooled.size)), axis=1)
    diffs = perms[:, : len(x)].mean(1) - perms[:, len(x):].mean(1)
    return float(((diffs >= observed - 1e-12).sum() + 1) / (n_perm + 1))


def relative_effects(mabs_NKLF, base_KLF):
    """``r[n, k, l, f]`` (NaN where the baseline activation is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base_KLF > 0, (mabs_NKLF - base_KLF) / base_KLF, np.nan)


def hierarchy(params, cfg, probe: dict, ops, spec: dict, layers, seed: int = 0, max_generalists: int = MAX_GENERALISTS,
              n_control: int = N_CONTROL, n_perm: int = N_PERM, batch_size: int = 8) -> dict:
    """The generalist → later-specialist drive matrices per source layer, with controls and the verdict.

    Per source layer: ``drive`` [generalist, specialist] (on the specialist's preferred ops),
    ``relative_effect_per_op`` [generalist, specialist, op] (r for every op; 0 where undefined),
    ``control_drive`` likewise for the random controls, and the mean relative effect per op.
    """
    K = len(ops)
    specialist_KLF, generalist_LF = spec["specialist"], spec["generalist"]
    L, F = generalist_LF.shape
    rng = np.random.default_rng(seed)
    rows = [np.zeros((L, F), bool)]
    plan = []
    for l in layers:
        later_LF = specialist_KLF.any(0) & (np.arange(L) > l)[:, None]
        gens = np.flatnonzero(generalist_LF[l])
        if not later_LF.any() or gens.size == 0:
            continue
        gens = gens[np.argsort(-spec["mean"][:, l, gens].mean(0), kind="stable")][:max_generalists]
        pool = np.flatnonzero(~generalist_LF[l] & ~specialist_KLF[:, l].any(0))
        ctrl = rng.choice(pool, size=min(n_control, pool.size), replace=False) if pool.size else np.zeros(0, int)
        plan.append((l, gens, ctrl, later_LF))
        for n in np.concatenate([gens, ctrl]):
            mask = np.zeros((L, F), bool)
            mask[l, n] = True
            rows.append(mask)
    if len(layers) < 2:
        return {"applicable": False, "reason": "fewer than two FFN layers", "layers": {}}
    if not plan:
        return {"applicable": True, "layers": {}, "generalist_score_mean": None, "control_score_mean": None,
                "p_value": None, "generalists_drive_more_than_chance": False,
                "reason": "no generalist has specialists in a later FFN layer"}
    _, mabs_SKLF, _ = padded_sweep(params, *probe_arrays(probe, K), np.zeros((L, probe["tokens"].shape[1], F)),
                                np.stack(rows), np.zeros(len(rows)), cfg, batch_size)
    r_SKLF = relative_effects(mabs_SKLF[1:], mabs_SKLF[0])
    out, start = {}, 0
    gen_scores_all, ctrl_scores_all = [], []
    for l, gens, ctrl, later_LF in plan:
        n_rows = len(gens) + len(ctrl)
        r_NKLF = r_SKLF[start:start + n_rows]
        start += n_rows
        targets = np.argwhere(later_LF)
        pref_KS = specialist_KLF[:, targets[:, 0], targets[:, 1]]
        r_NKS = r_NKLF[:, :, targets[:, 0], targets[:, 1]]
        with np.errstate(invalid="ignore"):
            pref_r_NS = np.nanmean(np.where(pref_KS[None], r_NKS, np.nan), axis=1)
            score_N = np.nanmean(np.abs(pref_r_NS), axis=1)
            per_op = {ops[k]: {"generalists": _nanmean(r_NKS[:len(gens), k][:, pref_KS[k]]),
                               "controls": _nanmean(r_NKS[len(gens):, k][:, pref_KS[k]])} for k in range(K)}
        gen_s, ctrl_s = score_N[:len(gens)], score_N[len(gens):]
        gen_scores_all.append(gen_s)
        ctrl_scores_all.append(ctrl_s)
        out[str(l)] = {
            "generalists": gens.tolist(), "controls": ctrl.tolist(),
            "specialists": [[int(a), int(b)] for a, b in targets],
            "specialist_ops": [[ops[k] for k in np.flatnonzero(pref_KS[:, i])] for i in range(len(targets))],
            "drive": np.nan_to_num(-pref_r_NS[:len(gens)]).tolist(),
            "relative_effect_per_op": np.round(np.nan_to_num(np.moveaxis(r_NKS[:len(gens)], 1, 2)), 4).tolist(),
            "control_drive": np.nan_to_num(-pref_r_NS[len(gens):]).tolist(),
            "mean_relative_effect_per_op": per_op,
            "generalist_score_mean": _nanmean(gen_s), "control_score_mean": _nanmean(ctrl_s),
            "generalist_scores": np.nan_to_num(gen_s).tolist(), "control_scores": np.nan_to_num(ctrl_s).tolist(),
        }
    gen_all = np.nan_to_num(np.concatenate(gen_scores_all))
    ctrl_all = np.nan_to_num(np.concatenate(ctrl_scores_all))
    p = permutation_greater(gen_all, ctrl_all, n_perm, rng) if ctrl_all.size and gen_all.size else None
    holds = bool(p is not None and p < 0.05 and gen_all.mean() > ctrl_all.mean() and gen_all.mean() >= MIN_SCORE)
    return {"applicable": True, "layers": out, "generalist_score_mean": float(gen_all.mean()),
            "control_score_mean": float(ctrl_all.mean()) if ctrl_all.size else None,
            "p_value": p, "generalists_drive_more_than_chance": holds}


def _nanmean(x) -> float | None:
    x = np.asarray(x, np.float64)
    return None if np.isnan(x).all() else float(np.nanmean(x))
