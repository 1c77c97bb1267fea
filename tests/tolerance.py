"""One tolerance for comparing two float32 programs that compute the same thing in a different order.

A vmapped and a looped program, a sharded and a single-device one, a cached prefix and a full recompute: each
sums the same terms in its own order, so they agree only up to float32 rounding, which scales with the size of
the numbers involved. Reductions of n terms in another order differ by about sqrt(n) ulps of the largest
partial sum; ULPS = 64 covers n up to 4096 per reduction (d_model, d_ff, vocab of the test models) chained
through a few layers, and is still ~1e4 times smaller than any real bug these tests look for (an error of
1e-2 relative). The scale is the largest magnitude of the two arrays, never below `floor` (values near zero
carry the rounding of the larger terms they were computed from).
"""
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
ULPS = 64


def f32_atol(*arrays, ulps: int = ULPS, floor: float = 1.0) -> float:
    """The absolute tolerance of ``ulps`` float32 ulps at the largest magnitude among ``arrays``."""
    scale = max([floor] + [float(np.max(np.abs(np.asarray(a, np.float64)), initial=0.0)) for a in arrays])
    return ulps * EPS32 * scale


def assert_f32_close(actual, desired, *, ulps: int = ULPS, floor: float = 1.0, err_msg: str = ""):
    """``actual`` equals ``desired`` up to float32 rounding at their magnitude (see the module docstring)."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    np.testing.assert_allclose(actual, desired, rtol=0, atol=f32_atol(actual, desired, ulps=ulps, floor=floor),
                               err_msg=err_msg)
