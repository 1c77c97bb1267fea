"""The verdict rules of studies.verdicts on hand-made results: each rule's outcome follows from our own
chance baselines, not from the paper's numbers."""
from __future__ import annotations

import numpy as np
import pytest

from studies import verdicts as V


def _blocks(zero, chance, n_blocks=32, per_block=100, L=4, seed=0):
    """Blocks of token rows whose zero-agreement counts are binomial around the given rates."""
    rng = np.random.default_rng(seed)
    return {"n": [[per_block] * L] * n_blocks,
            "zero_agreement": rng.binomial(per_block, zero, (n_blocks, L)).tolist(),
            "zero_agreement_shuffled": rng.binomial(per_block, chance, (n_blocks, L)).tolist(),
            "residual": [[60] * L] * n_blocks, "both": [[10] * L] * n_blocks, "ffn": [[10] * L] * n_blocks,
            "neither": [[20] * L] * n_blocks}


def _mem(agreement=(0.01, 0.01, 0.1, 0.1), chance=0.01, zero=0.5, zero_chance=0.6, removal_last=(0.5, 0.1),
         removal_first=(0.1, 0.5), F=200, seed=0):
    """A memories result with the per-item arrays the study writes: per-key agreement (0/1) and shuffled rate
    around the given rates per layer, each trigger's relative change without the last / first token (|change|
    around the given first- and last-layer values), blocks of token rows."""
    rng = np.random.default_rng(seed)
    L = len(agreement)
    hit = [(rng.uniform(size=F) < a).astype(int).tolist() for a in agreement]
    removal = {name: {"mean_relative_change": np.linspace(-a, -b, L).tolist(),
                      "relative_change": [(-np.abs(rng.normal(m, 0.05, 100))).tolist() for m in np.linspace(a, b, L)]}
               for name, (a, b) in (("last", removal_last), ("first", removal_first))}
    return {"agreement": {"agreement": list(agreement), "baseline": [chance] * L, "baseline_sd": [0.005] * L,
                          "per_key": {"hit": hit, "shuffled": [[chance] * F] * L}},
            "composition": {"zero_agreement": [zero] * L, "zero_agreement_shuffled": [zero_chance] * L,
                            "refinement": {"residual": [0.6] * L, "ffn": [0.1] * L, "both": [0.1] * L,
                                           "neither": [0.2] * L},
                            "blocks": _blocks(zero, zero_chance, L=L, seed=seed)},
            "removal": removal}


@pytest.mark.parametrize("changes, verdict", [
    ({}, "holds"),
    ({"agreement": (0.01, 0.01, 0.01, 0.01)}, "inconclusive"),  # at chance: neither above nor below
    ({"agreement": (0.0, 0.0, 0.0, 0.0), "chance": 0.05}, "fails"),  # below chance
    ({"agreement": (0.12, 0.12, 0.1, 0.1)}, "fails"),  # beyond chance but not more in the upper layers
    ({"agreement": (0.01, 0.01, 0.015, 0.015)}, "inconclusive"),  # the upper half barely above chance
])
def test_agreement_per_key_against_chance_and_lower_layers(changes, verdict):
    row = V.geva_memories(_mem(**changes), "m")[0]
    assert row["verdict"] == verdict
    assert [t["rule"] for t in row["tests"]] == ["geva.agreement", "geva.agreement_upper"]
    assert row["tests"][0]["n_items"] == 400  # the upper half's fired keys


@pytest.mark.parametrize("changes, verdict", [
    ({}, "holds"),  # the last token matters less in the last layer, the first token more
    ({"removal_last": (0.1, 0.5)}, "fails"),  # the last token matters more in the last layer
    ({"removal_first": (0.3, 0.3)}, "inconclusive"),  # no trend for the first token
])
def test_removal_trends_by_medians_over_triggers(changes, verdict):
    row = V.geva_memories(_mem(**changes), "m")[1]
    assert row["verdict"] == verdict and row["tests"][0]["statistic"] == "difference_of_medians"


