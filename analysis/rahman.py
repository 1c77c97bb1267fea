"""The four claims of Rahman et al. (2026) on one model, and our verdict on each.

Runs sparsity (trained and initial parameters), specialisation, the double-dissociation sweep and the
hierarchy analysis on a conditional-computation probe set, then judges the claims with these rules
(ours; the paper gives no thresholds):

1. **Extreme sparsity**: the mean token Gini over FFN layers is ≥ ``GINI_EXTREME`` (0.8) *and* higher than
   at initialisation (training made the code sparser).
2. **Distinct, non-overlapping op groups**: every op has at least one specialist and every pair of ops'
   specialist sets (pooled over layers) has Jaccard ≤ ``JACCARD_MAX`` (0.1).
3. **Double dissociation**: every pair of ops doubly dissociates (``analysis.ablation``) under zero- *and*
   mean-ablation ("partial" when some pair does under some mode).
4. **Generalists route to specialists**: ``analysis.hierarchy`` finds the generalists' drive on later-layer
   specialists above the random-neuron controls (permutation p < 0.05, mean |effect| ≥ 5 %); it fails when no
   generalist precedes a layer with specialists, and is not applicable with < 2 FFN layers.
"""
from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

from analysis import ablation, hierarchy, sparsity, specialisation
from analysis.probe import ffn_coefficients, ffn_layers

GINI_EXTREME = 0.8
JACCARD_MAX = 0.1
NO_FFN = {"applicable": False}


class Study:
    """One model on one probe set; each analysis is computed on first use and cached (they build on each other)."""

    def __init__(self, params, cfg, probe: dict, ops, init_params=None, seed: int = 0,
                 n_random: int = ablation.N_RANDOM, batch_size: int = 8):
        self.params, self.cfg, self.probe, self.ops = params, cfg, probe, tuple(ops)
        self.init_params, self.seed, self.n_random, self.batch_size = init_params, seed, n_random, batch_size
        self.layers = ffn_layers(cfg)
        self._cache: dict = {}

    def _once(self, name, fn):
        if name not in self._cache:
            self._cache[name] = fn()
        return self._cache[name]

    @property
    def coefficients(self):
        """(m ``[L, N, T, F]``, answer logits ``[N, V]``) of the trained model on the probe set."""
        return self._once("coefficients", lambda: ffn_coefficients(self.params, jnp.asarray(self.probe["tokens"]),
                                                                   self.cfg))

    def accuracy(self) -> dict:
        _, logits = self.coefficients
        correct = np.asarray(logits).argmax(-1) == self.probe["target"]
        op = self.probe["op"]
        return {o: float(correct[op == k].mean()) for k, o in enumerate(self.ops)} | {"all": float(correct.mean())}

    def sparsity(self) -> dict:
        def compute():
            if not self.layers:
                return {"trained": {}, "initial": {}}
            out = {"trained": sparsity.model_sparsity(self.params, self.cfg, self.probe["tokens"])}
            if self.init_params is not None:
                out["initial"] = sparsity.model_sparsity(self.init_params, self.cfg, self.probe["tokens"])
            out["rel_threshold"] = sparsity.REL_THRESHOLD
            out["active_rule"] = "m > 0" if self.cfg.ffn == "relu" else f"|m| > {sparsity.REL_THRESHOLD} max|m|"
            return out
        return self._once("sparsity", compute)

    def _specialise(self, m_LNTF):
        return specialisation.specialisation(np.asarray(m_LNTF[:, :, -1]), self.probe["op"], self.ops, self.cfg.ffn,
                                             self.layers)

    def specialisation_arrays(self) -> dict:
        if not self.layers:
            return None
        return self._once("specialisation_arrays", lambda: self._specialise(self.coefficients[0]))

    def specialisation(self) -> dict:
        """The summary of the trained model, with the same summary of the initial parameters as ``initial``."""
        if not self.layers:
            return NO_FFN

        def compute():
            out = specialisation.summary(self.specialisation_arrays(), self.ops)
            if self.init_params is not None:
                m0_LNTF, _ = ffn_coefficients(self.init_params, jnp.asarray(self.probe["tokens"]), self.cfg)
                initial = specialisation.summary(self._specialise(m0_LNTF), self.ops)
                out["initial"] = {k: initial[k] for k in ("n_specialists", "n_generalists", "jaccard", "max_si_mean")}
            return out | {"q_fdr": specialisation.Q_FDR, "si_min": specialisation.SI_MIN,
                          "generalist_min_active": specialisation.GENERALIST_MIN_ACTIVE,
                          "n_probes": int(len(self.probe["op"]))}
        return self._once("specialisation", compute)

    def ablation(self) -> dict:
        if not self.layers:
            return NO_FFN

        def compute():
            m_LNTF, _ = self.coefficients
            mean_LTF = np.asarray(m_LNTF.mean(1))
            return ablation.dissociation(self.params, self.cfg, self.probe, self.ops,
                                         self.specialisation_arrays()["specialist"], mean_LTF, self.n_random, self.seed,
                                         self.batch_size)
        return self._once("ablation", compute)

    def hierarchy(self) -> dict:
        if not self.layers:
            return NO_FFN | {"reason": "the model has no FFN"}
        return self._once("hierarchy", lambda: hierarchy.hierarchy(
            self.params, self.cfg, self.probe, self.ops, self.specialisation_arrays(), self.layers, self.seed,
            batch_size=self.batch_size))

    def claims(self) -> dict:
        return self._once("claims", lambda: judge(self.sparsity(), self.specialisation(), self.ablation(),
                                                  self.hierarchy(), self.ops))


