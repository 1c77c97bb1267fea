"""Causal-tracing figures in the style of Meng et al. (2022): per-fact heatmaps (Fig. 1), category × layer
averages (Fig. 2) and severed paths (Fig. 3). matplotlib, Agg backend."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis.tracing import CATEGORIES  # noqa: E402

CMAPS = {"resid": "Purples", "mlp": "Greens", "attn": "Reds"}
TITLES = {"resid": "single restored layer (resid_post)", "mlp": "restored MLP (window)",
          "attn": "restored attention (window)"}


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fact_heatmap(path, restored_KTL, kinds, labels, subject_span, p_corrupt, title):
    """One fact: P[o] after restoring each (token, layer); subject tokens marked with '*'."""
    shown = [k for k in ("resid", "mlp", "attn") if k in kinds]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 0.32 * len(labels) + 1.6), squeeze=False)
    names = [f"{t}*" if subject_span[0] <= i < subject_span[1] else t for i, t in enumerate(labels)]
    for ax, kind in zip(axes[0], shown):
        grid_TL = restored_KTL[kinds.index(kind)][: len(labels)]
        im = ax.pcolormesh(grid_TL, cmap=CMAPS[kind], vmin=min(p_corrupt, grid_TL.min()))
        ax.invert_yaxis()
        ax.set_yticks(np.arange(len(names)) + 0.5, names, fontsize=7)
        ax.set_xticks(np.arange(grid_TL.shape[1]) + 0.5, np.arange(grid_TL.shape[1]))
        ax.set(title=TITLES[kind], xlabel="layer")
        fig.colorbar(im, ax=ax, label="p(o)")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def category_heatmaps(path, average: dict, kinds):
    """Average indirect effect per token category and layer (one panel per restored kind)."""
    shown = [k for k in ("resid", "mlp", "attn") if k in kinds]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.8 * len(shown), 3.2), squeeze=False)
    for ax, kind in zip(axes[0], shown):
        cats = [c for c in CATEGORIES if c in average[kind]]
        grid = np.array([average[kind][c]["mean"] for c in cats])
        im = ax.pcolormesh(grid, cmap=CMAPS[kind])
        ax.invert_yaxis()
        ax.set_yticks(np.arange(len(cats)) + 0.5, [c.replace("_", " ") for c in cats], fontsize=7)
        ax.set_xticks(np.arange(grid.shape[1]) + 0.5, np.arange(grid.shape[1]))
        ax.set(title=f"{kind}: average indirect effect", xlabel="layer")
        fig.colorbar(im, ax=ax)
    fig.suptitle(f"averaged over {average['n_facts']} facts", fontsize=9)
    _save(fig, path)


def severed_lines(path, average: dict, category: str = "last_subject"):
    """Meng et al. Fig. 3: IE of resid_post at ``category`` with MLP or attention outputs frozen, ±95% CI."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for kind, label in (("resid", "no intervention"), ("resid_sever_mlp", "MLP severed"),
                        ("resid_sever_attn", "attention severed")):
        if kind in average and category in average[kind]:
            row = average[kind][category]
            mean, ci = np.array(row["mean"]), np.array(row["ci"])
            xs = np.arange(len(mean))
            ax.plot(xs, mean, marker="o", label=label)
            ax.fill_between(xs, mean - ci, mean + ci, alpha=0.2)
    ax.set(title=f"indirect effect of h at {category.replace('_', ' ')} token", xlabel="layer", ylabel="average IE")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_all(trace: dict, average: dict, examples: list[dict], out_dir) -> list[str]:
    """Write the average heatmaps, the severed-path plot and one heatmap per example; returns the paths."""
    out = Path(out_dir)
    paths = [out / "tracing_categories.png", out / "tracing_severed.png"]
    category_heatmaps(paths[0], average, trace["kinds"])
    severed_lines(paths[1], average)
    for i, ex in enumerate(examples):
        p = out / f"tracing_fact{i}.png"
        fact_heatmap(p, ex["restored"], trace["kinds"], ex["labels"], ex["subject_span"], ex["p_corrupt"], ex["title"])
        paths.append(p)
    return [str(p) for p in paths]
