"""Tasks and corpora. ``make_task(kind, **kwargs)`` builds one from a data config.

A task has ``vocab_size``, ``seq_len``, ``batch(seed, step, batch_size) -> dict`` and ``eval_set(seed) -> dict``
returning numpy arrays with at least ``tokens`` int32 [B,T], ``targets`` int32 [B,T] (the next token at each
position) and ``weights`` float32 [B,T] (1 where the loss counts). It may have
``eval_metrics(pred_BT, eval_batch) -> dict[str, float]`` for task-specific scores (e.g. accuracy per op).
"""
from __future__ import annotations

import dataclasses
import importlib

from ffnkv.errors import ConfigError

TASKS = {
    "condcomp": ("ffnkv.data.condcomp", "CondComp"),
    "facts": ("ffnkv.data.facts", "FactsTask"),
    "text": ("ffnkv.data.text", "TextTask"),
}


def register_task(kind: str, factory) -> None:
    """Add a task kind: ``factory(**kwargs)`` builds it (a class or function), or a (module, name) pair."""
    TASKS[kind] = factory


def task_class(kind: str):
    """The class (or factory) of task ``kind``; an unknown kind raises ConfigError."""
    if kind not in TASKS:
        raise ConfigError(f"data.kind={kind!r} is not a known task; use one of {', '.join(sorted(TASKS))}.")
    entry = TASKS[kind]
    return getattr(importlib.import_module(entry[0]), entry[1]) if isinstance(entry, tuple) else entry


def make_task(kind: str, **kwargs):
    """The task ``kind`` (one of ``TASKS``) built with ``kwargs``; unknown kinds or fields raise ConfigError."""
    cls = task_class(kind)
    if dataclasses.is_dataclass(cls):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(f"data field {unknown[0]!r} is unknown for task {kind!r}; known: "
                              f"{', '.join(sorted(known))}.")
    return cls(**kwargs)
