"""Files of the knowledge study: ``attribution.json``, ``tracing.json`` and the figures in the style of Dai et
al. (2022, Fig. 3–4) and Meng et al. (2022, Fig. 1–3)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.tracing import CATEGORIES
from studies.report.figures import layer_ticks, save_figure, subplots
from studies.report.write import write_json, write_text

CMAPS = {"resid": "Purples", "mlp": "Greens", "attn": "Reds"}


def layer_shares(path, summary: dict, layers):
    """Share of knowledge neurons per layer (bars) against the chance baselines: each layer's share of the
    attribution mass and of the neurons (lines)."""
    counts = np.asarray(summary["layer_counts"], float)
    base = summary["layer_baselines"]
    fig, ax = subplots(figsize=(max(4.5, 0.25 * len(layers) + 3), 3.2))
    xs = np.arange(len(counts))
    ax.bar(xs, counts / max(counts.sum(), 1), label=f"knowledge neurons ({int(counts.sum())})")
    ax.plot(xs, base["attribution_mass"], "o-", color="tab:orange", label="attribution mass")
    ax.plot(xs, base["neuron_count"], "k--", label="neuron count")
    ax.set(xlabel="layer", ylabel="share", title="where knowledge neurons sit vs chance")
    layer_ticks(ax)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def effect_bars(path, by_relation: dict):
    """Mean relative change of p(correct) per relation: own facts vs unrelated facts, ×0 and ×2."""
    rels = sorted(by_relation)
    series = [("x0_own", "suppress: own"), ("x0_unrelated", "suppress: unrelated"),
              ("x2_own", "amplify: own"), ("x2_unrelated", "amplify: unrelated")]
    fig, ax = subplots(figsize=(1.2 * len(rels) + 3, 3.6))
    width = 0.8 / len(series)
    for j, (key, label) in enumerate(series):
        ys = [100 * (by_relation[r].get(key) or 0.0) for r in rels]
        ax.bar(np.arange(len(rels)) + (j - 1.5) * width, ys, width, label=label)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(np.arange(len(rels)), [r[:18] for r in rels], rotation=30, fontsize=7)
    ax.set(ylabel="relative change of p(correct), %", title="scaling each fact's knowledge neurons")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def attribution_example(path, example: dict):
    """One prompt's attribution scores per layer (each dot a neuron); the fact's knowledge neurons circled."""
    attr_LF = np.asarray(example["attr_LF"])
    L, F = attr_LF.shape
    fig, ax = subplots(figsize=(max(5, 0.25 * L + 3), 3.2))
    for layer in range(L):
        ax.scatter(layer + np.linspace(-0.3, 0.3, F), attr_LF[layer], s=3, color="tab:blue")
    for layer, unit in example["neurons"]:
        ax.scatter(layer - 0.3 + 0.6 * unit / max(F - 1, 1), attr_LF[layer, unit], s=40,
                   facecolors="none", edgecolors="r")
    ax.set(title=example["title"][:80], xlabel="layer (neurons spread within)", ylabel="attribution")
    layer_ticks(ax)
    return save_figure(fig, path)


def fact_heatmap(path, example: dict, kinds, layers):
    """One fact: P[o] after restoring each (token, layer); subject tokens marked with '*' (Meng Fig. 1)."""
    shown = [k for k in ("resid", "mlp", "attn") if k in kinds]
    labels, (s0, s1) = example["labels"], example["subject_span"]
    restored = np.asarray(example["restored"])
    fig, axes = subplots(1, len(shown), figsize=(3.6 * len(shown), 0.32 * len(labels) + 1.6), squeeze=False)
    names = [f"{t}*" if s0 <= i < s1 else t for i, t in enumerate(labels)]
    for ax, kind in zip(axes[0], shown):
        grid_TL = restored[kinds.index(kind)]
        im = ax.pcolormesh(grid_TL, cmap=CMAPS[kind], vmin=min(example["p_corrupt"], grid_TL.min()))
        ax.invert_yaxis()
        ax.set_yticks(np.arange(len(names)) + 0.5, names, fontsize=7)
        ax.set_xticks(np.arange(len(layers)) + 0.5, layers, fontsize=7)
        ax.set(title=f"restored {kind}", xlabel="layer")
        fig.colorbar(im, ax=ax, label="p(o)")
    fig.suptitle(example["title"][:100], fontsize=9)
    return save_figure(fig, path)


def category_heatmaps(path, average: dict, kinds, layers, title: str):
    """Average indirect effect per token category and layer, one panel per restored kind (Meng Fig. 2); the
    categories are named once, on the left, and at most about a dozen layers are labelled."""
    shown = [k for k in ("resid", "mlp", "attn") if k in kinds and k in average]
    fig, axes = subplots(1, len(shown), figsize=(3.2 * len(shown) + 1.2, 3.2), squeeze=False, sharey=True,
                         layout="constrained")
    every = -(-len(layers) // 12)
    for j, (ax, kind) in enumerate(zip(axes[0], shown)):
        cats = [c for c in CATEGORIES if c in average[kind]]
        im = ax.pcolormesh(np.array([average[kind][c]["mean"] for c in cats]), cmap=CMAPS[kind])
        if j == 0:
            ax.invert_yaxis()
            ax.set_yticks(np.arange(len(cats)) + 0.5, [c.replace("_", " ") for c in cats], fontsize=7)
        ax.set_xticks(np.arange(0, len(layers), every) + 0.5, layers[::every], fontsize=7)
        ax.set_title(f"{kind}: average indirect effect", fontsize=9)
        ax.set_xlabel("layer")
        fig.colorbar(im, ax=ax, shrink=0.9)
    fig.suptitle(f"{title}, {average['n_facts']} facts", fontsize=9)
    return save_figure(fig, path)


def severed_lines(path, average: dict, layers, categories=("last_subject", "last")):
    """Meng Fig. 3: IE of resid_post at each category with MLP or attention outputs frozen, ±95% CI."""
    fig, axes = subplots(1, len(categories), figsize=(4.6 * len(categories), 3.4), squeeze=False)
    for ax, category in zip(axes[0], categories):
        for kind, label in (("resid", "no intervention"), ("resid_sever_mlp", "MLP severed"),
                            ("resid_sever_attn", "attention severed")):
            if kind in average and category in average[kind]:
                mean, ci = np.array(average[kind][category]["mean"]), np.array(average[kind][category]["ci"])
                ax.plot(layers, mean, marker="o", label=label)
                ax.fill_between(layers, mean - ci, mean + ci, alpha=0.2)
        ax.set(title=f"IE of h at {category.replace('_', ' ')} token", xlabel="layer", ylabel="average IE")
        layer_ticks(ax)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def write(result: dict, out_dir) -> list[str]:
    """Every file of a knowledge-study result under ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    files = []
    if "attribution" in result:
        attr = result["attribution"]
        layers = list(range(result["model"]["n_layers"]))
        files += [layer_shares(out / "knowledge_neurons_layers.png", attr["summary"], layers),
                  effect_bars(out / "knowledge_neurons_effects.png", attr["effects"]["by_relation"]),
                  attribution_example(out / "knowledge_neurons_example.png", attr["example"])]
        files.append(write_json(out / "attribution.json", {k: v for k, v in attr.items() if k != "example"}
                                | {k: result[k] for k in ("model", "settings", "screening")}
                                | {"selection": result.get("selection")}))
    if "tracing" in result:
        tr = result["tracing"]
        kinds, layers = tr["config"]["kinds"], tr["config"]["layers"]
        files.append(category_heatmaps(out / "tracing_categories.png", tr["known_facts"], kinds, layers,
                                       f"window {tr['config']['window']}"))
        if tr["single_layer"]:
            files.append(category_heatmaps(out / "tracing_categories_single.png", tr["single_layer"], kinds, layers,
                                           "single-layer restores"))
        if "resid_sever_mlp" in kinds or "resid_sever_attn" in kinds:
            files.append(severed_lines(out / "tracing_severed.png", tr["known_facts"], layers))
        files += [fact_heatmap(out / f"tracing_fact{i}.png", ex, kinds, layers) for i, ex in enumerate(tr["examples"])]
        files.append(write_json(out / "tracing.json", {k: v for k, v in tr.items() if k != "examples"}
                                | {"model": result["model"], "screening": result["screening"],
                                   "selection": result.get("selection")}))
    files.append(write_text(out / "knowledge.md", markdown(result.get("attribution"), result.get("tracing")) + "\n"))
    return [str(f) for f in files]