def test_removal_median_is_not_dominated_by_one_trigger():
    mem = _mem()
    mem["removal"]["last"]["relative_change"][-1][0] = -1e6  # one key with |m| ≈ 0 before the removal
    assert V.geva_memories(mem, "m")[1]["verdict"] == "holds"


@pytest.mark.parametrize("zero, chance, verdict", [(0.30, 0.45, "holds"), (0.45, 0.45, "inconclusive"),
                                                   (0.60, 0.45, "fails")])
def test_zero_agreement_must_be_below_chance_by_its_interval(zero, chance, verdict):
    row = V.geva_memories(_mem(zero=zero, zero_chance=chance), "m")[2]
    assert row["verdict"] == verdict
    (t,) = row["tests"]
    assert t["rule"] == "geva.zero_agreement" and t["lo"] <= t["point"] <= t["hi"] and t["n_items"] == 32
    assert "shuffled-values chance level" in row["ours"]


def test_zero_agreement_at_chance_no_longer_holds():
    # the old ratio rule (≥ 0.68 of chance → holds) passed values unrelated to the output (ratio 1)
    assert V.geva_memories(_mem(zero=0.5, zero_chance=0.5), "m")[2]["verdict"] != "holds"


def test_refinement_by_blocks():
    row = V.geva_memories(_mem(zero=0.5, zero_chance=0.5), "m")[3]
    assert row["verdict"] == "holds" and [t["rule"] for t in row["tests"]] == ["geva.refinement", "geva.refinement_ffn"]
    assert row["tests"][0]["point"] == pytest.approx(0.7)


def _promo(rates, uniform=0.01, n_blocks=32, per_block=200, seed=0):
    rng = np.random.default_rng(seed)
    return {"top_n": 10, "uniform": uniform, "dominant_fraction": [[r] for r in rates],
            "values_ever_in_top_n": [0.5] * len(rates),
            "blocks": {"n": [per_block] * n_blocks,
                       "top1": np.stack([rng.binomial(per_block, r, n_blocks) for r in rates], 1).tolist()}}


@pytest.mark.parametrize("rates, verdict",
                         [((0.2, 0.1), "holds"), ((0.2, 0.02), "fails"), ((0.2, 0.05), "inconclusive")])
def test_promotion_every_layer_against_the_models_uniform_rate(rates, verdict):
    row = V.geva_promotion(_promo(rates), 1000)
    assert row["verdict"] == verdict and [t["label"] for t in row["tests"]] == ["layer 0", "layer 1"]
    assert row["tests"][0]["cut"] == pytest.approx(0.05)  # 5 × top-n / F


def _attr(per_fact, layer_counts=(1, 1, 1, 1), neurons=None):
    """An attribution result: per-fact effects (a list of dicts), each fact's neurons (default: one per layer in
    turn)."""
    neurons = neurons or [[[k % 4, 0]] for k in range(len(per_fact))]
    return {"summary": {"layer_counts": list(layer_counts), "mean_neurons_per_fact": 1.0,
                        "effects_median": {k: float(np.median([f[k] for f in per_fact])) for k in per_fact[0]},
                        "layer_baselines": {"neuron_count": [0.25] * 4, "attribution_mass": [0.25] * 4}},
            "facts": [{"neurons": n, "effects": e} for n, e in zip(neurons, per_fact)]}


def _facts(n=40, seed=0, **shift):
    """Per-fact effects: own ×0 / ×2 around −40% / +50%, controls near 0; ``shift`` moves one column."""
    rng = np.random.default_rng(seed)
    centre = {"x0_own": -0.4, "x2_own": 0.5, "x0_unrelated": -0.01, "x2_unrelated": 0.01, "x0_random": -0.02,
              "x2_random": 0.02} | shift
    return [{k: float(c + 0.1 * rng.normal()) for k, c in centre.items()} for _ in range(n)]


