"""ROME single edits, MEMIT targets and the scores split over the "data" axis of a mesh (4 fake CPU devices;
issue 21.8: each device, or process, edits its share) equal the one-device results."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tolerance import assert_f32_close

pytestmark = pytest.mark.slow  # one subprocess compiles the ROME and MEMIT programs twice (a minute on 2 cores)
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, jax, jax.numpy as jnp
import edit_fixtures as F
from analysis.edit_eval import score_edited
from analysis.memit import memit_targets
from analysis.rome import DeltaHParams, rome_single_scores
from ffnkv import sharding
cfg, params = F.model()
reqs = F.stack([F.request(i) for i in range(5)])
probes = F.stack([F.probe(F.request(i), old=3, seed=i) for i in range(5)])
hp = DeltaHParams(steps=3, prefixes=())
C = F.spd(jax.random.key(1), cfg.width)
out = {}
for name, shape in (("none", None), ("data", (4, 1))):
    mesh = None if shape is None else sharding.make_mesh(shape)
    scores, info = rome_single_scores(params, cfg, jnp.int32(1), C, reqs, probes, F.unrelated(), hp, 2, mesh)
    z, zinfo = jax.jit(lambda p, r: memit_targets(p, cfg, 2, r, hp, 2, mesh))(params, reqs)
    edited = score_edited(params, cfg, probes, F.unrelated(), 2, mesh)
    out[name] = {"rome": {k: jax.device_get(v).tolist() for k, v in scores.items()},
                 "v_star": jax.device_get(info["v_star"]).tolist(), "z": jax.device_get(z).tolist(),
                 "nll": jax.device_get(zinfo["nll"]).tolist(),
                 "scores": {k: jax.device_get(v).tolist() for k, v in edited.items()}}
print(json.dumps(out))
"""


def test_edits_split_over_the_data_axis_equal_one_device():
    env = os.environ | {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "JAX_PLATFORMS": "cpu",
                        "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    one, split = out["none"], out["data"]
    for key in ("v_star", "z", "nll"):
        assert_f32_close(np.asarray(split[key]), np.asarray(one[key]))
    for group in ("rome", "scores"):  # the margins (a rate of gap > 0 could flip on a rounding-sized gap)
        for k in ("EM", "PM", "NM"):
            assert_f32_close(np.asarray(split[group][k]), np.asarray(one[group][k]))
