"""PNG figures for the Rahman et al. (2026) analyses (matplotlib, Agg backend); each takes result dicts."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path) -> Path:
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def gini_by_kind(sparsity_by_kind: dict, path) -> Path:
    """Token Gini per FFN layer, trained (solid) vs initial (hatched), one group of bars per FFN kind."""
    kinds = [k for k, s in sparsity_by_kind.items() if s["trained"]]
    layers = sorted({int(l) for k in kinds for l in sparsity_by_kind[k]["trained"]})
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * max(len(kinds), 1) * max(len(layers), 1) / 2, 3.4))
    width = 0.8 / (2 * max(len(layers), 1))
    for i, kind in enumerate(kinds):
        for j, layer in enumerate(layers):
            for s, (stage, hatch) in enumerate((("trained", None), ("initial", "//"))):
                row = sparsity_by_kind[kind].get(stage, {}).get(str(layer))
                if row is None:
                    continue
                x = i + (2 * j + s - len(layers) + 0.5) * width
                ax.bar(x, row["token_gini_mean"], width, yerr=row["token_gini_std"], hatch=hatch,
                       color=f"C{j}", alpha=0.9 if s == 0 else 0.45, edgecolor="k", linewidth=0.4,
                       label=f"layer {layer} {stage}" if i == 0 else None)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_ylim(0, 1)
    ax.set_ylabel("token Gini of |m| (mean ± std)")
    ax.set_title("Sparsity per layer: trained vs initial")
    if kinds:
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def selectivity(si_KLF, layers, ops, path) -> Path:
    """Distribution of each neuron's selectivity index for its preferred op (max over ops), per layer."""
    fig, axes = plt.subplots(1, max(len(layers), 1), figsize=(3.4 * max(len(layers), 1), 2.8), squeeze=False)
    if not layers:
        axes[0, 0].text(0.5, 0.5, "no FFN layer", ha="center", va="center")
    for ax, layer in zip(axes[0], layers):
        best = si_KLF[:, layer].argmax(0)
        for k, op in enumerate(ops):
            ax.hist(si_KLF[k, layer][best == k], bins=np.linspace(-1, 1, 41), alpha=0.6, label=f"prefers {op}")
        ax.set_title(f"layer {layer}")
        ax.set_xlabel("max selectivity index")
    axes[0, 0].set_ylabel("neurons")
    if layers:
        axes[0, 0].legend(fontsize=7)
    return _save(fig, path)


def dissociation(abl: dict, path) -> Path:
    """Accuracy per op (columns) after ablating each op's specialist set (rows), zero and mean; the random
    controls' mean ± std in brackets."""
    if abl.get("applicable") is False:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no FFN: nothing to ablate", ha="center", va="center")
        return _save(fig, path)
    ops = abl["ops"]
    fig, axes = plt.subplots(1, 2, figsize=(2.6 * len(ops) + 5, 0.9 * len(ops) + 1.8), layout="constrained")
    for ax, mode in zip(axes, ("zero", "mean")):
        acc = np.asarray(abl[mode]["accuracy"])
        cm, cs = np.asarray(abl[mode]["control_mean"]), np.asarray(abl[mode]["control_std"])
        ax.imshow(acc, vmin=0, vmax=1, cmap="RdYlGn")
        for i in range(len(ops)):
            for j in range(len(ops)):
                ax.text(j, i, f"{acc[i, j]:.2f}\n({cm[i, j]:.2f}±{cs[i, j]:.2f})", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(ops)), ops)
        ax.set_yticks(range(len(ops)), [f"ablate S_{op} ({n})" for op, n in zip(ops, abl["set_sizes"])])
        ax.set_xlabel("accuracy on op")
        ax.set_title(f"{mode}-ablation (baseline " + " ".join(f"{b:.2f}" for b in abl["baseline"]) + ")", fontsize=8)
    return _save(fig, path)


def hierarchy(hier: dict, path) -> Path:
    """Drive of each generalist (rows) on each later-layer specialist (columns), first source layer; and the
    mean |effect| of generalists vs random-neuron controls per source layer."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [2.2, 1]}, layout="constrained")
    if not hier.get("applicable") or not hier["layers"]:
        for ax in axes:
            ax.axis("off")
        axes[0].text(0.5, 0.5, "hierarchy: " + hier.get("reason", ""), ha="center", va="center")
        return _save(fig, path)
    first = next(iter(hier["layers"]))
    row = hier["layers"][first]
    drive = np.asarray(row["drive"])
    scale = max(float(np.abs(drive).max()), 0.05)
    im = axes[0].imshow(drive, aspect="auto", cmap="coolwarm", vmin=-scale, vmax=scale, interpolation="nearest")
    fig.colorbar(im, ax=axes[0], label="drive = −relative change")
    axes[0].set_xlabel("specialists in later layers")
    axes[0].set_ylabel(f"generalist (layer {first})")
    axes[0].set_yticks(range(len(row["generalists"])), [str(n) for n in row["generalists"]], fontsize=6)
    names = list(hier["layers"])
    gen = [hier["layers"][n]["generalist_score_mean"] or 0.0 for n in names]
    ctrl = [hier["layers"][n]["control_score_mean"] or 0.0 for n in names]
    x = np.arange(len(names))
    axes[1].bar(x - 0.2, gen, 0.4, label="generalists")
    axes[1].bar(x + 0.2, ctrl, 0.4, label="random controls")
    axes[1].set_xticks(x, [f"layer {n}" for n in names])
    axes[1].set_ylabel("mean |relative effect|")
    axes[1].set_title(f"p = {hier['p_value']:.3g}", fontsize=9)
    axes[1].legend(fontsize=7)
    return _save(fig, path)
