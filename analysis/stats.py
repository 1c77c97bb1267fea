"""The statistics every study shares: Welch's t-test, Cohen's d, multiple-comparison corrections and the
hierarchical bootstrap intervals every verdict rests on (issue #20).

* Welch's t-test (Welch 1947): ``t = (μ_a − μ_b) / sqrt(s_a²/n_a + s_b²/n_b)`` with the Welch–Satterthwaite
  degrees of freedom; the p-value from the Student-t CDF through the regularised incomplete beta function
  (two-sided, or one-sided for ``μ_a > μ_b``). Where both variances are zero the test is decided by the means
  alone (p = 0 when they differ in the tested direction, else 1).
* Cohen's d with the pooled standard deviation.
* Bonferroni, and the Benjamini–Hochberg (1995) step-up procedure at false-discovery rate q.
* Percentile bootstrap intervals, hierarchical over seeds then items (``interval``), and the three-valued
  verdict of an interval against a cut (``decide``: holds / fails / inconclusive).

Elementwise over any trailing shape, so one call tests every neuron of every layer.
"""
from __future__ import annotations

import functools

import jax
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


# ---- bootstrap intervals (issue #20): resample seeds, then items within each seed ----------------------

def _nanmean(x_M):
    return jnp.nanmean(x_M, 0)


def _harmonic(means_K):
    return jnp.where(jnp.all(means_K > 0), means_K.shape[0] / jnp.sum(1.0 / jnp.where(means_K > 0, means_K, 1.0)), 0.0)


STATISTICS = {
    # name: (function of the pooled items [M, ...] with NaN rows for padding -> scalar, rank of one item)
    "mean": (lambda x_M: jnp.nanmean(x_M), 0),
    "median": (lambda x_M: jnp.nanmedian(x_M), 0),
    # items (numerator, denominator): Σ num / Σ den, e.g. a rate over blocks of tokens
    "ratio_of_sums": (lambda x_M2: jnp.nansum(x_M2[:, 0]) / jnp.maximum(jnp.nansum(x_M2[:, 1]), 1e-30), 1),
    # items (ES, PS, NS) of one edit: CounterFact's S, the harmonic mean of the three means (Meng et al. 2022)
    "harmonic_mean_of_means": (lambda x_MK: _harmonic(_nanmean(x_MK)), 1),
    # items (ES, PS, NS of method a, ES, PS, NS of method b) on the same edits: S_a − S_b
    "harmonic_mean_difference": (lambda x_M6: _harmonic(_nanmean(x_M6[:, :3])) - _harmonic(_nanmean(x_M6[:, 3:])), 1),
    # two independent groups as rows (a, NaN) and (NaN, b) (``two_groups``): mean / median of a − that of b
    "difference_of_means": (lambda x_M2: jnp.nanmean(x_M2[:, 0]) - jnp.nanmean(x_M2[:, 1]), 1),
    "difference_of_medians": (lambda x_M2: jnp.nanmedian(x_M2[:, 0]) - jnp.nanmedian(x_M2[:, 1]), 1),
}


def two_groups(a_N, b_M) -> np.ndarray:
    """Items ``[N + M, 2]`` of two independent groups for the ``difference_of_*`` statistics: rows ``(a, NaN)``
    then ``(NaN, b)``; a bootstrap draw resamples the pooled rows, so both groups' sizes vary as in the data."""
    a_N, b_M = np.asarray(a_N, np.float64).ravel(), np.asarray(b_M, np.float64).ravel()
    return np.concatenate([np.stack([a_N, np.full_like(a_N, np.nan)], 1),
                           np.stack([np.full_like(b_M, np.nan), b_M], 1)])


def seed_items(items, item_ndim: int = 0):
    """Items as ``(x_SN…, n_S)``: a leading seed axis, every seed's items padded with NaN (and the seed axis with
    empty seeds, ``n_S = 0``) to a power of two, so that intervals of similar sizes share one compiled program.

    ``items``: one array ``[N, …]`` (one seed), an array ``[S, N, …]`` (S seeds of N items each) or a list of
    per-seed arrays ``[N_s, …]`` (N_s may differ); ``item_ndim`` is the rank of one item (0: a number)."""
    if isinstance(items, (list, tuple)):
        seeds = [np.asarray(x, np.float64) for x in items]
    else:
        arr = np.asarray(items, np.float64)
        if arr.ndim not in (item_ndim + 1, item_ndim + 2):
            raise ValueError(f"items of rank {arr.ndim}: expected [N{', …' * item_ndim}] or [S, N{', …' * item_ndim}]")
        seeds = [arr] if arr.ndim == item_ndim + 1 else list(arr)
    seeds = [x for x in seeds if x.shape[0] > 0]
    if not seeds:
        raise ValueError("no items: every seed's item array is empty")
    n_S = np.array([x.shape[0] for x in seeds])
    pad = lambda n: 1 << int(n - 1).bit_length()
    x_SN = np.full((pad(len(seeds)), max(8, pad(n_S.max())), *seeds[0].shape[1:]), np.nan)
    n_S = np.r_[n_S, np.zeros(x_SN.shape[0] - len(seeds), int)]
    for s, x in enumerate(seeds):
        x_SN[s, : len(x)] = x
    return x_SN, n_S


