"""Conditional computation (Rahman et al. 2026): ``[OP] x1..x4 [=] y``, P=13, SUM/MAX/MIN; a 2-layer
d_model-64 decoder trained on batches of 128 sequences for at most 3000 steps (≈ 30 s per 1500 steps per FFN
kind on 2 CPU cores); ``ffnkv compare`` stops a kind earlier once its eval accuracy has stopped rising
(``studies.condcomp.Plateau``; the learning-rate schedule runs over the 3000-step cap).

The ``condcomp`` preset and the embedded default of ``ffnkv compare``; edit a copy to change it.
"""
from ffnkv.config import ModelConfig
from train.config import DataConfig, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(d_model=64, n_layers=2, n_heads=4, d_ff=256, ffn="relu"),
        data=DataConfig("condcomp", {"n_operands": 4, "modulus": 13, "ops": ["SUM", "MAX", "MIN"], "n_eval": 1024}),
        optim=OptimConfig(lr=3e-3, warmup_steps=100, weight_decay=0.01),
        steps=3000, batch_size=128, eval_every=100, ckpt_every=500, keep=2, log_every=10, seed=0,
    )
