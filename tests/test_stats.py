"""analysis.stats against scipy and known answers."""
import jax.numpy as jnp
import numpy as np
import pytest

from analysis import stats

scipy_stats = pytest.importorskip("scipy.stats", reason="the reference t-test comes from scipy")


def test_two_sided_welch_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 1.0, (40, 5)), rng.normal(0.0, 2.0, (25, 5))
    t, _, p = stats.welch_t(jnp.asarray(a), jnp.asarray(b))
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    np.testing.assert_allclose(np.asarray(t), ref.statistic, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(p), ref.pvalue, rtol=1e-3, atol=1e-6)


def test_one_sided_welch_matches_scipy_and_decides_zero_variance():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 1, 40), rng.normal(0, 2, 70)
    p = stats.welch(a.mean(), a.var(ddof=1), len(a), b.mean(), b.var(ddof=1), len(b), "greater")[2]
    ref = scipy_stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    assert float(p) == pytest.approx(ref, rel=1e-3)
    p_neg = stats.welch(b.mean(), b.var(ddof=1), len(b), a.mean(), a.var(ddof=1), len(a), "greater")[2]
    assert float(p_neg) == pytest.approx(1 - ref, rel=1e-3)
    assert float(stats.welch(1.0, 0.0, 5, 0.0, 0.0, 5, "greater")[2]) == 0.0
    assert float(stats.welch(1.0, 0.0, 5, 1.0, 0.0, 5, "greater")[2]) == 1.0
    assert float(stats.welch(0.0, 0.0, 5, 1.0, 0.0, 5)[2]) == 0.0


def test_cohens_d_and_corrections_known_answers():
    a, b = np.array([[1.0], [3.0]]), np.array([[0.0], [2.0]])
    assert float(stats.cohens_d(jnp.asarray(a), jnp.asarray(b))[0]) == pytest.approx(1 / np.sqrt(2), rel=1e-5)
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205])
    # BH at q = 0.05: thresholds i/8·0.05 = .00625 .0125 .01875 .025 .03125 ...: the first two pass
    np.testing.assert_array_equal(stats.benjamini_hochberg(p, 0.05), [1, 1, 0, 0, 0, 0, 0, 0])
    assert not stats.benjamini_hochberg(np.full(5, 0.5), 0.05).any()
    np.testing.assert_array_equal(stats.bonferroni(p, 0.05), [1, 0, 0, 0, 0, 0, 0, 0])
