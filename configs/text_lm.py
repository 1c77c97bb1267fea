"""A small LM on real text: byte-level BPE, 4 layers, d_model 64, random 64-token windows (the ``text``
preset; edit a copy to change it).

The corpus is local text: ``$FFNKV_TEXT_FILES`` (a glob, e.g. ``/data/wikitext-103-raw/wiki.train.raw``;
add ``--set data.wikitext=True`` for WikiText's escapes), else the licence texts every Debian/Ubuntu system
ships in ``/usr/share/common-licenses`` (~76k tokens: enough to train and analyse, not to generalise).
Any other source replaces that one with a single override (docs/data.md): ``--set "data.files=['a.txt',
'more/*.txt']"``, ``--set data.array_record=corpus.array_record`` or ``--set data.tfds_name=NAME`` (a prepared
tfds dataset; with ``data.tfds_data_dir``, ``data.tfds_split``, ``data.text_key``).
The token memmap is cached under ``$FFNKV_DATA/text/<hash>`` (default ``data/text/``).
"""
import glob
import os

from ffnkv.config import ModelConfig
from ffnkv.errors import ConfigError
from train.config import DataConfig, OptimConfig, TrainConfig


def text_files() -> list[str]:
    """``$FFNKV_TEXT_FILES`` (a glob), else the licence texts every Debian/Ubuntu system ships."""
    pattern = os.environ.get("FFNKV_TEXT_FILES", "/usr/share/common-licenses/*")
    return sorted(p for p in glob.glob(pattern) if os.path.isfile(p) and not os.path.islink(p))


def get_config() -> TrainConfig:
    files = text_files()
    if not files and "FFNKV_TEXT_FILES" in os.environ:
        raise ConfigError(f"FFNKV_TEXT_FILES={os.environ['FFNKV_TEXT_FILES']!r} matches no regular file; set "
                          "FFNKV_TEXT_FILES to a text file or a glob of them, e.g. 'corpus/*.txt'.")
    return TrainConfig(
        model=ModelConfig(d_model=64, n_layers=4, n_heads=4, d_ff=256, ffn="relu"),
        data=DataConfig("text", {"files": files, "vocab_size_target": 1024, "seq_len": 64,
                                 "eval_fraction": 0.05, "n_eval": 128}),
        optim=OptimConfig(lr=3e-3, warmup_steps=50, weight_decay=0.01),
        steps=500, batch_size=32, eval_every=250, ckpt_every=250, keep=1, log_every=50, seed=0,
    )
