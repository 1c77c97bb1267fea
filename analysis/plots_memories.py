"""Per-layer curves of the Geva et al. (2021, 2022) analyses (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(path, title, ylabel, series: dict):
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for label, ys in series.items():
        ax.plot(np.arange(len(ys)), ys, marker="o", label=label)
    ax.set(title=title, xlabel="layer", ylabel=ylabel)
    ax.set_xticks(np.arange(len(next(iter(series.values())))))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_all(results: dict, out_dir) -> list[str]:
    """Write agreement, active memories, zero agreement, refinement and removal PNGs; returns their paths."""
    out = Path(out_dir)
    paths = []
    ag = results["agreement"]
    p = out / "agreement.png"
    _curves(p, "value top-1 = next token of key's top trigger", "agreement rate",
            {"agreement": ag["agreement"], "shuffled baseline": ag["baseline"],
             "uniform 1/V": [ag["uniform"]] * len(ag["agreement"])})
    paths.append(p)
    comp = results["composition"]
    p = out / "active_memories.png"
    _curves(p, "active memories per position", "fraction of F with m > threshold", {"active": comp["active_fraction"]})
    paths.append(p)
    p = out / "zero_agreement.png"
    _curves(p, "FFN top-1 differs from every active memory's", "zero-agreement rate", {"zero agreement": comp["zero_agreement"]})
    paths.append(p)
    ref = comp["refinement"]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    bottom = np.zeros(len(ref["residual"]))
    for name, ys in ref.items():
        ax.bar(np.arange(len(ys)), ys, bottom=bottom, label=name)
        bottom += np.asarray(ys)
    ax.set(title="layer output top-1 comes from", xlabel="layer", ylabel="fraction of positions")
    ax.legend(fontsize=8)
    p = out / "refinement.png"
    _save(fig, p)
    paths.append(p)
    rem = results["removal"]
    p = out / "removal.png"
    _curves(p, "coefficient change when a token is removed", "mean (m' - m) / |m|",
            {"remove last": rem["last"]["mean_relative_change"], "remove first": rem["first"]["mean_relative_change"]})
    paths.append(p)
    return [str(x) for x in paths]
