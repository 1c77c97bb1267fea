"""The verdict rules of studies.verdicts on hand-made results: each rule's outcome follows from our own
chance baselines, not from the paper's numbers."""
from __future__ import annotations

import numpy as np
import pytest

from studies import verdicts as V


def _mem(agreement, baseline, sd, zero, zero_shuffled):
    L = len(agreement)
    return {"agreement": {"agreement": agreement, "baseline": baseline, "baseline_sd": sd},
            "composition": {"zero_agreement": zero, "zero_agreement_shuffled": zero_shuffled,
                            "refinement": {"residual": [0.6] * L, "ffn": [0.1] * L, "both": [0.1] * L, "neither": [0.2] * L}},
            "removal": {"last": {"mean_relative_change": [-0.5] * L}, "first": {"mean_relative_change": [-0.1] * L}}}


def test_agreement_needs_to_clear_the_shuffled_baseline_by_two_sd():
    holds = V.geva_memories(_mem([0.01, 0.01, 0.05, 0.06], [0.0, 0.0, 0.01, 0.01], [0.0, 0.0, 0.005, 0.005],
                                 [0.5] * 4, [0.6] * 4), "m")[0]
    assert holds["verdict"] == "holds"
    noisy = V.geva_memories(_mem([0.01, 0.01, 0.05, 0.06], [0.0, 0.0, 0.01, 0.01], [0.0, 0.0, 0.03, 0.03],
                                 [0.5] * 4, [0.6] * 4), "m")[0]
    assert noisy["verdict"] == "fails"
    flat = V.geva_memories(_mem([0.08, 0.08, 0.05, 0.05], [0.0] * 4, [0.001] * 4, [0.5] * 4, [0.6] * 4), "m")[0]
    assert flat["verdict"] == "partial"


def _blocks(zero, chance, n_blocks=32, per_block=100, L=4, seed=0):
    """Blocks of token rows whose zero-agreement counts are binomial around the given rates."""
    rng = np.random.default_rng(seed)
    return {"n": [[per_block] * L] * n_blocks,
            "zero_agreement": rng.binomial(per_block, zero, (n_blocks, L)).tolist(),
            "zero_agreement_shuffled": rng.binomial(per_block, chance, (n_blocks, L)).tolist(),
            "residual": [[60] * L] * n_blocks, "both": [[10] * L] * n_blocks, "ffn": [[10] * L] * n_blocks,
            "neither": [[20] * L] * n_blocks}


@pytest.mark.parametrize("zero, chance, verdict", [(0.30, 0.45, "holds"), (0.45, 0.45, "inconclusive"),
                                                   (0.60, 0.45, "fails")])
def test_zero_agreement_must_be_below_chance_by_its_interval(zero, chance, verdict):
    mem = _mem([0.0] * 4, [0.0] * 4, [0.0] * 4, [zero] * 4, [chance] * 4)
    mem["composition"]["blocks"] = _blocks(zero, chance)
    row = V.geva_memories(mem, "m")[2]
    assert row["verdict"] == verdict
    (t,) = row["tests"]
    assert t["rule"] == "geva.zero_agreement" and t["lo"] <= t["point"] <= t["hi"] and t["n_items"] == 32
    assert "shuffled-values chance level" in row["ours"]


def test_zero_agreement_at_chance_no_longer_holds():
    # the old ratio rule (≥ 0.68 of chance → holds) passed values unrelated to the output (ratio 1)
    mem = _mem([0.0] * 4, [0.0] * 4, [0.0] * 4, [0.5] * 4, [0.5] * 4)
    assert V.geva_memories(mem, "m")[2]["verdict"] == "fails"  # no blocks: point rule, difference 0 is not < 0
    mem["composition"]["blocks"] = _blocks(0.5, 0.5)
    assert V.geva_memories(mem, "m")[2]["verdict"] != "holds"


def test_refinement_by_blocks():
    mem = _mem([0.0] * 4, [0.0] * 4, [0.0] * 4, [0.5] * 4, [0.5] * 4)
    mem["composition"]["blocks"] = _blocks(0.5, 0.5)
    row = V.geva_memories(mem, "m")[3]
    assert row["verdict"] == "holds" and [t["rule"] for t in row["tests"]] == ["geva.refinement", "geva.refinement_ffn"]
    assert row["tests"][0]["point"] == pytest.approx(0.7)


def test_promotion_uses_the_models_uniform_rate():
    promo = {"top_n": 10, "uniform": 0.01, "dominant_fraction": [[0.06], [0.03]], "values_ever_in_top_n": [0.5, 0.5]}
    assert V.geva_promotion(promo, 1000)["verdict"] == "partial"
    assert V.geva_promotion(promo | {"uniform": 0.005}, 1000)["verdict"] == "holds"


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


