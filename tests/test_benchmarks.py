"""benchmarks/run.py: one quick row end to end, --only validation, and the FLOP formulas against XLA's count."""
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import ffnkv
from analysis import covariance as analysis_covariance
from analysis import integrated_gradients as IG
from analysis import tracing as TR
from benchmarks import attribution, common, covariance, run, tracing

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def _run(*args):
    return subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_quick_forward_row(tmp_path):
    out = tmp_path / "rows.json"
    proc = _run("--quick", "--only", "forward", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())
    for key in ("throughput", "model_flops_per_s", "peak_flops_per_s", "ratio_to_peak", "peak_rss_mib", "seconds"):
        assert math.isfinite(row[key]) and row[key] > 0, (key, row[key])
    assert row["unit"] == "tokens/s" and row["what"] == "tokens"
    assert math.isclose(row["throughput"], row["units"] / row["seconds"])
    assert math.isclose(row["ratio_to_peak"], row["model_flops_per_s"] / row["peak_flops_per_s"])
    assert "forward" in proc.stdout and "tokens/s" in proc.stdout


def test_unknown_benchmark_is_one_line_error(tmp_path):
    proc = _run("--only", "forward,nope", "--json", str(tmp_path / "rows.json"))
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "'nope'" in proc.stderr
    assert not (tmp_path / "rows.json").exists()


def test_parse_only():
    assert run.parse_only(None) == list(run.BENCHMARKS)
    assert run.parse_only("covariance, forward") == ["covariance", "forward"]


def _xla_flops(jitted, *args, **static):
    return jitted.lower(*args, **static).compile().cost_analysis()["flops"]


def _param_shapes(cfg):
    return jax.eval_shape(lambda key: ffnkv.init_params(key, cfg), jax.random.key(0))


def _close(formula, xla):
    """The formulas count matmuls only (XLA also counts elementwise work) and the full T×T score matrix, where
    causal attention computes only the query blocks' keys up to the diagonal (``ffnkv.attention``): within 10%
    below and 5% above XLA's count."""
    assert 0.9 < formula / xla <= 1.05, (formula, xla)


def test_flop_formulas_match_xla_count():
    """Each benchmark's model-FLOP formula against XLA's own count of the compiled program.

    XLA's cost analysis counts a loop body once whatever its trip count, so the models have one layer, or
    a two-layer program is compared with the one-layer formula plus what sits outside the layer scan."""
    cfg = ffnkv.ModelConfig(vocab_size=512, d_model=64, n_layers=1, n_heads=4, d_ff=256, max_len=16)
    params = _param_shapes(cfg)
    tokens_NT = jnp.zeros((1, 16), jnp.int32)
    forward = jax.jit(lambda p, t: ffnkv.forward(p, t, cfg).logits)
    _close(common.forward_flops_per_token(cfg, 16) * 16, _xla_flops(forward, params, tokens_NT))

    pos_N, gold_N = jnp.full((1,), 15, jnp.int32), jnp.zeros((1,), jnp.int32)
    ig = _xla_flops(IG.ig_jit, params, tokens_NT, pos_N, gold_N, jnp.ones((1, 16), bool), cfg=cfg, steps=5,
                    rule="midpoint", batch_size=1, recompute="full")
    _close(attribution.prompt_flops(cfg, 16, 5, "midpoint"), ig)

    cells = len(TR.KINDS) * 16
    key_N = jax.random.split(jax.random.key(2), 1)
    trace = _xla_flops(TR.trace_jit, params, tokens_NT, pos_N, gold_N, pos_N - 10, pos_N - 8, key_N,
                       jnp.float32(1.0), cfg=cfg, kind_ids=tuple(range(len(TR.KINDS))), window=1, samples=3,
                       cell_batch=cells, recompute="full")
    _close(tracing.grid_flops(cfg, 16, 3), trace)

    cfg2 = dataclasses.replace(cfg, n_layers=2)
    params2 = _param_shapes(cfg2)
    accumulate = jax.jit(lambda p, t: analysis_covariance.accumulate(
        p, t, jnp.ones(t.shape), jnp.zeros((2, 256, 256)), 0.0, cfg2, (0, 1)))
    _close(covariance.token_flops(cfg, 16, 2) * 16, _xla_flops(accumulate, params2, tokens_NT))


def test_train_floor_reads_every_dot_of_a_compiled_program():
    """benchmarks/train_floor.py finds each dot of a compiled program with its operand shapes and dimension
    numbers (a plain matmul, a transposed-weight gradient and a batched head product), counted by occurrence."""
    from benchmarks.train_floor import dots

    def fn(x, w, q, k):
        y = x @ w
        g = jax.lax.dot_general(x, y, (((0,), (0,)), ((), ())))
        s = jnp.einsum("bhtk,bhsk->bhts", q, k)
        return y.sum() + g.sum() + s.sum()

    args = (jnp.ones((64, 32)), jnp.ones((32, 48)), jnp.ones((2, 3, 8, 16)), jnp.ones((2, 3, 8, 16)))
    found = dots(jax.jit(fn).lower(*args).compile().as_text())
    shapes = {(lhs, rhs) for lhs, rhs, _, dtype in found if dtype == "f32"}
    assert ((64, 32), (32, 48)) in shapes and ((2, 3, 8, 16), (2, 3, 8, 16)) in shapes, found
    assert any(dims[2] == (0,) and dims[3] == (0,) for _, _, dims, _ in found), found
    assert sum(found.values()) == 3