def _cells(row: dict, layers) -> list:
    return [f"{m:+.3f} ± {c:.3f}" for m, c in zip(row["mean"], row["ci"])][: len(layers)]


def markdown(attr: dict | None, trace: dict | None) -> str:
    """The measured tables of ``attribution.json`` / ``tracing.json`` (either may be None)."""
    from studies.report.markdown import table

    text = []
    if attr:
        s = attr["summary"]
        base, counts = s["layer_baselines"], np.asarray(s["layer_counts"], float)
        coarse = np.asarray(s["coarse_layer_counts"], float)
        text += [f"{s['n_facts']} facts, {s['n_prompts']} prompts (top-1 accuracy {s['prompt_top1_accuracy']:.2f}); "
                 f"IG completeness error {s['completeness']['relative_error']:.2%}; {s['mean_neurons_per_fact']:.1f} "
                 f"knowledge neurons per fact ({s['facts_with_neurons']} facts have some).", "",
                 table(["layer", "knowledge neurons", "share", "coarse neurons share", "attribution mass (chance)",
                        "neuron count (chance)"],
                       [[l, int(counts[l]), counts[l] / max(counts.sum(), 1), coarse[l] / max(coarse.sum(), 1),
                         base["attribution_mass"][l], base["neuron_count"][l]] for l in range(len(counts))], 3)]
        m, md = s["effects_mean"], s["effects_median"]
        text += [table(["scaled neurons → p(answer) of", "×0 mean", "×0 median", "×2 mean", "×2 median"],
                       [[name, m[f"x0_{g}"], md[f"x0_{g}"], m[f"x2_{g}"], md[f"x2_{g}"]]
                        for name, g in (("the fact's neurons → own prompts", "own"),
                                        ("the fact's neurons → unrelated facts", "unrelated"),
                                        ("random same-layer neurons → own prompts (chance)", "random"))], 3)]
        vp = attr["value_projection"]
        text += [f"Answer rank in the knowledge neurons' values (logit lens, median over neurons): "
                 f"{vp['answer_rank_median']} vs {vp['random_answer_rank_median']} for random values of the same "
                 f"layers (vocabulary {vp['vocab_size']}).", ""]
    if trace:
        kf, layers = trace["known_facts"], trace["config"]["layers"]
        text += [f"{kf['n_facts']} facts averaged ({trace.get('averaged_over', 'known')}); p clean "
                 f"{kf['p_clean']['mean']:.3f}, p corrupted {kf['p_corrupt']['mean']:.3f}, total effect "
                 f"{kf['total_effect']['mean']:.3f} ± {kf['total_effect']['ci']:.3f}; noise ν = "
                 f"{trace['config']['noise']:.3f}, "
                 f"{trace['config']['samples']} samples, window {trace['config']['window']}, layers {layers}.", "",
                 table(["restored", "early site: last subject token (peak ± CI, layer)", "late site: last token"],
                       [[name.replace("resid (window)", "resid")]
                        + [f"{v[k]['peak']:.3f} ± {v[k]['ci']:.3f} (L{v[k]['layer']})" if k in v else "–"
                           for k in ("early", "late")] for name, v in trace["sites"].items()])]
        rows = []
        for label, avg in (("window", kf), ("single layer", trace.get("single_layer") or {})):
            for kind in ("resid", "mlp", "attn"):
                if (label == "window" or kind != "resid") and kind in avg:
                    name = "resid (one state)" if kind == "resid" else f"{kind} ({label})"
                    rows += [[name, c.replace("_", " "), *_cells(avg[kind][c], layers)]
                             for c in CATEGORIES if c in avg[kind]]
        for kind, row in (trace.get("whole_subject") or {}).items():
            rows.append([f"{kind} (whole subject)", "all subject tokens", *_cells(row, layers)])
        text += ["Average indirect effect per token category (mean ± 95% CI over facts):", "",
                 table(["restored", "token", *[f"L{l}" for l in layers]], rows)]
    return "\n".join(text)
