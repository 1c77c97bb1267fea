"""A small LM on real text (issue 5): byte-level BPE, 4 layers, d_model 64, random 64-token windows.

The corpus is local text: ``$FFNKV_TEXT_FILES`` (a glob, e.g. ``/data/wikitext-103-raw/wiki.train.raw``;
add ``--set data.wikitext=True`` for WikiText's escapes), else the licence texts every Debian/Ubuntu system
ships in ``/usr/share/common-licenses`` (~76k tokens: enough to train and analyse, not to generalise).
The token memmap is cached under ``$FFNKV_DATA/text/<hash>`` (default ``data/text/``). This is the ``text``
preset (``train/presets.py``).
"""
from train.presets import text as get_config  # noqa: F401