def test_dai_effects_by_medians_against_both_controls():
    good = V.dai(_attr(_facts()), 4)[0]
    assert good["verdict"] == "holds"
    assert {t["rule"] for t in good["tests"]} == {"dai.suppress", "dai.amplify", "dai.suppress_vs_random",
                                                 "dai.amplify_vs_random", "dai.suppress_vs_unrelated",
                                                 "dai.amplify_vs_unrelated"}
    assert V.dai(_attr(_facts(x0_random=-0.4, x2_random=0.5)), 4)[0]["verdict"] != "holds"  # random as strong
    assert V.dai(_attr(_facts(x0_random=-0.8, x2_random=0.9)), 4)[0]["verdict"] == "fails"  # random stronger
    assert V.dai(_attr(_facts(x0_own=0.3)), 4)[0]["verdict"] == "fails"  # wrong sign


def test_dai_median_is_not_dominated_by_one_fact():
    facts = _facts(x2_own=0.02, x2_random=0.0, x2_unrelated=0.0)
    facts[0]["x2_own"] = 400.0  # one fact's +40000% would carry a mean
    amplify = next(t for t in V.dai(_attr(facts), 4)[0]["tests"] if t["rule"] == "dai.amplify")
    assert amplify["point"] < 0.2


def test_dai_layers_pool_each_facts_neurons():
    facts = _facts()
    upper = [[[2, 0], [3, 1]] for _ in facts]
    assert V.dai(_attr(facts, (0, 0, 40, 40), upper), 4)[1]["verdict"] == "holds"
    lower = [[[0, 0], [1, 1]] for _ in facts]
    assert V.dai(_attr(facts, (40, 40, 0, 0), lower), 4)[1]["verdict"] == "fails"
    mixed = [[[0, 0]] if k % 2 else [[3, 0]] for k in range(len(facts))]
    assert V.dai(_attr(facts, (20, 0, 0, 20), mixed), 4)[1]["verdict"] == "inconclusive"


def test_dai_accepts_one_result_per_seed():
    rows = V.dai([_attr(_facts(seed=s)) for s in range(3)], 4)
    assert rows[0]["n_seeds"] == 3 and rows[0]["tests"][0]["n_items"] == 120


def _trace(last_subject, further, te, n=60, sd=0.05, seed=0):
    """A tracing result with per-fact MLP effects around the given per-layer means (and the total effect)."""
    rng = np.random.default_rng(seed)

    def row(means):
        facts = np.asarray(means) + sd * rng.normal(size=(n, len(means)))
        return {"mean": facts.mean(0).tolist(), "ci": [0.0] * len(means), "facts": facts.tolist()}

    ls = row(last_subject)
    fu = row(further)
    fu["facts"][0] = None  # a prompt whose subject ends right before the last token has no "further" token
    return {"config": {"window": 10},
            "known_facts": {"total_effect": {"mean": te, "facts": (te + sd * rng.normal(size=n)).tolist()},
                            "mlp": {"first_subject": row([0.0, 0.0]), "last_subject": ls, "further": fu,
                                    "last": row([0.5, 0.2])}}}


@pytest.mark.parametrize("trace, verdict", [
    (_trace([0.3, 0.1], [0.02, 0.0], 0.8), "holds"),
    (_trace([0.05, 0.01], [0.0, 0.0], 0.8), "fails"),  # the early site, but 6% of the total effect
    (_trace([0.05, 0.01], [0.15, 0.0], 0.3), "fails"),  # a later token's MLP is stronger
    (_trace([0.05, 0.01], [0.05, 0.0], 0.3), "inconclusive"),  # as strong as a later token's
])
def test_meng_early_site_by_paired_facts_and_share(trace, verdict):
    row = V.meng_tracing(trace)
    assert row["verdict"] == verdict
    site, share = row["tests"]
    assert site["rule"] == "meng.early_site" and site["n_items"] == 59  # one fact lacks the rival category
    assert share["rule"] == "meng.early_site_share" and share["n_items"] == 60


