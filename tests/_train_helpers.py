"""Shared tiny training config for the train tests (seconds on 2 CPU cores)."""
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
