"""The statistics every study shares: Welch's t-test, Cohen's d and multiple-comparison corrections.

* Welch's t-test (Welch 1947): ``t = (μ_a − μ_b) / sqrt(s_a²/n_a + s_b²/n_b)`` with the Welch–Satterthwaite
  degrees of freedom; the p-value from the Student-t CDF through the regularised incomplete beta function
  (two-sided, or one-sided for ``μ_a > μ_b``). Where both variances are zero the test is decided by the means
  alone (p = 0 when they differ in the tested direction, else 1).
* Cohen's d with the pooled standard deviation.
* Bonferroni, and the Benjamini–Hochberg (1995) step-up procedure at false-discovery rate q.

Elementwise over any trailing shape, so one call tests every neuron of every layer.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc

ALTERNATIVES = ("two-sided", "greater")


def welch(mean_a, var_a, n_a, mean_b, var_b, n_b, alternative: str = "two-sided"):
    """Welch's t, its degrees of freedom and p-value from group moments (sample variances, ddof=1)."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}")
    se2_a, se2_b = var_a / n_a, var_b / n_b
    se2 = se2_a + se2_b
    safe = jnp.where(se2 > 0, se2, 1.0)
    t = (mean_a - mean_b) / jnp.sqrt(safe)
    df = safe ** 2 / jnp.maximum(se2_a ** 2 / jnp.maximum(n_a - 1, 1) + se2_b ** 2 / jnp.maximum(n_b - 1, 1), 1e-30)
    two_sided = betainc(df / 2, 0.5, df / (df + t ** 2))
    if alternative == "greater":
        p = jnp.where(t >= 0, two_sided / 2, 1.0 - two_sided / 2)
        decided = jnp.where(mean_a > mean_b, 0.0, 1.0)
    else:
        p, decided = two_sided, jnp.where(mean_a != mean_b, 0.0, 1.0)
    return t, df, jnp.where(se2 > 0, p, decided)


def welch_t(a_NX, b_MX, alternative: str = "two-sided"):
    """Welch's test between samples ``a_NX`` and ``b_MX`` (axis 0), per column."""
    n, m = a_NX.shape[0], b_MX.shape[0]
    return welch(a_NX.mean(0), a_NX.var(0, ddof=1), n, b_MX.mean(0), b_MX.var(0, ddof=1), m, alternative)


def cohens_d(a_NX, b_MX):
    """Cohen's d per column, ``(μ_a − μ_b) / s_pooled``."""
    n, m = a_NX.shape[0], b_MX.shape[0]
    pooled = jnp.sqrt(((n - 1) * a_NX.var(0, ddof=1) + (m - 1) * b_MX.var(0, ddof=1)) / (n + m - 2))
    return (a_NX.mean(0) - b_MX.mean(0)) / (pooled + 1e-12)


def bonferroni(p, alpha: float) -> np.ndarray:
    """Rejections with family-wise error ``alpha`` over all of ``p``."""
    p = np.asarray(p, np.float64)
    return p * p.size <= alpha


def benjamini_hochberg(p, q: float) -> np.ndarray:
    """Rejections of the Benjamini–Hochberg (1995) step-up procedure at FDR ``q`` over all of ``p``."""
    p = np.asarray(p, np.float64)
    flat = p.ravel()
    order = np.argsort(flat, kind="stable")
    passed = flat[order] <= q * np.arange(1, flat.size + 1) / flat.size
    reject = np.zeros(flat.size, bool)
    if passed.any():
        reject[order[: np.flatnonzero(passed).max() + 1]] = True
    return reject.reshape(p.shape)
