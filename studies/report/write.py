"""The one atomic writer: every file a study or command leaves is written to a temporary name, then renamed."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path, text: str) -> Path:
    return _atomic(path, lambda tmp: tmp.write_text(text))


def write_json(path, value) -> Path:
    return write_text(path, json.dumps(value, indent=1, default=_json_default) + "\n")


def write_npz(path, **arrays) -> Path:
    def save(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return _atomic(path, save)


def save_figure(fig, path, **kwargs) -> Path:
    """Saves a matplotlib figure (format from the suffix) and closes it."""
    import matplotlib.pyplot as plt

    fmt = Path(path).suffix.lstrip(".") or "png"
    try:
        return _atomic(path,
                       lambda tmp: fig.savefig(tmp, format=fmt, **({"dpi": 120, "bbox_inches": "tight"} | kwargs)))
    finally:
        plt.close(fig)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
