"""A small LM that memorises a synthetic facts world (issue 5): 100 entities × 6 relations = 600 facts.

The config is the ``facts`` preset (``train/presets.py``); edit a copy of this file to change it.
"""
from train.presets import facts as get_config  # noqa: F401