def _trace(last_subject, ci, further, te):
    row = lambda m, c: {"mean": m, "ci": [c] * len(m)}  # noqa: E731
    return {"config": {"window": 10},
            "known_facts": {"total_effect": {"mean": te},
                            "mlp": {"first_subject": row([0.0, 0.0], 0.01), "last_subject": row(last_subject, ci),
                                    "further": row(further, 0.01), "last": row([0.5, 0.2], 0.05)}}}


def test_meng_early_site_must_beat_later_tokens_and_total_effect():
    assert V.meng_tracing(_trace([0.3, 0.1], 0.05, [0.02, 0.0], 0.8))["verdict"] == "holds"
    assert V.meng_tracing(_trace([0.05, 0.01], 0.01, [0.0, 0.0], 0.8))["verdict"] == "partial"
    assert V.meng_tracing(_trace([0.05, 0.01], 0.01, [0.045, 0.0], 0.8))["verdict"] == "fails"
    assert V.meng_tracing(_trace([0.05, 0.01], 0.06, [0.0, 0.0], 0.8))["verdict"] == "fails"


# editing (Meng et al. 2022, 2023)
def _score(es, ps=None, ns=None, s=None):
    ps, ns, s = es if ps is None else ps, es if ns is None else ns, es if s is None else s
    return {"ES": es, "PS": ps, "NS": ns, "S": s}


def _edit(rome, memit, seq=_score(0.2), ceiling=1.0, base_ns=1.0):
    return {"rome_single": rome, "memit": memit, "rome_sequential": seq, "n_edits": 10, "layer": 1,
            "memit_layers": [0, 1], "delta_check": {"flip_rate": ceiling}, "unedited": _score(0.0, ns=base_ns),
            "memit_lambda_rule": {"lambda": 240.0, "ratio": 0.916, "mean_key_mahalanobis": 262.0}}


def verdicts(edit):
    return [c["verdict"] for c in V.meng_edits(edit)]


def test_meng_edits_rules():
    assert verdicts(_edit(_score(0.95, s=0.9), _score(0.9))) == ["holds", "holds", "holds"]
    assert verdicts(_edit(_score(0.95, 0.3, 1.0, 0.5), _score(0.6))) == ["partial", "partial", "holds"]
    assert verdicts(_edit(_score(0.2), _score(0.1), seq=_score(0.3))) == ["fails", "fails", "fails"]


def test_meng_edits_are_judged_against_our_baselines():
    # a testbed where even an unconstrained δ cannot flip the facts cannot judge ROME
    assert verdicts(_edit(_score(0.1), _score(0.1), ceiling=0.5))[0] == "testbed cannot show"
    # ES 0.85 with a ceiling of 0.9 is at the ceiling (≥ 0.9 × 0.9)
    assert verdicts(_edit(_score(0.85, 0.9, 0.95, 0.9), _score(0.9), ceiling=0.9))[0] == "holds"
    # specificity is relative to the unedited model's own NS
    assert verdicts(_edit(_score(1.0, 1.0, 0.7, 0.9), _score(0.9, ns=0.7), base_ns=1.0))[:2] == ["partial", "partial"]
    assert verdicts(_edit(_score(1.0, 1.0, 0.7, 0.9), _score(0.9, ns=0.7), base_ns=0.8))[:2] == ["holds", "holds"]


def test_meng_edits_without_sequential_or_check():
    edit = _edit(_score(0.95, s=0.85), _score(0.55))
    del edit["rome_sequential"], edit["delta_check"]
    assert verdicts(edit) == ["holds", "partial"]


def _per_edit(es, ps, ns, n=40, seed=0):
    rng = np.random.default_rng(seed)
    draw = lambda p: (rng.uniform(size=n) < p).astype(float).tolist()  # noqa: E731
    per = {"ES": draw(es), "PS": draw(ps), "NS": draw(ns)}
    means = {k: float(np.mean(v)) for k, v in per.items()}
    s = 3 / sum(1 / max(v, 1e-9) for v in means.values())
    return means | {"S": s, "per_edit": per}


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


def test_smollm2_effects_by_medians_when_the_result_carries_per_fact_effects():
    effects = {"x0_own": -0.3, "x0_unrelated": 0.0, "x2_own": 9.0, "x2_unrelated": 0.0}
    vp = {"answer_rank_median": 10.0, "random_answer_rank_median": 500.0}
    facts = [{"neurons": [[0, 1]], "effects": e} for e in _facts(12, x2_own=-0.3)]
    row = V.smollm2({"summary": {"effects_mean": effects}, "facts": facts, "value_projection": vp})[0]
    assert row["verdict"] == "fails" and row["tests"][1]["rule"] == "smollm2.amplify"  # the mean +900% says nothing
    assert row["tests"][0]["n_items"] == 12 and "median" in row["ours"]
