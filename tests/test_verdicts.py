"""Verdict rules of studies/verdicts.py, held to hand-made results."""
from studies import verdicts as V


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