# editing (Meng et al. 2022, 2023)
def _score(es, ps=None, ns=None, s=None):
    ps, ns, s = es if ps is None else ps, es if ns is None else ns, es if s is None else s
    return {"ES": es, "PS": ps, "NS": ns, "S": s}


def _edit(rome, memit, seq=None, ceiling=1.0, base_ns=1.0):
    seq = _per_edit(0.2, 0.2, 0.2) if seq is None else seq
    return {"rome_single": rome, "memit": memit, "rome_sequential": seq, "n_edits": 10, "layer": 1,
            "memit_layers": [0, 1], "delta_check": {"flip_rate": ceiling}, "unedited": _score(0.0, ns=base_ns),
            "memit_lambda_rule": {"lambda": 240.0, "ratio": 0.916, "mean_key_mahalanobis": 262.0}}


def verdicts(edit):
    return [c["verdict"] for c in V.meng_edits(edit)]


def _per_edit(es, ps, ns, n=40, seed=0):
    rng = np.random.default_rng(seed)
    draw = lambda p: (rng.uniform(size=n) < p).astype(float).tolist()
    per = {"ES": draw(es), "PS": draw(ps), "NS": draw(ns)}
    means = {k: float(np.mean(v)) for k, v in per.items()}
    s = 3 / sum(1 / max(v, 1e-9) for v in means.values())
    return means | {"S": s, "per_edit": per}


def test_meng_edits_are_judged_against_our_baselines():
    # a testbed where even an unconstrained δ cannot flip the facts cannot judge ROME
    assert verdicts(_edit(_per_edit(0.1, 0.1, 0.1), _per_edit(0.1, 0.1, 0.1), ceiling=0.5))[0] == "testbed cannot show"
    # ES 0.88 with a ceiling of 0.9 clears 0.9 × 0.9
    assert verdicts(_edit(_per_edit(0.88, 0.95, 0.95, n=400), _per_edit(0.9, 0.9, 0.9), ceiling=0.9))[0] == "holds"
    # specificity is relative to the unedited model's own NS
    edit = lambda base_ns: _edit(_per_edit(1.0, 1.0, 0.7, n=400), _per_edit(1.0, 1.0, 0.7, n=400, seed=1),
                                 _per_edit(0.2, 0.2, 0.2, n=400), base_ns=base_ns)
    assert verdicts(edit(1.0))[:2] == ["fails", "fails"]
    assert verdicts(edit(0.8))[:2] == ["holds", "holds"]


def test_meng_edits_without_sequential_or_check():
    edit = _edit(_per_edit(1.0, 0.95, 0.95), _per_edit(0.98, 0.95, 0.95))
    del edit["rome_sequential"], edit["delta_check"]
    assert verdicts(edit) == ["holds", "holds"]


def test_meng_edits_by_intervals_over_edits():
    edit = _edit(_per_edit(1.0, 0.95, 0.95), _per_edit(0.98, 0.95, 0.95), seq=_per_edit(0.3, 0.3, 0.3))
    assert verdicts(edit) == ["holds", "holds", "holds"]
    # S ≈ 0.8 sits on the cut: the interval straddles it
    edit = _edit(_per_edit(1.0, 0.95, 0.95), _per_edit(0.8, 0.8, 0.8, n=32), seq=_per_edit(0.8, 0.8, 0.8, n=32, seed=1))
    rows = V.meng_edits(edit)
    assert rows[1]["verdict"] == "inconclusive" and rows[2]["verdict"] == "inconclusive"
    assert "[" in rows[1]["ours"]  # S with its interval
    edit = _edit(_per_edit(1.0, 0.95, 0.95), _per_edit(0.3, 0.2, 0.9), seq=_per_edit(0.9, 0.9, 0.9))
    assert verdicts(edit)[1:] == ["fails", "fails"]


