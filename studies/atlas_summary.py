"""The atlas's table: every metric of every kind with a 95% interval over seeds (and facts where a metric has one
value per fact), per-layer curves, the localisation–editing rank correlations, placement, capacity and the
headline rows (``studies.atlas``). Intervals: ``analysis.stats.interval`` (hierarchical bootstrap: seeds, then
items within a seed); every draw of every interval comes from one key, ``jax.random.key(settings.seed)``
folded with the interval's index.
"""
from __future__ import annotations

import warnings

import jax
import numpy as np

from analysis.edit_eval import summarise as edit_summary
from analysis.stats import decide, interval, spearman

N_BOOT = 1000
LOCALISERS = ("tracing", "kn_mass", "necessity")
# the heatmap's columns: metric → (what it is, higher is …)
METRICS = {
    "train_fact_acc": "train-fact accuracy (every seed trained)",
    "paraphrase_acc": "held-out paraphrase accuracy (every seed trained)",
    "gini": "token Gini of |m|, mean over layers",
    "gini_gain": "token Gini trained − at init",
    "agreement_over_chance": "Geva agreement − re-paired chance, mean over layers",
    "zero_below_chance": "zero agreement: chance − measured, mean over layers",
    "kn_per_fact": "knowledge neurons per fact",
    "tracing_peak": "tracing MLP effect at the last subject token, peak layer",
    "necessity_peak": "necessity (drop in p(answer)), peak layer",
    "rome_S_best": "ROME S at the best layer",
    "memit_S_best": "MEMIT S at the best layer",
}
CURVES = ("tracing", "necessity", "kn_mass", "rome_S", "memit_S", "gini", "gini_init", "agreement")


class _Keys:
    def __init__(self, seed: int):
        self.key, self.n = jax.random.key(seed), 0

    def interval(self, items) -> dict | None:
        items = [np.asarray(x, float)[np.isfinite(np.asarray(x, float))] for x in items]
        items = [x for x in items if x.size]
        if not items:
            return None
        self.n += 1
        return interval(items, "mean", jax.random.fold_in(self.key, self.n), N_BOOT)


def _peak(values_LN, layers) -> int:
    return int(layers[int(np.argmax(np.asarray(values_LN)[layers].mean(1)))])


def seed_metrics(m: dict) -> dict:
    """One analysed seed's items per metric (a list of numbers: one per fact, or one for the model)."""
    layers, loc, st, ed = m["layers"], m["localise"], m["structure"], m["edit"]
    mean = lambda key: np.nanmean(np.asarray([st[key][l] for l in layers], float))
    out = {"gini": [mean("gini")], "gini_gain": [mean("gini") - mean("gini_init")],
           "agreement_over_chance": [mean("agreement") - mean("agreement_chance")],
           "zero_below_chance": [mean("zero_agreement_chance") - mean("zero_agreement")],
           "kn_per_fact": np.asarray(loc["kn_count"]).sum(0).tolist(),
           "rome_S_best": [max(ed["rome_S"])], "memit_S_best": [max(ed["memit_S"])]}
    for name in ("tracing", "necessity"):
        out[f"{name}_peak"] = np.asarray(loc[name])[_peak(loc[name], layers)].tolist()
    return out


def curves(m: dict) -> dict:
    """Per FFN layer, one seed's items of each curve of ``CURVES``."""
    layers, loc, st, ed = m["layers"], m["localise"], m["structure"], m["edit"]
    out = {name: [np.asarray(loc[name])[l].tolist() for l in layers] for name in ("tracing", "necessity", "kn_mass")}
    out |= {name: [[v] for v in ed[name]] for name in ("rome_S", "memit_S")}
    out |= {name: [[st[name][l]] for l in layers] for name in ("gini", "gini_init", "agreement")}
    return out


def correlations(m: dict) -> dict:
    """Spearman's ρ of each localiser with edit success: across layers (one ρ vs ROME S, one vs MEMIT S) and
    across facts (one ρ per layer, vs each fact's ROME edit success there). Localisers (and MEMIT) the measure
    dict lacks are left out."""
    layers, loc, ed = m["layers"], m["localise"], m["edit"]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in (n for n in LOCALISERS if n in loc):
            per_layer = np.asarray(loc[name])[layers].mean(1)
            out[f"{name}|layers|rome"] = [spearman(per_layer, ed["rome_S"])]
            if "memit_S" in ed:
                out[f"{name}|layers|memit"] = [spearman(per_layer, ed["memit_S"])]
            out[f"{name}|facts|rome"] = [spearman(np.asarray(loc[name])[l], ed["edit_score"][i])
                                         for i, l in enumerate(layers)]
    return out


def resample_facts(m: dict, idx_N) -> dict:
    """The measure dict of one model on the facts ``idx_N`` (a bootstrap draw, repeats allowed): the localisers'
    columns and edit successes of those facts, ROME S per layer recomputed from their ES/PS/NS
    (``analysis.edit_eval.summarise``)."""
    idx_N = np.asarray(idx_N)
    loc = {k: np.asarray(v, float)[:, idx_N] for k, v in m["localise"].items() if k in LOCALISERS}
    per = m["edit"]["rome_per_edit"]
    ed = {"rome_S": [edit_summary({k: np.asarray(p[k], float)[idx_N] for k in ("ES", "PS", "NS")})["S"] for p in per],
          "edit_score": [np.asarray(e, float)[idx_N] for e in m["edit"]["edit_score"]]}
    return {"layers": m["layers"], "localise": loc, "edit": ed}


