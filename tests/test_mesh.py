"""Analyses on a mesh of 8 fake CPU devices equal the single-device results, compile once per mesh, and FSDP
splits the parameters (a subprocess sets XLA_FLAGS before jax starts). Every sweep is split: IG (prompt,
α block) items, tracing (fact, cell, sample block) items, patching (pair, cell) items, covariance and trigger
search tokens."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tolerance import assert_f32_close

pytestmark = pytest.mark.slow  # one subprocess on 8 fake devices runs every sweep on four meshes (minutes)
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, jax, numpy as np
from tests.conftest import random_params, small_cfg
from analysis import integrated_gradients as IG, covariance as C, memories as M, patching as PA, tracing as TR
from ffnkv import sharding
cfg = small_cfg(ffn="gelu", n_layers=2, d_model=32, d_ff=64)
params = random_params(cfg)
rng = np.random.default_rng(0)
enc = {"tokens": rng.integers(0, 32, (3, 8)), "predict_pos": np.array([7, 5, 6]), "target": rng.integers(0, 32, 3),
       "subject_start": np.array([1, 2, 0]), "subject_end": np.array([3, 3, 2])}
corrupt = np.where(np.arange(8) == 2, (enc["tokens"] + 1) % 32, enc["tokens"])
corpus = rng.integers(0, 32, (20, 8))
out = {"devices": jax.device_count()}
for name, shape in (("none", None), ("data", (-1, 1)), ("fsdp", (2, 4)), ("fsdp8", (1, 8))):
    mesh = None if shape is None else sharding.make_mesh(shape)
    blocks = 1 if mesh is None else 4
    ig = IG.integrated_gradients(params, cfg, enc, 4, mesh=mesh, alpha_blocks=blocks)
    ig2 = IG.integrated_gradients(params, cfg, {**enc, "target": (enc["target"] + 1) % 32}, 4, mesh=mesh,
                                 alpha_blocks=blocks)
    tr = TR.causal_trace(params, cfg, enc, 1.0, 2, 2, kinds=("resid", "mlp"), mesh=mesh, sample_blocks=blocks // 2 or 1,
                         position_buckets=2)
    pa = PA.activation_patching(params, cfg, enc, corrupt, mesh=mesh, position_buckets=2)
    cov, n = C.key_second_moment(params, cfg, (0, 1), [(corpus[:6], np.ones((6, 8)))] * 2, mesh=mesh)
    trig = M.trigger_search(params, cfg, corpus, None, k=3, batch_size=8, mesh=mesh)
    placed = sharding.put_params(params, mesh)
    bytes_ = sum(leaf.addressable_shards[0].data.nbytes for leaf in jax.tree.leaves(placed))
    out[name] = {"attr": ig["attr"].tolist(), "attr2": ig2["attr"].tolist(), "restored": tr["restored"].tolist(),
                 "patched": pa["patched"].tolist(), "cov": cov.tolist(), "n": n, "coef": trig["coef"].tolist(),
                 "index": trig["index"].tolist(), "bytes": bytes_,
                 "compiles": {"ig": IG.ig_jit._cache_size(), "trace": TR.trace_jit._cache_size(),
                              "patch": PA.patch_jit._cache_size(), "cov": C.accumulate_jit._cache_size(),
                              "trigger": M.trigger_step._cache_size()}}
print(json.dumps(out))
"""
MESHES = ("data", "fsdp", "fsdp8")


@pytest.fixture(scope="module")
def runs():
    env = os.environ | {"PYTHONPATH": str(ROOT), "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
                        "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mesh", MESHES)
def test_sharded_equals_single_device(runs, mesh):
    assert runs["devices"] == 8
    for key in ("attr", "attr2", "restored", "patched", "cov", "coef"):
        assert_f32_close(runs[mesh][key], runs["none"][key], err_msg=key)
    assert runs[mesh]["n"] == runs["none"]["n"]
    assert runs[mesh]["index"] == runs["none"]["index"]


def test_one_compilation_per_mesh(runs):
    """Two prompt sets (IG), two batches (covariance) and three chunks (trigger search) reuse the program: one new
    compilation per mesh, not per call."""
    for what in ("ig", "trace", "patch", "cov", "trigger"):
        assert [runs[m]["compiles"][what] for m in ("none",) + MESHES] == [1, 2, 3, 4], what


def test_fsdp_splits_parameters(runs):
    """Each device holds about 1/model of the parameter bytes (a few small leaves stay whole): ~4x on (2, 4),
    ~8x on (1, 8); results above are equal."""
    assert runs["data"]["bytes"] == runs["none"]["bytes"]
    assert runs["fsdp"]["bytes"] < 0.3 * runs["none"]["bytes"]
    assert runs["fsdp8"]["bytes"] < 0.16 * runs["none"]["bytes"]
