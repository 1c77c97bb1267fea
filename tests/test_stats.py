"""analysis.stats against scipy and known answers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis import edit_eval, stats

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


# ---- bootstrap intervals -------------------------------------------------------------------------------
def test_interval_of_a_mean_matches_the_normal_approximation():
    x = np.random.default_rng(2).normal(0.0, 1.0, 400)
    iv = stats.interval(x, "mean", jax.random.key(0), n_boot=4000)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert iv["point"] == pytest.approx(x.mean(), abs=1e-6)
    assert iv["lo"] == pytest.approx(x.mean() - half, abs=0.15 * half)
    assert iv["hi"] == pytest.approx(x.mean() + half, abs=0.15 * half)
    assert (iv["n_seeds"], iv["n_items"]) == (1, 400)
    assert stats.interval(x, "mean", jax.random.key(0), n_boot=4000) == iv  # a pure function of the key


def test_seeds_widen_the_interval_and_ragged_seeds_ignore_padding():
    rng = np.random.default_rng(3)
    x_SN = rng.normal(0.0, 1.0, (3, 200)) + np.array([[0.0], [1.0], [2.0]])
    key = jax.random.key(1)
    per_seed = stats.interval(x_SN, "mean", key)
    pooled = stats.interval(x_SN.ravel(), "mean", key)
    assert per_seed["n_seeds"] == 3 and per_seed["point"] == pytest.approx(pooled["point"], abs=1e-5)
    assert per_seed["hi"] - per_seed["lo"] > 3 * (pooled["hi"] - pooled["lo"])  # seed-to-seed spread counts
    ragged = stats.interval([x_SN[0], x_SN[1, :50]], "median", key)
    assert ragged["n_items"] == 250 and np.isfinite([ragged["lo"], ragged["hi"]]).all()
    assert ragged["point"] == pytest.approx(np.median(np.r_[x_SN[0], x_SN[1, :50]]), abs=1e-5)
    # identical seeds add no seed variance: the interval is the one-seed interval's width or less
    same = stats.interval(np.stack([x_SN[0]] * 3), "mean", key)
    one = stats.interval(x_SN[0], "mean", key)
    assert same["hi"] - same["lo"] < 1.2 * (one["hi"] - one["lo"])


def test_counterfact_score_statistic_is_the_edit_evals_S():
    rng = np.random.default_rng(4)
    scores = {"ES": rng.uniform(0.5, 1, 30), "PS": rng.uniform(0.2, 1, 30), "NS": rng.uniform(0.4, 1, 30)}
    items = np.stack([scores[k] for k in ("ES", "PS", "NS")], 1)
    iv = stats.interval(items, "harmonic_mean_of_means", jax.random.key(2))
    assert iv["point"] == pytest.approx(edit_eval.summarise(scores)["S"], rel=1e-5)
    assert iv["lo"] < iv["point"] < iv["hi"]
    diff = stats.interval(np.concatenate([items, items], 1), "harmonic_mean_difference", jax.random.key(2))
    assert diff["point"] == diff["lo"] == diff["hi"] == 0.0  # paired resampling of the same edits


@pytest.mark.parametrize("lo, hi, cut, direction, verdict", [
    (0.81, 0.9, 0.8, ">=", "holds"), (0.7, 0.79, 0.8, ">=", "fails"), (0.79, 0.85, 0.8, ">=", "inconclusive"),
    (0.8, 0.9, 0.8, ">", "inconclusive"), (-0.2, -0.01, 0.0, "<", "holds"), (0.0, 0.1, 0.0, "<", "fails")])
def test_decide_needs_the_whole_interval_on_one_side(lo, hi, cut, direction, verdict):
    assert stats.decide(lo, hi, cut, direction) == verdict


def test_all_of_is_three_valued():
    assert stats.all_of(["holds", "holds"]) == "holds"
    assert stats.all_of(["holds", "inconclusive"]) == "inconclusive"
    assert stats.all_of(["inconclusive", "fails"]) == "fails"
    assert stats.all_of([]) == "inconclusive"


def test_interval_needs_a_key_and_known_statistic():
    with pytest.raises(ValueError, match="explicit"):
        stats.interval(np.ones(3), "mean")
    with pytest.raises(ValueError, match="unknown"):
        stats.interval(np.ones(3), "mode", jax.random.key(0))
