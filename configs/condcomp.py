"""Conditional computation (Rahman et al. 2026): the default of ``ffnkv compare`` (see train/presets.py)."""
from train.presets import condcomp


def get_config():
    return condcomp()