def fact_intervals(m: dict, key, n_boot: int = N_BOOT, level: float = 0.95) -> dict:
    """Each ρ of :func:`correlations` (across facts: the mean of the per-layer ρs) on one model, with its
    ``level`` percentile interval from ``n_boot`` bootstrap draws of the facts (Efron & Tibshirani 1993 §13:
    the facts resampled with replacement, every ρ recomputed on the draw) and the verdict ρ > 0
    (``analysis.stats.decide``). ``analysis.stats.interval`` resamples items of a fixed statistic; a rank
    correlation of resampled facts is not one, hence this loop. Draws where ρ is undefined (a constant side)
    are left out and counted."""
    n = len(m["edit"]["edit_score"][0])
    idx_BN = np.random.default_rng(np.asarray(jax.random.key_data(key)).tolist()).integers(0, n, (n_boot, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agg = lambda rho: {k: float(np.nanmean(v)) if np.isfinite(v).any() else np.nan for k, v in rho.items()}
        point = agg(correlations(m))
        draws = [agg(correlations(resample_facts(m, idx))) for idx in idx_BN]
    alpha = (1.0 - level) / 2
    out = {}
    for k, p in point.items():
        d = np.asarray([x[k] for x in draws], float)
        d = d[np.isfinite(d)]
        if not np.isfinite(p) or not d.size:
            out[k] = None
            continue
        lo, hi = (float(q) for q in np.quantile(d, [alpha, 1.0 - alpha]))
        out[k] = {"statistic": "spearman", "point": p, "lo": lo, "hi": hi, "level": level, "n_items": n,
                  "n_boot": n_boot, "n_undefined": int(n_boot - d.size), "verdict": decide(lo, hi, 0.0, ">")}
    return out


def _collect(seeds: list[dict], fn) -> dict:
    got = [fn(m) for m in seeds]
    return {k: [g[k] for g in got] for k in (got[0] if got else {})}


def kind_summary(cell: dict, keys: _Keys) -> dict:
    seeds = cell["seeds"]
    row = {"kind": cell["kind"], "depth": cell["depth"], "d_ff": cell["d_ff"], "steps": cell["steps"],
           "stopped": cell["stopped"], "n_seeds": len(cell["train_fact_acc"]), "n_analysed": len(seeds),
           "below_target": [i for i, ok in enumerate(cell["reached"]) if not ok]}
    metrics = {k: keys.interval([[a] for a in cell[k]]) for k in ("train_fact_acc", "paraphrase_acc")}
    metrics |= {k: keys.interval(v) for k, v in _collect(seeds, seed_metrics).items()}
    row["metrics"] = metrics
    layers = seeds[0]["layers"] if seeds else []
    row["layers"] = layers
    row["curves"] = {name: [keys.interval([c[i] for c in items]) for i in range(len(layers))]
                     for name, items in _collect(seeds, curves).items()}
    row["peak_layers"] = {name: [_peak(m["localise"][name], m["layers"]) for m in seeds] for name in LOCALISERS}
    row["peak_layers"]["rome"] = [m["layers"][int(np.argmax(m["edit"]["rome_S"]))] for m in seeds]
    corr = _collect(seeds, correlations)
    row["correlations"] = {k: keys.interval(v) for k, v in corr.items()}
    row["_rho"] = corr
    return row


def _best(rows: dict, metric: str, sign: float = 1.0) -> dict | None:
    scored = [(sign * r["metrics"][metric]["point"], k) for k, r in rows.items() if r["metrics"].get(metric)]
    if not scored:
        return None
    kind = max(scored)[1]
    return {"kind": kind, "metric": metric} | rows[kind]["metrics"][metric]


def summarise(result: dict, s) -> dict:
    """The table of the module docstring from ``studies.atlas.run``'s raw result."""
    keys = _Keys(s.seed)
    rows = {name: kind_summary(cell, keys) for name, cell in result["kinds"].items()}
    pooled = {}
    for name in {k for r in rows.values() for k in r["_rho"]}:
        items = [rho for r in rows.values() for rho in r["_rho"].get(name, [])]
        iv = keys.interval(items)
        pooled[name] = None if iv is None else iv | {"verdict": decide(iv["lo"], iv["hi"], 0.0, ">")}
    for r in rows.values():
        r.pop("_rho")
    acc = lambda cell: keys.interval([[a] for a in cell["train_fact_acc"]])
    placement = {k: {"train_fact_acc": acc(c), "steps": c["steps"], "d_ff": c["d_ff"]}
                 for k, c in result["placement"].items()}
    depth = s.depths[0]
    none = result["kinds"].get(f"none@{depth}")
    capacity = {n: {"train_fact_acc": acc(c), "steps": c["steps"]} for n, c in result["capacity"].items()}
    if none is not None:
        capacity[str(s.n_entities * s.n_relations)] = {"train_fact_acc": acc(none), "steps": none["steps"]}
    capacity = dict(sorted(capacity.items(), key=lambda kv: int(kv[0])))
    analysed = {k: r for k, r in rows.items() if r["n_analysed"]}
    headline = {"most_editable": _best(analysed, "rome_S_best"), "most_editable_memit": _best(analysed, "memit_S_best"),
                "sparsest": _best(analysed, "gini"), "most_localisable_tracing": _best(analysed, "tracing_peak"),
                "most_localisable_necessity": _best(analysed, "necessity_peak"),
                "localisation_predicts_editing": {k: pooled.get(k) for k in
                                                  (f"{n}|{a}|rome" for n in LOCALISERS for a in ("layers", "facts"))}}
    return {"rows": rows, "correlations_pooled": pooled, "placement": placement, "capacity": capacity,
            "headline": headline, "metrics": METRICS}
