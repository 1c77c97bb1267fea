"""Where a study's files go by default: under a run dir's ``analysis/``, else ``runs/STUDY/NAME``."""
from __future__ import annotations

from pathlib import Path


def default_out(out, model, study: str) -> Path:
    """``out`` if given; ``RUN/analysis/STUDY`` for a trained run; ``runs/STUDY/NAME`` for any other model."""
    if out:
        return Path(out)
    if model.run is not None:
        return Path(model.run.path) / "analysis" / study
    return Path("runs") / study / Path(str(model.name)).name
