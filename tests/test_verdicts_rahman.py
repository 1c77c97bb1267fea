"""The verdict rules of the Rahman et al. studies (studies/verdicts.py) on hand-made numbers at each boundary."""
import numpy as np
import pytest

from studies import verdicts as V

OPS = ("SUM", "MAX")


def _rahman_inputs(gini=0.9, gini0=0.5, n_spec=(3, 2), both=1, union=40, drop=(0.6, 0.05), ctrl_drop=0.0,
                   gen=0.3, ctrl=0.02, n=64, seed=0):
    """Per-item arrays of one model as the study writes them: per-sequence Gini, pair overlap counts, per-probe
    correctness under ablation (op a's probes drop by ``drop[0]``, the other op's by ``drop[1]``) and per-neuron
    hierarchy scores; every sample is drawn around the given rates."""
    rng = np.random.default_rng(seed)
    seq = lambda g: {"0": {"token_gini_mean": g, "active_fraction": 0.1,
                           "token_gini_sequences": np.clip(rng.normal(g, 0.02, n), 0, 1).tolist()}}
    sparse = {"trained": seq(gini), "initial": seq(gini0)}
    spec = {"n_specialists": {op: {"0": k} for op, k in zip(OPS, n_spec)}, "n_generalists": {"0": 4},
            "jaccard": {"SUM|MAX": {"pooled": both / union}}, "overlap": {"SUM|MAX": {"both": both, "union": union}}}
    op = np.repeat([0, 1], n // 2)
    base = np.ones(n)
    flip = lambda p: (rng.uniform(size=n) < p).astype(float)
    correct = [base - flip(np.where(op == k, drop[0], drop[1])) for k in range(2)]
    ctrl_correct = [base - flip(np.full(n, ctrl_drop)) for _ in range(2)]
    mode = {"correct": [c.tolist() for c in correct], "control_correct": [c.tolist() for c in ctrl_correct]}
    abl = {"probe_op": op.tolist(), "baseline_correct": base.tolist(), "zero": mode, "mean": mode}
    h = {"applicable": True, "generalist_score_mean": gen, "control_score_mean": ctrl, "p_value": None,
         "layers": {"0": {"generalist_scores": rng.exponential(gen, 40).tolist(),
                          "control_scores": rng.exponential(ctrl, 32).tolist()}}}
    return sparse, spec, abl, h, OPS


@pytest.mark.parametrize("changes, claim, verdict", [
    ({}, "sparsity", "holds"),
    ({"gini": 0.7}, "sparsity", "fails"),  # the whole interval below the 0.8 cut
    ({"gini": 0.8}, "sparsity", "inconclusive"),  # straddles the cut
    ({"gini": 0.85, "gini0": 0.9}, "sparsity", "fails"),  # not above initialisation
    ({}, "distinct_groups", "holds"),
    ({"n_spec": (3, 0)}, "distinct_groups", "fails"),  # an op without specialists
    ({"both": 20}, "distinct_groups", "fails"),  # overlapping groups: 0.5 [0.35, 0.65] > 0.1
    ({"both": 4}, "distinct_groups", "inconclusive"),  # 0.1 on the cut
    ({}, "double_dissociation", "holds"),
    ({"drop": (0.6, 0.5)}, "double_dissociation", "fails"),  # ablating a breaks b as much
    ({"drop": (0.25, 0.0)}, "double_dissociation", "inconclusive"),  # the drop straddles MIN_DROP
    ({"ctrl_drop": 0.6}, "double_dissociation", "inconclusive"),  # random sets drop as much: neither side
    ({}, "hierarchy", "holds"),
    ({"gen": 0.02}, "hierarchy", "fails"),  # generalists no stronger than the controls, effect < 0.05
])
def test_rahman_claims_judge_intervals(changes, claim, verdict):
    c = V.rahman_claims(*_rahman_inputs(**changes))[claim]
    assert c["verdict"] == verdict
    assert all(t["lo"] is None or t["lo"] <= t["point"] <= t["hi"] for t in c["tests"])


def test_rahman_claims_over_seeds_judge_one_interval_over_seeds_and_items():
    seeds = [_rahman_inputs(seed=i) for i in range(3)]
    lists = [[x[j] for x in seeds] for j in range(4)]
    claims = V.rahman_claims(*lists, OPS)
    assert {c["verdict"] for c in claims.values()} == {"holds"}
    assert all(t["n_seeds"] == 3 for c in claims.values() for t in c["tests"] if t["statistic"] != "precondition")
    mixed = [_rahman_inputs(seed=0), _rahman_inputs(seed=1, n_spec=(3, 0))]  # one seed without MAX specialists
    claims = V.rahman_claims(*[[x[j] for x in mixed] for j in range(4)], OPS)
    assert claims["distinct_groups"]["verdict"] == claims["double_dissociation"]["verdict"] == "fails"


def test_a_model_without_ffn_is_not_applicable():
    sparse, spec, abl, h, ops = _rahman_inputs()
    claims = V.rahman_claims({"trained": {}, "initial": {}}, spec, abl, h, ops)
    assert {c["verdict"] for c in claims.values()} == {"not applicable"}


def _compare(relu_sum=0.95, none_sum=0.2, none_max=0.9):
    from configs.condcomp import get_config

    acc = lambda s, m: {"accuracy": {"SUM": s, "MAX": m, "MIN": 1.0, "all": (s + m + 1) / 3}}
    return {"config": get_config().to_dict(),
            "kinds": {"relu": acc(relu_sum, 1.0), "gelu": acc(0.97, 1.0), "none": acc(none_sum, none_max)}}


@pytest.mark.parametrize("compare, verdicts", [
    (_compare(none_max=0.3), ("holds", "holds")),  # every op: FFN ≥ 0.9, attention-only < 0.5
    (_compare(), ("holds", "fails")),  # MAX is solved by attention alone
    (_compare(relu_sum=0.89), ("inconclusive", "fails")),  # relu's SUM sits on the 0.9 cut
    (_compare(relu_sum=0.8), ("fails", "fails")),
])
def test_condcomp_rule_per_op(compare, verdicts):
    rows = V.condcomp(compare)
    assert tuple(r["verdict"] for r in rows[:2]) == verdicts
    assert rows[0]["claim"].startswith("SUM") and {t["label"] for t in rows[0]["tests"]} == {"relu", "gelu", "none"}
    assert all(t["n_items"] > 300 for t in rows[0]["tests"])  # the eval sequences of one op


def test_comparison_over_kinds_and_pretrained_check():
    holds = {"claims": V.rahman_claims(*_rahman_inputs())}
    fails = {"claims": V.rahman_claims(*_rahman_inputs(gini=0.5))}
    rows = V.rahman({"relu": holds, "gelu": fails})
    by_claim = {r["claim"]: r for r in rows}
    sparse = by_claim["FFN activations are extremely sparse (token Gini high, above initialisation)"]
    assert sparse["verdict"] == "fails" and sparse["ours"] == "relu holds, gelu fails"  # every kind must hold
    assert {t["label"] for t in sparse["tests"]} == {"relu", "gelu"}
    assert by_claim["distinct, non-overlapping groups of neurons serve distinct ops"]["verdict"] == "holds"
    dd = by_claim["ablating one op's group breaks that op and spares the others"]
    assert [t["label"] for t in dd["tests"]] == ["relu zero SUM>MAX", "relu mean SUM>MAX", "gelu zero SUM>MAX",
                                                 "gelu mean SUM>MAX"]  # one deciding test per kind and mode


def _mini(gini=0.45, gini0=0.6, own=1.0, other=0.1, n=80, seed=0):
    """A MiniLM result with per-sentence Gini and per-word NLLs: each set raises its own class's NLL by ``own``
    and the other class's by ``other`` beyond the random sets'."""
    rng = np.random.default_rng(seed)
    noun = np.arange(n) < n // 2
    rand = 3 + rng.normal(0, 0.3, n)
    mode = {"per_word": {"is_noun": noun.tolist(), "nll_none": (rand - 0.1).tolist(), "nll_random_mean": rand.tolist(),
                         "nll_noun_set": (rand + np.where(noun, own, other) + rng.normal(0, 0.3, n)).tolist(),
                         "nll_verb_set": (rand + np.where(noun, other, own) + rng.normal(0, 0.3, n)).tolist()}}
    return {"sparsity": {"pretrained": {"gini": [gini], "gini_sentences": rng.normal(gini, 0.05, n).tolist()},
                         "initial": {"gini": [gini0], "gini_sentences": rng.normal(gini0, 0.05, n).tolist()}},
            "ablation": {"zero": mode, "mean": mode}}


@pytest.mark.parametrize("mini, verdicts", [
    (_mini(), ("fails", "holds")),  # less sparse than at initialisation; both sets dissociate
    (_mini(gini=0.7, own=0.1, other=0.1), ("holds", "inconclusive")),  # the sets hurt both classes alike
    (_mini(gini=0.6, own=-0.5), ("inconclusive", "fails")),  # the sets hurt their own class less than random
])
def test_pretrained_check_by_intervals_over_sentences_and_words(mini, verdicts):
    rows = V.pos_specialisation(mini)
    assert tuple(r["verdict"] for r in rows) == verdicts
    assert len(rows[1]["tests"]) == 8 and rows[0]["tests"][0]["n_items"] == 80