def judge(sparse: dict, spec: dict, abl: dict, hier: dict, ops) -> dict:
    """The verdict on each claim (module docstring) with the numbers it rests on."""
    gini = sparsity.layer_mean(sparse["trained"], "token_gini_mean")
    if gini is None:
        na = {"verdict": "not applicable", "why": "the model has no FFN"}
        return {"sparsity": na, "distinct_groups": na, "double_dissociation": na, "hierarchy": na}
    gini0 = sparsity.layer_mean(sparse.get("initial", {}), "token_gini_mean")
    sparse_ok = gini >= GINI_EXTREME and (gini0 is None or gini > gini0)
    n_spec = {op: sum(spec["n_specialists"][op].values()) for op in ops}
    jac = {pair: row["pooled"] for pair, row in spec["jaccard"].items()}
    max_jac = max((j for j in jac.values() if j is not None), default=None)
    groups_ok = all(n > 0 for n in n_spec.values()) and (max_jac is None or max_jac <= JACCARD_MAX)
    n_spec0 = ({op: sum(spec["initial"]["n_specialists"][op].values()) for op in ops} if "initial" in spec else None)
    pairs = [f"{a}|{b}" for a, b in itertools.combinations(ops, 2)]
    held = {mode: [p for p in pairs if abl[mode]["double_dissociation"][p]] for mode in ablation.MODES}
    n_held = sum(len(v) for v in held.values())
    dd = "holds" if n_held == len(pairs) * len(ablation.MODES) else "partial" if n_held else "fails"
    if hier["applicable"]:
        hv = {"verdict": "holds" if hier["generalists_drive_more_than_chance"] else "fails",
              "generalist_score": hier["generalist_score_mean"], "control_score": hier["control_score_mean"],
              "p_value": hier["p_value"]} | ({"why": hier["reason"]} if "reason" in hier else {})
    else:
        hv = {"verdict": "not applicable", "why": hier["reason"]}
    return {
        "sparsity": {"verdict": "holds" if sparse_ok else "fails", "token_gini": gini, "token_gini_initial": gini0,
                     "active_fraction": sparsity.layer_mean(sparse["trained"], "active_fraction"),
                     "active_fraction_initial": sparsity.layer_mean(sparse.get("initial", {}), "active_fraction")},
        "distinct_groups": {"verdict": "holds" if groups_ok else "fails", "n_specialists": n_spec,
                            "n_specialists_initial": n_spec0,
                            "n_generalists": sum(spec["n_generalists"].values()), "jaccard": jac},
        "double_dissociation": {"verdict": dd, "pairs_holding": held, "pairs": pairs},
        "hierarchy": hv,
    }


def _fmt(x, digits=3):
    return "—" if x is None else f"{x:.{digits}f}"


def summary_markdown(per_kind: dict) -> str:
    """A short report: one row per model (FFN kind), one column per claim, with the numbers behind each verdict.

    ``per_kind`` maps a label (e.g. the FFN kind) to {"claims": judge(...), "accuracy": {...}}.
    """
    lines = ["# Rahman et al. (2026): functional specialisation on our models", "",
             "Verdict rules: `analysis/rahman.py`; measures: "
             "`analysis/{sparsity,specialisation,ablation,hierarchy}.py`.",
             "", "| model | acc | 1 extreme sparsity (token Gini trained / init; active frac) | 2 distinct groups "
             "(#specialists per op (at init); max Jaccard) | 3 double dissociation (pairs zero / mean) "
             "| 4 generalists → specialists (score gen / ctrl; p) |", "|---|---|---|---|---|---|"]
    for label, row in per_kind.items():
        c, acc = row["claims"], row["accuracy"]["all"]
        s, g, d, h = c["sparsity"], c["distinct_groups"], c["double_dissociation"], c["hierarchy"]
        if s["verdict"] == "not applicable":
            lines.append(f"| {label} | {acc:.3f} | n/a (no FFN) | n/a | n/a | n/a |")
            continue
        jac = [j for j in g["jaccard"].values() if j is not None]
        init = g.get("n_specialists_initial") or {}
        spec = ", ".join(f"{op} {n}" + (f" ({init[op]})" if op in init else "") for op, n in g["n_specialists"].items())
        dd = " / ".join(str(len(d["pairs_holding"][m])) for m in ("zero", "mean")) + f" of {len(d['pairs'])}"
        hier = h["why"] if "why" in h else (
            f"{_fmt(h['generalist_score'])} / {_fmt(h['control_score'])}; p={_fmt(h['p_value'], 4)}")
        lines.append(
            f"| {label} | {acc:.3f} | **{s['verdict']}**: {_fmt(s['token_gini'])} / {_fmt(s['token_gini_initial'])}; "
            f"{_fmt(s['active_fraction'])} | **{g['verdict']}**: {spec}; {_fmt(max(jac) if jac else None)} "
            f"| **{d['verdict']}**: {dd} | **{h['verdict']}**: {hier} |")
    return "\n".join(lines) + "\n"
