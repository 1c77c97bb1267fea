"""matplotlib for files: the Agg backend is chosen here once, so no plotting module picks a backend itself."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from studies.report.write import save_figure as save_figure  # re-exported: plotting modules import this one


def subplots(*args, **kwargs):
    """``plt.subplots`` on the Agg backend."""
    return plt.subplots(*args, **kwargs)


def layer_ticks(ax, axis: str = "x") -> None:
    """Integer ticks only on a layer axis (a layer 0.5 does not exist)."""
    from matplotlib.ticker import MaxNLocator

    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))
