"""Reading a trained run back: its config and parameters (no dependency on train/).

A run dir (written by ``ffnkv train``) holds ``config.json`` (the resolved TrainConfig as a dict),
``metrics.jsonl`` and ``checkpoints/<step>/{params,opt,meta}`` (orbax). The initial parameters of a run are
``init_params(jax.random.key(cfg["seed"]), model_cfg)``, so a baseline needs no checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from ffnkv.config import ModelConfig
from ffnkv.errors import FfnkvError
from ffnkv.model import init_params


def load_config(run_dir: str | Path) -> tuple[dict, ModelConfig]:
    """(train config dict, ModelConfig) of a run dir."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FfnkvError(f"{str(run_dir)!r} is not a run dir (no config.json); train one with `ffnkv train`.")
    cfg = json.loads(path.read_text())
    return cfg, ModelConfig.from_dict(cfg["model"])


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    ckpt = Path(run_dir) / "checkpoints"
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) if ckpt.is_dir() else []


def load_params(run_dir: str | Path, model_cfg: ModelConfig, step: int | None = None) -> dict:
    """Parameters of checkpoint ``step`` (default: the newest) as host-local jax arrays."""
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise FfnkvError(f"run dir {str(run_dir)!r} has no checkpoint yet; train it first.")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise FfnkvError(f"run dir {str(run_dir)!r} has no checkpoint of step {step}; it has {steps}.")
    abstract = jax.eval_shape(lambda: init_params(jax.random.key(0), model_cfg))
    with ocp.CheckpointManager(Path(run_dir).absolute() / "checkpoints", item_names=("params",),
                               options=ocp.CheckpointManagerOptions(create=False)) as manager:
        out = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)))
    return out["params"]


def load_init_params(run_dir: str | Path) -> dict:
    """The run's parameters before training (step 0), recomputed from its seed."""
    cfg, model_cfg = load_config(run_dir)
    return jax.jit(init_params, static_argnums=1)(jax.random.key(cfg["seed"]), model_cfg)


def load_run(run_dir: str | Path, step: int | None = None) -> tuple[dict, ModelConfig, dict]:
    """(train config dict, ModelConfig, params of checkpoint ``step`` — default the newest)."""
    cfg, model_cfg = load_config(run_dir)
    return cfg, model_cfg, load_params(run_dir, model_cfg, step)


def load_metrics(run_dir: str | Path) -> list[dict]:
    """The records of metrics.jsonl (train records have ``loss``; eval records ``eval/...`` keys)."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
