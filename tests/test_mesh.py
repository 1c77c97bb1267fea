"""Analyses on a mesh of 8 fake CPU devices equal the single-device results, compile once, and FSDP splits the
parameters (a subprocess sets XLA_FLAGS before jax starts)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, jax, numpy as np
from tests.conftest import random_params, small_cfg
from analysis import attribution as A, tracing as TR
from ffnkv import sharding
cfg = small_cfg(ffn="gelu", n_layers=2, d_model=32, d_ff=64)
params = random_params(cfg)
rng = np.random.default_rng(0)
enc = {"tokens": rng.integers(0, 32, (5, 8)), "predict_pos": np.array([7, 5, 6, 7, 4]), "target": rng.integers(0, 32, 5),
       "subject_start": np.array([1, 2, 0, 1, 1]), "subject_end": np.array([3, 3, 2, 4, 2])}
out = {"devices": jax.device_count()}
for name, shape in (("none", None), ("data", (-1, 1)), ("fsdp", (2, 4))):
    mesh = None if shape is None else sharding.make_mesh(shape)
    ig = A.integrated_gradients(params, cfg, enc, 4, mesh=mesh)
    ig2 = A.integrated_gradients(params, cfg, {**enc, "target": (enc["target"] + 1) % 32}, 4, mesh=mesh)
    tr = TR.causal_trace(params, cfg, enc, 1.0, 2, 2, mesh=mesh)
    placed = sharding.put_params(params, mesh)
    bytes_ = sum(leaf.addressable_shards[0].data.nbytes for leaf in jax.tree.leaves(placed))
    out[name] = {"attr": ig["attr"].tolist(), "attr2": ig2["attr"].tolist(), "restored": tr["restored"].tolist(),
                 "bytes": bytes_, "ig_compiles": A._ig_all._cache_size(), "trace_compiles": TR._trace_jit._cache_size()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def runs():
    env = os.environ | {"PYTHONPATH": str(ROOT), "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
                        "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("mesh", ["data", "fsdp"])
def test_sharded_equals_single_device(runs, mesh):
    assert runs["devices"] == 8
    for key in ("attr", "attr2", "restored"):
        np.testing.assert_allclose(runs[mesh][key], runs["none"][key], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_one_compilation_per_mesh(runs):
    """Two prompt sets with different targets reuse the program: one new compilation per mesh, not per call."""
    assert [runs[m]["ig_compiles"] for m in ("none", "data", "fsdp")] == [1, 2, 3]
    assert [runs[m]["trace_compiles"] for m in ("none", "data", "fsdp")] == [1, 2, 3]


@pytest.mark.slow
def test_fsdp_splits_parameters(runs):
    """On a (2, 4) mesh each device holds about a quarter of the parameter bytes (a few small leaves stay whole)."""
    assert runs["data"]["bytes"] == runs["none"]["bytes"]
    assert runs["fsdp"]["bytes"] < 0.3 * runs["none"]["bytes"]
