"""Named default configs: ``ffnkv train NAME`` takes one instead of a config file, and ``configs/*.py`` return them.

``condcomp`` is also the embedded default of ``ffnkv compare``; ``reproduce`` trains all three.
"""
import glob
import os

from ffnkv.config import ModelConfig
from ffnkv.errors import ConfigError
from train.config import DataConfig, OptimConfig, TrainConfig


def condcomp() -> TrainConfig:
    """Conditional computation (Rahman et al. 2026): ``[OP] x1..x4 [=] y``, P=13, SUM/MAX/MIN; a 2-layer
    d_model-64 decoder trained 1500 steps of 128 sequences (≈ 30 s per FFN kind on 2 CPU cores)."""
    return TrainConfig(
        model=ModelConfig(d_model=64, n_layers=2, n_heads=4, d_ff=256, ffn="relu"),
        data=DataConfig("condcomp", {"n_operands": 4, "modulus": 13, "ops": ["SUM", "MAX", "MIN"], "n_eval": 1024}),
        optim=OptimConfig(lr=3e-3, warmup_steps=100, weight_decay=0.01),
        steps=1500, batch_size=128, eval_every=100, ckpt_every=500, keep=2, log_every=10, seed=0,
    )


def facts() -> TrainConfig:
    """A small LM that memorises a synthetic facts world: 100 entities × 6 relations = 600 facts.

    Loss on the attribute tokens of ``[BOS] fact . fact . …`` packs of training-template renderings; eval
    reports ``train_fact_acc`` (top-1 attribute accuracy over every fact × training template) and
    ``paraphrase_acc`` (the two held-out templates per relation).
    """
    return TrainConfig(
        model=ModelConfig(d_model=64, n_layers=4, n_heads=4, d_ff=256, ffn="relu"),
        data=DataConfig("facts", {"n_entities": 100, "n_relations": 6, "n_attributes": 12, "seed": 0,
                                  "facts_per_seq": 4, "loss": "attribute"}),
        optim=OptimConfig(lr=3e-3, warmup_steps=100, weight_decay=0.01),
        steps=800, batch_size=64, eval_every=200, ckpt_every=400, keep=1, log_every=50, seed=0,
    )


def text_files() -> list[str]:
    """``$FFNKV_TEXT_FILES`` (a glob), else the licence texts every Debian/Ubuntu system ships."""
    pattern = os.environ.get("FFNKV_TEXT_FILES", "/usr/share/common-licenses/*")
    return sorted(p for p in glob.glob(pattern) if os.path.isfile(p) and not os.path.islink(p))


def text() -> TrainConfig:
    """A small LM on local text (``text_files()``): byte-level BPE, 4 layers, d_model 64, 64-token windows."""
    files = text_files()
    if not files and "FFNKV_TEXT_FILES" in os.environ:
        pattern = os.environ["FFNKV_TEXT_FILES"]
        raise ConfigError(f"FFNKV_TEXT_FILES={pattern!r} matches no regular file; set FFNKV_TEXT_FILES to a text "
                          "file or a glob of them, e.g. 'corpus/*.txt'.")
    return TrainConfig(
        model=ModelConfig(d_model=64, n_layers=4, n_heads=4, d_ff=256, ffn="relu"),
        data=DataConfig("text", {"files": files, "vocab_size_target": 1024, "seq_len": 64,
                                 "eval_fraction": 0.05, "n_eval": 128}),
        optim=OptimConfig(lr=3e-3, warmup_steps=50, weight_decay=0.01),
        steps=500, batch_size=32, eval_every=250, ckpt_every=250, keep=1, log_every=50, seed=0,
    )


PRESETS = {"condcomp": condcomp, "facts": facts, "text": text}