@functools.partial(jax.jit, static_argnames=("statistic", "n_boot", "batch_size"))
def bootstrap(key, x_SN, n_S, statistic: str = "mean", n_boot: int = 2000, batch_size: int = 2000):
    """``n_boot`` draws of ``statistic`` under the hierarchical bootstrap: draw S seeds with replacement, then
    within each drawn seed its N_s items with replacement, and pool them (Efron & Tibshirani 1993, §8; the
    two-stage resampling of clustered data, Davison & Hinkley 1997, §3.8). With one seed this is the ordinary
    bootstrap over items. ``x_SN`` / ``n_S`` from :func:`seed_items`; padding rows are NaN and every statistic
    ignores them. ``batch_size``: draws per vectorised step (``lax.map``), bounding memory to
    ``batch_size × S × N`` items."""
    fn = STATISTICS[statistic][0]
    S, N = x_SN.shape[:2]
    n_seeds = jnp.sum(n_S > 0)

    def one(k):
        k_seed, k_item = jax.random.split(k)
        seed_S = jax.random.randint(k_seed, (S,), 0, n_seeds)  # seeds come first; the padding seeds are empty
        n_s = jnp.where(jnp.arange(S) < n_seeds, n_S[seed_S], 0)
        idx_SN = jnp.floor(jax.random.uniform(k_item, (S, N)) * n_s[:, None]).astype(jnp.int32)
        x = x_SN[seed_S[:, None], idx_SN]
        valid_SN = jnp.arange(N)[None, :] < n_s[:, None]
        x = jnp.where(valid_SN.reshape(valid_SN.shape + (1,) * (x.ndim - 2)), x, jnp.nan)
        return fn(x.reshape((S * N,) + x.shape[2:]))

    keys = jax.random.split(key, n_boot)
    return jax.vmap(one)(keys) if batch_size >= n_boot else jax.lax.map(one, keys, batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("statistic",))
def _pooled(x_SN, statistic: str):
    return STATISTICS[statistic][0](x_SN.reshape((-1,) + x_SN.shape[2:]))


def interval(items, statistic: str = "mean", key=None, n_boot: int = 2000, level: float = 0.95) -> dict:
    """The statistic on all items pooled and its ``level`` percentile bootstrap interval (:func:`bootstrap`),
    with the seed and item counts it rests on. ``key``: a ``jax.random.key`` (required: the interval is a
    pure function of it)."""
    if key is None:
        raise ValueError("interval needs an explicit jax.random key")
    if statistic not in STATISTICS:
        raise ValueError(f"statistic {statistic!r} is unknown; choose from {', '.join(STATISTICS)}")
    x_SN, n_S = seed_items(items, STATISTICS[statistic][1])
    x = jnp.asarray(x_SN, jnp.float32)
    batch = int(max(1, min(n_boot, 2 ** 24 // max(x.size, 1))))  # ≤ 16M resampled numbers at a time
    draws = np.asarray(bootstrap(key, x, jnp.asarray(n_S), statistic, n_boot, batch))
    point = float(_pooled(x, statistic))
    alpha = (1.0 - level) / 2
    lo, hi = (float(q) for q in np.nanquantile(draws, [alpha, 1.0 - alpha]))
    return {"statistic": statistic, "point": point, "lo": lo, "hi": hi, "level": level,
            "n_seeds": int((n_S > 0).sum()), "n_items": int(n_S.sum())}


DIRECTIONS = (">=", ">", "<=", "<")


def decide(lo: float, hi: float, cut: float, direction: str) -> str:
    """``holds`` when the whole interval ``[lo, hi]`` is on the claim's side of ``cut``, ``fails`` when the
    whole interval is on the other side, ``inconclusive`` when it straddles the cut."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}")
    side = {">=": lambda v: v >= cut, ">": lambda v: v > cut, "<=": lambda v: v <= cut,
            "<": lambda v: v < cut}[direction]
    if side(lo) and side(hi):
        return "holds"
    if not side(lo) and not side(hi):
        return "fails"
    return "inconclusive"


def all_of(verdicts) -> str:
    """Three-valued AND (Kleene): ``fails`` if any part fails, ``holds`` if every part holds, else
    ``inconclusive``."""
    verdicts = list(verdicts)
    if "fails" in verdicts:
        return "fails"
    return "holds" if verdicts and all(v == "holds" for v in verdicts) else "inconclusive"


def ranks(x) -> np.ndarray:
    """Ranks 0…n−1 of ``x`` with tied values given their average rank."""
    x = np.asarray(x, float)
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    _, inv = np.unique(x, return_inverse=True)
    return (np.bincount(inv, r) / np.bincount(inv))[inv]


def spearman(x, y) -> float:
    """Spearman's rank correlation ρ (Pearson's r of the average ranks; Spearman 1904); NaN when either side
    is constant or has fewer than 3 finite pairs."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return float("nan")
    rx, ry = ranks(x[keep]), ranks(y[keep])
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])
