import jax.numpy as jnp
import numpy as np
import pytest
from handbuilt import K, build, probe_set

from analysis import specialisation as sp
from analysis.probe import ffn_coefficients

OPS = ("SUM", "MAX", "MIN")


def synthetic(n_per_op=200, seed=0):
    """Neurons 0-2: selective for op 0-2; 3: both op 0 and 1; 4: generalist; 5: never on; 6: sparse noise."""
    rng = np.random.default_rng(seed)
    op_N = np.repeat(np.arange(3), n_per_op)
    N = len(op_N)
    m_NF = np.zeros((N, 7), np.float32)
    for k in range(3):
        m_NF[:, k] = np.where(op_N == k, 2.0 + rng.normal(0, 0.3, N), np.abs(rng.normal(0, 0.05, N)))
    m_NF[:, 3] = np.where(op_N < 2, 1.0 + rng.uniform(0, 0.1, N), 0.0)
    m_NF[:, 4] = 1.0 + rng.uniform(0, 0.1, N)
    m_NF[:, 6] = rng.exponential(0.2, N) * (rng.uniform(size=N) < 0.3)
    return m_NF[None], op_N


def test_selectivity_on_synthetic_activations():
    m_LNF, op_N = synthetic()
    res = sp.specialisation(m_LNF, op_N, OPS, "relu", layers=[0])
    spec = res["specialist"][:, 0]
    expected = np.zeros((3, 7), bool)
    expected[[0, 1, 2], [0, 1, 2]] = True
    expected[[0, 1], [3, 3]] = True  # neuron 3 is a specialist of SUM and of MAX (vs the rest)
    np.testing.assert_array_equal(spec, expected)
    np.testing.assert_array_equal(res["generalist"][0], [0, 0, 0, 0, 1, 0, 0])
    assert res["si"][0, 0, 0] > 0.9 and res["si"][1, 0, 0] < -0.9
    assert res["jaccard"]["SUM|MAX"]["pooled"] == pytest.approx(1 / 3)
    assert res["jaccard"]["SUM|MIN"]["0"] == 0.0
    summary = sp.summary(res, OPS)
    assert summary["n_specialists"]["SUM"]["0"] == 2 and summary["n_generalists"]["0"] == 1
    assert summary["n_multi_op_specialists"]["0"] == 1
    assert sum(summary["max_si_histogram"]["counts"]) == 7
    # the distinct-groups verdict's items: the pair's specialists, in both sets or in one (Jaccard = both / union)
    assert summary["overlap"]["SUM|MAX"] == {"both": 1, "union": 3}
    assert summary["overlap"]["SUM|MIN"] == {"both": 0, "union": 3}


def test_no_specialists_when_ops_are_indistinguishable():
    rng = np.random.default_rng(3)
    m_LNF = rng.exponential(1.0, (1, 600, 50)).astype(np.float32)
    res = sp.specialisation(m_LNF, np.repeat(np.arange(3), 200), OPS, "relu", layers=[0])
    assert not res["specialist"].any()
    assert res["jaccard"]["SUM|MAX"]["pooled"] is None


def test_handbuilt_model_specialists_recovered():
    params, cfg, specialist, generalist = build(1)
    probe = probe_set()
    m_LNTF, _ = ffn_coefficients(params, jnp.asarray(probe["tokens"]), cfg)
    res = sp.specialisation(np.asarray(m_LNTF[:, :, -1]), probe["op"], OPS[:K], "relu", layers=[0])
    np.testing.assert_array_equal(res["specialist"], specialist)
    np.testing.assert_array_equal(res["generalist"], generalist)
