import jax.numpy as jnp
import numpy as np
import pytest
from handbuilt import build, probe_set

from analysis import sparsity


def test_gini_known_answers():
    assert float(sparsity.gini(jnp.full(10, 3.0))) == pytest.approx(0.0, abs=1e-6)
    for n in (2, 5, 64):
        assert float(sparsity.gini(jnp.eye(n)[1])) == pytest.approx((n - 1) / n, abs=1e-6)
    assert float(sparsity.gini(jnp.zeros(7))) == 0.0
    # G([0, 0, 1, 1]) = (−1·0 −... ) : sorted weights (2i − n − 1) = (−3, −1, 1, 3) → (1 + 3) / (4 · 2) = 0.5
    assert float(sparsity.gini(jnp.array([1.0, 0.0, 1.0, 0.0]))) == pytest.approx(0.5, abs=1e-6)
    np.testing.assert_allclose(sparsity.gini(jnp.array([[1.0, 1.0], [0.0, 2.0]]), axis=0), [0.5, 1 / 6], atol=1e-6)


def test_gini_matches_mean_absolute_difference():
    a = np.random.default_rng(0).exponential(size=37)
    mad = np.abs(a[:, None] - a[None, :]).sum() / (2 * len(a) ** 2 * a.mean())
    assert float(sparsity.gini(jnp.asarray(a))) == pytest.approx(mad, rel=1e-4)


def test_active_fraction_rules():
    m_NF = jnp.array([[1.0, 0.05, 0.0, -0.5], [0.0, 0.0, 2.0, 0.1]])
    relu = sparsity.layer_sparsity(jnp.maximum(m_NF, 0), "relu")
    assert float(relu["active_fraction"]) == pytest.approx(4 / 8)
    gelu = sparsity.layer_sparsity(m_NF, "gelu")  # |m| > 0.1 · max|m| of the token: row 0: 1, −0.5; row 1: 2
    assert float(gelu["active_fraction"]) == pytest.approx(3 / 8)
    assert float(relu["active_fraction_rel"]) == pytest.approx(2 / 8)


def test_dead_neurons_excluded_from_neuron_gini():
    m_NF = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    stats = sparsity.layer_sparsity(m_NF, "relu")
    assert float(stats["dead_fraction"]) == 0.5
    assert float(stats["neuron_gini_mean"]) == pytest.approx(0.0, abs=1e-6)
    assert float(stats["token_gini_mean"]) == pytest.approx(0.5, abs=1e-6)


def test_model_sparsity_on_handbuilt_model():
    params, cfg, specialist, generalist = build(1)
    out = sparsity.model_sparsity(params, cfg, probe_set()["tokens"])
    assert list(out) == ["0"]
    # per token at the answer position exactly P specialists + the generalists fire; earlier positions vary
    assert 0 < out["0"]["active_fraction"] < 0.5
    assert out["0"]["token_gini_mean"] > 0.5
    assert sparsity.layer_mean(out, "token_gini_mean") == pytest.approx(out["0"]["token_gini_mean"])
    assert sparsity.layer_mean({}, "token_gini_mean") is None
    per_sequence = out["0"]["token_gini_sequences"]  # the items of the verdict's interval, one per probe sequence
    assert len(per_sequence) == len(probe_set()["tokens"])
    assert np.mean(per_sequence) == pytest.approx(out["0"]["token_gini_mean"], abs=1e-5)
