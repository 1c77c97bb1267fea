"""Shared benchmark helpers: timing, the machine's jit f32 matmul peak, model FLOP counts, memory, result rows."""
from __future__ import annotations

import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

# the model FLOP counts, re-exported: the benchmarks read them as common.*
from analysis.plan import block_flops as block_flops
from analysis.plan import cache_flops as cache_flops
from analysis.plan import flops_parts as flops_parts
from analysis.plan import forward_flops_per_token as forward_flops_per_token
from analysis.plan import suffix_flops as suffix_flops


def seconds(fn, *args, repeats: int = 5) -> float:
    """Median wall time of ``fn(*args)`` after one warm-up (compilation) call, blocking on the result."""
    jax.block_until_ready(fn(*args))
    return timed(fn, *args, repeats=repeats)


def timed(fn, *args, repeats: int = 1) -> float:
    """Median wall time of ``fn(*args)`` over ``repeats`` calls (no warm-up: the caller compiled already)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def matmul_peak_flops(n: int = 2048, dtype=jnp.float32) -> float:
    """FLOP/s of a jit-compiled n×n @ n×n matmul (2n³ FLOPs) on the default device, measured now."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    return 2 * n**3 / seconds(jax.jit(jnp.matmul), a, b)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (host memory; on CPU this includes device buffers)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_peak_mib() -> float | None:
    """Peak bytes in use on the default device, where the backend reports it (GPU/TPU; None on CPU)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None


def row(name: str, what: str, units: float, secs: float, flops: float | None, peaks: list[float], **extras) -> dict:
    """One benchmark result: ``units`` of ``what`` done in ``secs`` timed seconds, costing ``flops`` model FLOPs.

    ``peaks`` are matmul-peak measurements taken in the same process (before and after the timed work); the
    best is the reference, since a shared machine can only depress it. The ratio is model FLOP/s ÷ that peak.
    """
    flops = None if flops is None else float(flops)
    model = None if flops is None else flops / secs
    peak = max(peaks)
    return {"name": name, "what": what, "units": units, "seconds": float(secs), "throughput": units / secs,
            "unit": f"{what}/s", "model_flops": flops, "model_flops_per_s": model, "peak_flops_per_s": peak,
            "ratio_to_peak": None if model is None else model / peak, "peak_rss_mib": peak_rss_mib(),
            "device_peak_mib": device_peak_mib(),
            "device": f"{jax.devices()[0].device_kind} x{jax.device_count()}", **extras}



def interleaved(fns: dict, repeats: int = 3, burst: int = 1) -> dict:
    """Median seconds of each ``fns[name]()`` (all compiled already), the methods alternating in rounds so a
    shared machine's load falls on all of them alike; each round calls each method ``burst`` times in a row and
    times every call (the first call of a burst runs with the caches the other method left behind)."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            for _ in range(burst):
                start = time.perf_counter()
                jax.block_until_ready(fn())
                times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def load_average() -> list[float]:
    import os
    return [round(x, 2) for x in os.getloadavg()]


def print_comparison(r: dict) -> None:
    """The two lines of a cached-prefix vs full-recompute row."""
    g = 1e9
    print(f"cached prefix : {r['seconds']:.3f} s  {r['model_flops'] / g:8.2f} GFLOP  {r['ratio_to_peak']:.1%} of peak")
    print(f"full recompute: {r['full_seconds']:.3f} s  {r['full_model_flops'] / g:8.2f} GFLOP  "
          f"{r['full_ratio_to_peak']:.1%} of peak")
    print(f"speed-up {r['speedup']:.1f}x, FLOPs {r['full_model_flops'] / r['model_flops']:.1f}x fewer; matmul peak "
          f"{r['peak_flops_per_s'] / g:.1f} GFLOP/s; results differ by at most {r['max_abs_difference']:.1e}")


def prefix_vs_full(run: dict, what: str, repeats: int, value=lambda out: out):
    """Both methods of ``run`` ({"prefix": fn, "full": fn}): the first (compiling) calls, the check that their
    ``value`` agree, then the interleaved median seconds (rounds of 3 calls of each) between two matmul-peak
    measurements. Returns
    ``(results, first_call_s, max_abs_difference, seconds, peaks)``."""
    start = time.perf_counter()
    result = {m: fn() for m, fn in run.items()}
    first = time.perf_counter() - start
    a, b = (np.asarray(value(result[m])) for m in ("prefix", "full"))
    diff = float(np.abs(a - b).max())
    if not np.allclose(a, b, atol=1e-5, rtol=1e-4):
        raise RuntimeError(f"cached-prefix and full-recompute {what} differ by {diff:.2e}")
    peaks = [matmul_peak_flops()]
    secs = interleaved({m: (lambda fn=fn: value(fn())) for m, fn in run.items()}, repeats, burst=3)
    peaks.append(matmul_peak_flops())
    return result, first, diff, secs, peaks
