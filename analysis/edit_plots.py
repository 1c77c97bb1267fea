"""Plots and tables of editing results (matplotlib, Agg backend)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PROTOCOLS = (("rome_single", "ROME single"), ("rome_sequential", "ROME sequential"), ("memit", "MEMIT batch"))
BARS = ("ES", "PS", "NS", "S", "unrelated_acc")


def plot_scores(results: dict, path, title: str) -> None:
    """Grouped bars of ES, PS, NS, S and unrelated accuracy; ``results`` maps a row label to a protocol dict."""
    rows = [(label, name, proto) for label, res in results.items() for key, name in PROTOCOLS
            if (proto := res.get(key)) is not None]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows) + 2), 3.6))
    width = 0.8 / len(BARS)
    x = np.arange(len(rows))
    for i, metric in enumerate(BARS):
        ax.bar(x + (i - len(BARS) / 2 + 0.5) * width, [p[metric] for _, _, p in rows], width, label=metric)
    ax.set_xticks(x, [f"{label}\n{name}" if label else name for label, name, _ in rows], fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=len(BARS), loc="upper center", bbox_to_anchor=(0.5, -0.25))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A markdown table; floats to 3 decimals."""
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"
