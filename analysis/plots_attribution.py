"""Knowledge-neuron figures in the style of Dai et al. (2022): where the neurons sit (Fig. 3) and what
suppressing / amplifying them does (Fig. 4). matplotlib, Agg backend."""
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


def layer_histogram(path, neurons_by_fact, n_layers: int):
    """Percentage of knowledge neurons in each layer."""
    layers = np.array([layer for ns in neurons_by_fact for layer, _ in ns], int)
    counts = np.bincount(layers, minlength=n_layers) if layers.size else np.zeros(n_layers)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar(np.arange(n_layers), 100 * counts / max(counts.sum(), 1))
    ax.set(title=f"knowledge neurons by layer ({int(counts.sum())} neurons)", xlabel="layer", ylabel="% of neurons")
    ax.set_xticks(np.arange(n_layers))
    _save(fig, path)


def effect_bars(path, by_relation: dict):
    """Mean relative change of p(correct) per relation: own facts vs unrelated facts, ×0 and ×2."""
    rels = sorted(by_relation)
    series = [("x0_own", "suppress: own"), ("x0_unrelated", "suppress: unrelated"),
              ("x2_own", "amplify: own"), ("x2_unrelated", "amplify: unrelated")]
    fig, ax = plt.subplots(figsize=(1.2 * len(rels) + 3, 3.6))
    width = 0.8 / len(series)
    for j, (key, label) in enumerate(series):
        ys = [100 * (by_relation[r].get(key) or 0.0) for r in rels]
        ax.bar(np.arange(len(rels)) + (j - 1.5) * width, ys, width, label=label)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(np.arange(len(rels)), rels, rotation=30, fontsize=8)
    ax.set(ylabel="relative change of p(correct), %", title="scaling each fact's knowledge neurons")
    ax.legend(fontsize=7)
    _save(fig, path)


def attribution_example(path, attr_LF, neurons, title):
    """One prompt's attribution scores per layer (each dot a neuron); the fact's knowledge neurons circled."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    L, F = attr_LF.shape
    for layer in range(L):
        ax.scatter(layer + np.linspace(-0.3, 0.3, F), attr_LF[layer], s=3, color="tab:blue")
    for layer, unit in neurons:
        ax.scatter(layer - 0.3 + 0.6 * unit / max(F - 1, 1), attr_LF[layer, unit], s=40, facecolors="none", edgecolors="r")
    ax.set(title=title, xlabel="layer (neurons spread within)", ylabel="attribution")
    ax.set_xticks(np.arange(L))
    _save(fig, path)


def plot_all(result: dict, attr_example_LF, example_title: str, n_layers: int, out_dir) -> list[str]:
    out = Path(out_dir)
    neurons = [f["neurons"] for f in result["facts"]]
    paths = [out / "knowledge_neurons_layers.png", out / "knowledge_neurons_effects.png",
             out / "knowledge_neurons_example.png"]
    layer_histogram(paths[0], neurons, n_layers)
    effect_bars(paths[1], result["effects"]["by_relation"])
    attribution_example(paths[2], attr_example_LF, neurons[0], example_title)
    return [str(p) for p in paths]