def _ranks(gold, rand, n=30, seed=0):
    """A value projection (the knowledge study's): answer ranks of n knowledge neurons and 10 n random ones
    around the given medians."""
    rng = np.random.default_rng(seed)
    g, r = rng.poisson(gold, n), rng.poisson(rand, 10 * n)
    return {"answer_rank_median": float(np.median(g)), "random_answer_rank_median": float(np.median(r)),
            "neurons": [{"answer_rank": int(x)} for x in g], "random_answer_ranks": r.tolist()}


@pytest.mark.parametrize("gold, rand, verdict", [(10, 500, "holds"), (500, 10, "fails"), (100, 100, "inconclusive")])
def test_smollm2_value_rank_by_its_interval_over_neurons(gold, rand, verdict):
    effects = {"x0_own": -0.3, "x0_unrelated": 0.0, "x2_own": 0.3, "x2_unrelated": 0.0}
    facts = [{"neurons": [[0, 1]], "effects": e} for e in _facts(12)]
    row = V.smollm2({"summary": {"effects_mean": effects}, "facts": facts, "value_projection": _ranks(gold, rand)})[1]
    assert row["verdict"] == verdict and row["tests"][0]["rule"] == "smollm2.value_rank"
    assert row["tests"][0]["n_items"] == 330


def test_smollm2_effects_by_medians_when_the_result_carries_per_fact_effects():
    effects = {"x0_own": -0.3, "x0_unrelated": 0.0, "x2_own": 9.0, "x2_unrelated": 0.0}
    vp = _ranks(10, 500)
    facts = [{"neurons": [[0, 1]], "effects": e} for e in _facts(12, x2_own=-0.3)]
    row = V.smollm2({"summary": {"effects_mean": effects}, "facts": facts, "value_projection": vp})[0]
    assert row["verdict"] == "fails" and row["tests"][1]["rule"] == "smollm2.amplify"  # the mean +900% says nothing
    assert row["tests"][0]["n_items"] == 12 and "median" in row["ours"]


def _kind(es, ps, ns, n=60, seed=0, seeds=1):
    """One FFN kind of the atlas: its ROME per-edit scores at the best layer, one per seed."""
    return [_per_edit(es, ps, ns, n=n, seed=seed + 10 * i)["per_edit"] for i in range(seeds)]


@pytest.mark.parametrize("kinds, verdict", [
    ({"relu": _kind(0.95, 0.9, 0.9), "gelu": _kind(0.5, 0.4, 0.9, seed=1)}, "holds"),  # relu clearly best
    ({"relu": _kind(0.9, 0.9, 0.9), "gelu": _kind(0.9, 0.88, 0.9, seed=1)}, "inconclusive"),  # a tie
])
def test_editability_best_by_its_difference_to_the_runner_up(kinds, verdict):
    row = V.editability(kinds | {"swiglu": _kind(0.2, 0.2, 0.9, seed=2)})
    (t,) = row["tests"]
    assert row["verdict"] == verdict and t["rule"] == "editability.best" and t["n_items"] == 120
    assert t["label"].startswith(row["claim"].split(" is ")[1].split(" ")[0])  # the best kind, then the runner-up


def test_editability_best_over_seeds():
    row = V.editability({"relu": _kind(0.95, 0.9, 0.9, seeds=3), "gelu": _kind(0.5, 0.4, 0.9, seed=1, seeds=3)})
    assert row["verdict"] == "holds" and row["n_seeds"] == 3


def test_editability_needs_two_edited_kinds():
    assert V.editability({"relu": _kind(0.9, 0.9, 0.9), "none": []})["verdict"] == "not applicable"


def test_one_item_decides_nothing():
    assert V.judge("rahman.hierarchy_effect", np.array([0.01]))["verdict"] == "inconclusive"  # would be "fails"
    assert V.judge("rahman.hierarchy_effect", np.array([0.01, 0.02]))["verdict"] == "fails"
