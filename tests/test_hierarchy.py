import jax.numpy as jnp
import numpy as np
import pytest
from handbuilt import K, P, build, probe_set

from analysis import hierarchy as hi
from analysis import specialisation as sp
from analysis.probe import ffn_coefficients

OPS = ("SUM", "MAX", "MIN")[:K]


def _spec(params, cfg, probe, layers):
    m_LNTF, _ = ffn_coefficients(params, jnp.asarray(probe["tokens"]), cfg)
    return sp.specialisation(np.asarray(m_LNTF[:, :, -1]), probe["op"], OPS, "relu", layers)


def test_gate_generalists_drive_later_specialists():
    params, cfg, specialist, generalist = build(2, n_gate=3)
    probe = probe_set()
    spec = _spec(params, cfg, probe, [0, 1])
    np.testing.assert_array_equal(spec["specialist"], specialist)
    np.testing.assert_array_equal(spec["generalist"], generalist)
    res = hi.hierarchy(params, cfg, probe, OPS, spec, [0, 1], n_control=16, n_perm=2000)
    assert res["applicable"]
    layer0 = res["layers"]["0"]
    gens = layer0["generalists"]
    drive = np.asarray(layer0["drive"])
    assert drive.shape == (4, K * P)
    gate = np.flatnonzero(generalist[0])[:3]
    for row, n in zip(drive, gens):  # gates silence every layer-1 specialist; the inert generalist does nothing
        np.testing.assert_allclose(row, 1.0 if n in gate else 0.0, atol=1e-5)
    np.testing.assert_allclose(layer0["control_drive"], 0.0, atol=1e-6)
    assert set(layer0["controls"]).isdisjoint(np.flatnonzero(generalist[0]))
    assert res["generalists_drive_more_than_chance"] and res["p_value"] < 0.01
    assert res["generalist_score_mean"] == pytest.approx(0.75, abs=1e-5)
    assert np.mean(layer0["generalist_scores"]) == pytest.approx(0.75, abs=1e-5)  # per neuron: the items
    assert len(layer0["control_scores"]) == len(layer0["controls"])
    assert layer0["mean_relative_effect_per_op"]["SUM"]["generalists"] == pytest.approx(-0.75, abs=1e-5)
    per_op = np.asarray(layer0["relative_effect_per_op"])  # [generalist, specialist, op]
    assert per_op.shape == (4, K * P, K)
    spec_ops = [ops[0] for ops in layer0["specialist_ops"]]
    for s_idx, op in enumerate(spec_ops):  # a specialist is silent on the other ops: r is undefined there (0)
        k = OPS.index(op)
        np.testing.assert_allclose(per_op[:, s_idx, k], -drive[:, s_idx], atol=1e-5)


def test_not_applicable_with_one_ffn_layer():
    params, cfg, specialist, generalist = build(1)
    probe = probe_set()
    res = hi.hierarchy(params, cfg, probe, OPS, _spec(params, cfg, probe, [0]), [0])
    assert not res["applicable"] and "fewer than two" in res["reason"]


def test_permutation_test():
    rng = np.random.default_rng(0)
    assert hi.permutation_greater(np.full(5, 1.0), np.zeros(20), 2000, rng) < 0.01
    assert hi.permutation_greater(np.zeros(5), np.zeros(20), 2000, rng) == 1.0


def test_fails_without_generalists_before_specialists():
    params, cfg, specialist, generalist = build(2, n_gate=3)
    probe = probe_set()
    spec = _spec(params, cfg, probe, [0, 1])
    spec["generalist"] = np.zeros_like(spec["generalist"])
    res = hi.hierarchy(params, cfg, probe, OPS, spec, [0, 1])
    assert res["applicable"] and not res["generalists_drive_more_than_chance"] and "no generalist" in res["reason"]
