"""Conditional computation (Rahman et al. 2026), the default of ``ffnkv compare``: a 2-layer model, n=4, P=13."""
from ffnkv.config import ModelConfig
from train.config import DataConfig, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(d_model=64, n_layers=2, n_heads=4, d_ff=256, ffn="relu"),
        data=DataConfig("condcomp", {"n_operands": 4, "modulus": 13, "ops": ["SUM", "MAX", "MIN"], "n_eval": 1024}),
        optim=OptimConfig(lr=3e-3, warmup_steps=100, weight_decay=0.01),
        steps=1500, batch_size=128, eval_every=100, ckpt_every=500, keep=2, log_every=10, seed=0,
    )
