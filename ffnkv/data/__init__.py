"""Tasks and corpora, each a pure function of (seed, step); ``make_task(kind, **kwargs)`` builds one by name."""
from __future__ import annotations

import importlib

from ffnkv.errors import ConfigError

TASKS = {
    "condcomp": ("ffnkv.data.condcomp", "CondComp"),
    "facts": ("ffnkv.data.facts", "FactsTask"),
    "text": ("ffnkv.data.text", "TextTask"),
}


def make_task(kind: str, **kwargs):
    """The task ``kind`` (one of TASKS) built from its data-config fields."""
    if kind not in TASKS:
        raise ConfigError(f"data.kind={kind!r} is not allowed; use one of {', '.join(TASKS)}.")
    module, name = TASKS[kind]
    cls = getattr(importlib.import_module(module), name)
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"data config for {kind!r} is invalid ({error}); check the field names.") from None
