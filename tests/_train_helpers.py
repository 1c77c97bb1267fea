"""Shared tiny training config for the train tests (seconds on 2 CPU cores)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from ffnkv.config import ModelConfig
from train.config import DataConfig, OptimConfig, TrainConfig


def tiny_config(**changes) -> TrainConfig:
    cfg = TrainConfig(
        model=ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, ffn="relu"),
        data=DataConfig("condcomp", {"n_operands": 3, "modulus": 7, "n_eval": 64}),
        optim=OptimConfig(lr=3e-3, warmup_steps=5),
        steps=20, batch_size=16, eval_every=10, ckpt_every=5, keep=3, log_every=1, seed=0, progress=False,
    )
    return cfg.replace(**changes)


def train_facts_run(path, trained: bool = False) -> Path:
    """A tiny facts LM in ``path``: 2 steps (shapes only), or with ``trained`` 150 steps that learn some facts."""
    from train.loop import train

    if trained:
        cfg = TrainConfig(model=ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64),
                          data=DataConfig("facts",
                                          {"n_entities": 8, "n_relations": 2, "n_attributes": 4, "loss": "all"}),
                          optim=OptimConfig(lr=1e-2, warmup_steps=10), steps=150, batch_size=32, eval_every=150,
                          ckpt_every=150, keep=1, progress=False)
    else:
        cfg = TrainConfig(model=ModelConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32),
                          data=DataConfig("facts", {"n_entities": 6, "n_relations": 2, "n_attributes": 3,
                                                    "facts_per_seq": 2, "loss": "all"}),
                          steps=2, batch_size=8, eval_every=2, ckpt_every=2, keep=1, progress=False)
    train(cfg, path)
    return path


def assert_trees_equal(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def enable_compilation_cache() -> str:
    """A persistent XLA cache shared by this test session and its subprocesses (each compiles once)."""
    import os
    import tempfile

    path = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="ffnkv-jax-cache-"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


enable_compilation_cache()


ROOT = Path(__file__).resolve().parents[1]
CONFIG = """from tests._train_helpers import tiny_config
def get_config():
    return tiny_config({changes})
"""


def write_config(tmp_path, changes="") -> str:
    """A config file (for ``ffnkv train`` in a subprocess) returning ``tiny_config(<changes>)``."""
    path = tmp_path / "cfg.py"
    path.write_text(CONFIG.format(changes=changes))
    return str(path)


def start_training(tmp_path, run_dir, changes):
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "cli", "train", write_config(tmp_path, changes), "--out",
                             str(run_dir)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_step(proc, run_dir, step, timeout=240):
    """Poll metrics.jsonl until a train record of ``step`` (or later) appears."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        path = run_dir / "metrics.jsonl"
        if path.exists() and any(json.loads(line).get("step", 0) >= step and "loss" in line
                                 for line in path.read_text().splitlines() if line.endswith("}")):
            return
        time.sleep(0.01)
    raise TimeoutError(f"training did not reach step {step}")
