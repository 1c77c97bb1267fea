"""The specialisation study's report: PNG figures and the markdown summary; each takes result dicts."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from studies.report.figures import plt, save_figure


def _save(fig, path) -> Path:
    return save_figure(fig, path, dpi=110)


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


def _fmt(x, digits=3):
    return "—" if x is None else f"{x:.{digits}f}"


def summary_markdown(per_kind: dict) -> str:
    """A short report: one row per model (FFN kind), one column per claim, with the numbers behind each verdict.

    ``per_kind`` maps a label (e.g. the FFN kind) to {"claims": judge(...), "accuracy": {...}}.
    """
    lines = ["# Rahman et al. (2026): functional specialisation on our models", "",
             "Verdict rules: `studies/verdicts.py` (`rahman_claims`); measures: "
             "`analysis/{sparsity,specialisation,ablation,hierarchy}.py`.",
             "", "| model | acc | 1 extreme sparsity (token Gini trained / init; active frac) | 2 distinct groups "
             "(#specialists per op (at init); max Jaccard) | 3 double dissociation (pairs zero / mean) "
             "| 4 generalists → specialists (score gen / ctrl; p) |", "|---|---|---|---|---|---|"]
    for label, row in per_kind.items():
        c, acc = row["claims"], row["accuracy"]["all"]
        s, g, d, h = c["sparsity"], c["distinct_groups"], c["double_dissociation"], c["hierarchy"]
        if s["verdict"] == "not applicable":
            lines.append(f"| {label} | {acc:.3f} | n/a (no FFN) | n/a | n/a | n/a |")
            continue
        jac = [j for j in g["jaccard"].values() if j is not None]
        init = g.get("n_specialists_initial") or {}
        spec = ", ".join(f"{op} {n}" + (f" ({init[op]})" if op in init else "") for op, n in g["n_specialists"].items())
        dd = " / ".join(str(len(d["pairs_holding"][m])) for m in ("zero", "mean")) + f" of {len(d['pairs'])}"
        hier = h["why"] if "why" in h else (
            f"{_fmt(h['generalist_score'])} / {_fmt(h['control_score'])}; p={_fmt(h['p_value'], 4)}")
        lines.append(
            f"| {label} | {acc:.3f} | **{s['verdict']}**: {_fmt(s['token_gini'])} / {_fmt(s['token_gini_initial'])}; "
            f"{_fmt(s['active_fraction'])} | **{g['verdict']}**: {spec}; {_fmt(max(jac) if jac else None)} "
            f"| **{d['verdict']}**: {dd} | **{h['verdict']}**: {hier} |")
    return "\n".join(lines) + "\n"


NEURON_ARRAYS = ("mean", "active", "si", "p", "specialist", "generalist")  # per neuron, [K, L, F] or [L, F]


def write_run(out: Path, row: dict, ops) -> Path:
    """One run's files: ``<analysis>.json`` + PNG each, the per-neuron arrays, and with all four analyses
    ``rahman_claims.json`` + ``rahman_summary.md``."""
    from studies.report.write import write_json, write_npz, write_text

    results = row["results"]
    plots = {"sparsity": lambda r: gini_by_kind({row["kind"]: r}, out / "sparsity.png"),
             "ablation": lambda r: dissociation(r, out / "dissociation.png"),
             "hierarchy": lambda r: hierarchy(r, out / "hierarchy.png")}
    out.mkdir(parents=True, exist_ok=True)
    for name in ("sparsity", "specialisation", "ablation", "hierarchy"):
        if name not in results:
            continue
        result = dict(results[name])
        arrays = result.pop("arrays", None)
        if name == "specialisation":
            selectivity(None if arrays is None else arrays["si"], result.get("layers", []), ops,
                        out / "selectivity.png")
            if arrays is not None:
                write_npz(out / "specialisation_neurons.npz", ops=np.asarray(ops),
                          **{k: arrays[k] for k in NEURON_ARRAYS})
        else:
            plots[name](result)
        write_json(out / f"{name}.json", result)
    if "claims" in results:
        write_json(out / "rahman_claims.json", {"claims": results["claims"], "accuracy": results["accuracy"]})
        write_text(out / "rahman_summary.md", summary_markdown({row["label"]: results}))
    return out


def write_comparison(out: Path, rows: list[dict]) -> None:
    """Side-by-side outputs of several runs: ``gini_by_kind.png``, ``rahman_comparison.json``, the summary."""
    from studies.report.write import write_json, write_text

    out.mkdir(parents=True, exist_ok=True)
    if all("sparsity" in r["results"] for r in rows):
        gini_by_kind({r["label"]: r["results"]["sparsity"] for r in rows}, out / "gini_by_kind.png")
    write_json(out / "rahman_comparison.json", {r["label"]: {"claims": r["results"].get("claims"),
                                                             "accuracy": r["results"].get("accuracy"),
                                                             "seconds": r["seconds"]} for r in rows})
    with_claims = {r["label"]: r["results"] for r in rows if "claims" in r["results"]}
    if with_claims:
        write_text(out / "rahman_summary.md", summary_markdown(with_claims))
