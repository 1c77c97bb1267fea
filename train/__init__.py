"""Training: config, state, step, loop, sharding, checkpoints (orbax), metrics. Imports ffnkv, never analysis."""
from train.config import DataConfig, OptimConfig, TrainConfig, apply_overrides, load_config_file, resolve

__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "apply_overrides", "load_config_file", "resolve"]
