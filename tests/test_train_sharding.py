"""Sharded training equals single-device training: 8 fake CPU devices, and 2 processes through gloo."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _train_helpers import tiny_config
from tolerance import assert_f32_close

from ffnkv.io.run import load_metrics
from train.loop import train

ROOT = Path(__file__).resolve().parents[1]
EIGHT = """
import json, sys, jax
from tests._train_helpers import tiny_config
from train.loop import train
from ffnkv.io.run import load_metrics
result = train(tiny_config(mesh=(-1, 1), ckpt_every=20, eval_every=20), sys.argv[1])
print(json.dumps([result["devices"], [r["loss"] for r in load_metrics(sys.argv[1]) if "loss" in r]]))
"""


@pytest.fixture(scope="module")
def one_device_losses(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("one")
    assert train(tiny_config(mesh=(1, 1)), run_dir)["devices"] == 1
    return [r["loss"] for r in load_metrics(run_dir) if "loss" in r]


def _env(**extra):
    env = os.environ | {"PYTHONPATH": str(ROOT)} | extra
    env.pop("XLA_FLAGS", None) if "XLA_FLAGS" not in extra else None
    return env


@pytest.mark.slow
def test_eight_devices_match_one(tmp_path, one_device_losses):
    out = subprocess.run([sys.executable, "-c", EIGHT, str(tmp_path)], cwd=ROOT, capture_output=True, timeout=600,
                         env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    devices, losses = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert devices == 8 and len(one_device_losses) == 20
    assert_f32_close(losses, one_device_losses)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, one_device_losses):
    config = tmp_path / "cfg.py"
    config.write_text("from tests._train_helpers import tiny_config\n"
                      "def get_config():\n    return tiny_config(ckpt_every=20, eval_every=20)\n")
    train_cmd = [sys.executable, "-m", "cli", "train", str(config)]
    port = _free_port()
    procs = [subprocess.Popen(train_cmd + ["--out", str(tmp_path / "multi"), "--coordinator", f"localhost:{port}",
                                           "--num-processes", "2", "--process-id", str(i)],
                              cwd=ROOT, env=_env(JAX_PLATFORMS="cpu"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()[-3000:]
    result = json.loads(outs[0][0].decode().strip().splitlines()[-1])
    assert result["step"] == 20 and result["processes"] == 2 and result["devices"] == 2
    assert '"status"' not in outs[1][0].decode()  # only process 0 reports and writes metrics
    multi = [r["loss"] for r in load_metrics(tmp_path / "multi") if "loss" in r]
    assert_f32_close(multi, one_device_losses)


FSDP = """
import json, sys, math, jax
from tests._train_helpers import tiny_config
from train.loop import train
from train.state import init_state
from train import sharding
from ffnkv.io.run import load_metrics
cfg = tiny_config(mesh=(2, 4), ckpt_every=20, eval_every=20)
result = train(cfg, sys.argv[1])
mesh = sharding.make_mesh((2, 4))
abstract = jax.eval_shape(lambda: init_state(cfg))
shards = sharding.state_shardings(abstract, mesh)
def nbytes(shape_of):
    pairs = zip(jax.tree.leaves(abstract), jax.tree.leaves(shards))
    return sum(math.prod(shape_of(a, s)) * a.dtype.itemsize for a, s in pairs)
print(json.dumps([result["devices"], [r["loss"] for r in load_metrics(sys.argv[1]) if "loss" in r],
                  nbytes(lambda a, s: a.shape), nbytes(lambda a, s: s.shard_shape(a.shape))]))
"""


@pytest.mark.slow
def test_fsdp_matches_one_device(tmp_path, one_device_losses):
    """Parameters and AdamW moments split 4 ways on "model" of a (2, 4) mesh: the same losses, a quarter of the
    bytes."""
    out = subprocess.run([sys.executable, "-c", FSDP, str(tmp_path)], cwd=ROOT, capture_output=True, timeout=600,
                         env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    devices, losses, total, per_device = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert devices == 8
    assert_f32_close(losses, one_device_losses)
    assert per_device < 0.3 * total
