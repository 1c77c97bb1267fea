"""The noun/verb study's figures (``studies.pos_specialisation``)."""
from __future__ import annotations

import numpy as np

from studies.report.figures import plt, save_figure


def plot(result: dict, out_dir) -> list[str]:
    """``minilm_rahman.png`` (sparsity, specialists per layer, ablation) and ``minilm_selectivity.png``."""
    files = []
    sp = result["sparsity"]
    L = len(sp["pretrained"]["gini"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(range(L), sp["pretrained"]["gini"], "o-", label="pretrained")
    axes[0].plot(range(L), sp["initial"]["gini"], "s--", label="initialisation")
    axes[0].set(xlabel="layer", ylabel="mean token Gini of |m|", title="FFN sparsity")
    axes[0].legend()
    sel = result["selectivity"]
    axes[1].bar(np.arange(L) - 0.2, sel["noun_specialists_per_layer"], 0.4, label="noun")
    axes[1].bar(np.arange(L) + 0.2, sel["verb_specialists_per_layer"], 0.4, label="verb")
    axes[1].set(xlabel="layer", ylabel="specialists", title=f"BH-significant (FDR {sel['fdr']}), SI ≥ {sel['si_min']}")
    axes[1].legend()
    d = result["ablation"]["mean"]["delta_nll"]
    names = ["noun_set", "verb_set", "random_sets"]
    rand = result["ablation"]["mean"]["random_sets"]
    axes[2].bar(np.arange(3) - 0.2, [d[n]["noun"] for n in names], 0.4, label="masked nouns",
                yerr=[0, 0, rand["nll_noun_std"]], capsize=4)
    axes[2].bar(np.arange(3) + 0.2, [d[n]["verb"] for n in names], 0.4, label="masked verbs",
                yerr=[0, 0, rand["nll_verb_std"]], capsize=4)
    axes[2].set_xticks(range(3), ["noun set", "verb set", "random"])
    axes[2].set(ylabel="Δ NLL (mean-ablation)", title="ablation on masked-token prediction (random: mean ± sd)")
    axes[2].legend()
    fig.tight_layout()
    files.append(str(save_figure(fig, out_dir / "minilm_rahman.png", dpi=110)))
    fig, ax = plt.subplots(figsize=(7, 4))
    si_LF = result["_arrays"]["si_LF"]
    for l in range(L):
        ax.hist(si_LF[l], bins=60, range=(-1, 1), histtype="step", label=f"layer {l}")
    ax.set(xlabel="selectivity index of |m| (noun vs verb)", ylabel="neurons", title="noun/verb selectivity")
    ax.legend(fontsize=7)
    fig.tight_layout()
    files.append(str(save_figure(fig, out_dir / "minilm_selectivity.png", dpi=110)))
    return files


def write(result: dict, out_dir, config: dict | None = None) -> list[str]:
    """The study's figures and ``results.json`` (without the per-neuron arrays) under ``out_dir``."""
    from pathlib import Path

    from studies.report.write import write_json

    out_dir = Path(out_dir)
    files = plot(result, out_dir)
    kept = {k: v for k, v in result.items() if k != "_arrays"} | {"files": files}
    write_json(out_dir / "results.json", kept | ({"config": config} if config else {}))
    return files + [str(out_dir / "results.json")]
