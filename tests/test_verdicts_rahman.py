"""The verdict rules of the Rahman et al. studies (studies/verdicts.py) on hand-made numbers at each boundary."""
import pytest

from studies import verdicts as V

OPS = ("SUM", "MAX")


def _rahman_inputs(gini=0.9, gini0=0.5, n_spec=(3, 2), jaccard=0.05, dd_zero=True, dd_mean=True, hier=True):
    sparse = {"trained": {"0": {"token_gini_mean": gini, "active_fraction": 0.1}},
              "initial": {"0": {"token_gini_mean": gini0, "active_fraction": 0.5}}}
    spec = {"n_specialists": {op: {"0": n} for op, n in zip(OPS, n_spec)}, "n_generalists": {"0": 4},
            "jaccard": {"SUM|MAX": {"pooled": jaccard}}}
    abl = {"zero": {"double_dissociation": {"SUM|MAX": dd_zero}}, "mean": {"double_dissociation": {"SUM|MAX": dd_mean}}}
    h = {"applicable": True, "generalists_drive_more_than_chance": hier, "generalist_score_mean": 0.2,
         "control_score_mean": 0.01, "p_value": 0.01}
    return sparse, spec, abl, h, OPS


@pytest.mark.parametrize("changes, claim, verdict", [
    ({}, "sparsity", "holds"),
    ({"gini": 0.79}, "sparsity", "fails"),  # below GINI_EXTREME
    ({"gini": 0.85, "gini0": 0.9}, "sparsity", "fails"),  # not above initialisation
    ({}, "distinct_groups", "holds"),
    ({"n_spec": (3, 0)}, "distinct_groups", "fails"),  # an op without specialists
    ({"jaccard": 0.11}, "distinct_groups", "fails"),  # overlapping groups
    ({}, "double_dissociation", "holds"),
    ({"dd_mean": False}, "double_dissociation", "partial"),
    ({"dd_zero": False, "dd_mean": False}, "double_dissociation", "fails"),
    ({"hier": False}, "hierarchy", "fails"),
])
def test_rahman_claims_at_their_boundaries(changes, claim, verdict):
    assert V.rahman_claims(*_rahman_inputs(**changes))[claim]["verdict"] == verdict


def test_a_model_without_ffn_is_not_applicable():
    sparse, spec, abl, h, ops = _rahman_inputs()
    claims = V.rahman_claims({"trained": {}, "initial": {}}, spec, abl, h, ops)
    assert {c["verdict"] for c in claims.values()} == {"not applicable"}


def _compare(relu_sum=0.95, none_sum=0.2, none_max=0.9):
    from configs.condcomp import get_config

    acc = lambda s, m: {"accuracy": {"SUM": s, "MAX": m, "MIN": 1.0, "all": (s + m + 1) / 3}}  # noqa: E731
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
    by_claim = {r["claim"]: r["verdict"] for r in V.rahman({"relu": holds, "gelu": fails})}
    assert by_claim["FFN activations are extremely sparse (token Gini high, above initialisation)"] == "partial"
    assert by_claim["distinct, non-overlapping groups of neurons serve distinct ops"] == "holds"
    mini = {"sparsity": {"pretrained": {"gini": [0.4, 0.5]}, "initial": {"gini": [0.6, 0.6]}},
            "ablation": {"zero": {"double_dissociation": {"NOUN|VERB": True}},
                         "mean": {"double_dissociation": {"NOUN|VERB": False}}}}
    assert [c["verdict"] for c in V.pos_specialisation(mini)] == ["fails", "partial"]
