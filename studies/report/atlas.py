"""The atlas's report (``studies.atlas``): ``atlas.json``, ``atlas.md`` and three figures — the kind × metric
heatmap with intervals, per-layer curves per kind, and the placement and capacity curves; for one pretrained
model (``studies.atlas_pretrained``) ``atlas_pretrained.json``, ``.md`` and its per-layer curves; and the
generated blocks of docs/atlas.md."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from studies.report.markdown import fmt, table
from studies.report.write import write_json, write_text

FIGURES = ("atlas_heatmap.png", "atlas_layers.png", "atlas_placement.png")
LAYER_CURVES = {"tracing": "tracing MLP effect (last subject token)", "necessity": "necessity: drop in p(answer)",
                "kn_mass": "knowledge-neuron attribution mass", "rome_S": "ROME S at the layer",
                "memit_S": "MEMIT S (band ending at the layer)"}


def ci(iv, digits: int = 2) -> str:
    """``point [lo, hi]`` of an interval dict, '–' when there is none."""
    if not iv:
        return "–"
    return f"{fmt(iv['point'], digits)} [{fmt(iv['lo'], digits)}, {fmt(iv['hi'], digits)}]"


def markdown(result: dict, figures: str = "") -> str:
    """atlas.md: every number comes from ``result`` (``studies.atlas.run``)."""
    s, summ, m = result["settings"], result["summary"], result["machine"]
    rows = summ["rows"]
    out = [f"# The FFN-variant atlas ({s['profile']} profile)\n",
           f"Profile {s['profile']}: seeds {s['seed']}…{s['seed'] + s['seeds'] - 1}, depths "
           f"{list(s['depths'])}, d_model "
           f"{s['d_model']}, relu d_ff {s['d_ff']} (other kinds matched in FFN parameters), facts world "
           f"{s['n_entities']} entities × {s['n_relations']} relations. Every analysed model reaches train-fact "
           f"accuracy ≥ {result['target']}. Intervals: 95% hierarchical bootstrap over seeds, then facts. "
           f"Took {m['seconds']:.0f} s on {m['cpus']} CPUs, load average {m['loadavg_start'][0]:.1f} at the start and "
           f"{m['loadavg_end'][0]:.1f} at the end.\n"]
    h = summ["headline"]
    lines = [[label, (h[key] or {}).get("kind", "–"), ci(h[key])] for label, key in (
        ("most editable (ROME S, best layer)", "most_editable"),
        ("most editable (MEMIT S, best layer)", "most_editable_memit"),
        ("sparsest (token Gini)", "sparsest"), ("most localisable (tracing peak)", "most_localisable_tracing"),
        ("most localisable (necessity peak)", "most_localisable_necessity"))]
    out += ["## Headline\n", table(["question", "kind", "value [95% interval]"], lines)]
    pred = h["localisation_predicts_editing"]
    out += ["Does localisation predict editing? Spearman ρ with ROME edit success, pooled over kinds and seeds "
            "(verdict: ρ > 0 by the whole interval):\n",
            table(["localiser", "across", "ρ [95% interval]", "verdict"],
                  [[k.split("|")[0], k.split("|")[1], ci(v), (v or {}).get("verdict", "–")] for k, v in pred.items()])]
    metrics = list(summ["metrics"])
    reached = {k: f"{r['n_seeds'] - len(r['below_target'])}/{r['n_seeds']}" for k, r in rows.items()}
    out += ["## Kinds × metrics\n", table(["kind", "d_ff", "steps", "seeds ≥ target"] + metrics,
                                          [[k, r["d_ff"], r["steps"], reached[k]]
                                           + [ci(r["metrics"].get(x)) for x in metrics] for k, r in rows.items()]),
            "".join(f"* `{k}`: {v}\n" for k, v in summ["metrics"].items()) + "\n"]
    below = {k: r["below_target"] for k, r in rows.items() if r["below_target"]}
    if below:
        out.append("Below the target (capacity results, not edited): "
                   + "; ".join(f"{k} seed indices {v}" for k, v in below.items()) + ".\n")
    out.append("## Per layer\n")
    for k, r in rows.items():
        if not r["layers"]:
            continue
        c = r["curves"]
        names = ("tracing", "necessity", "kn_mass", "rome_S", "memit_S", "gini", "gini_init", "agreement")
        header = ["layer", "tracing", "necessity", "KN mass", "ROME S", "MEMIT S", "Gini", "Gini init", "agreement"]
        out += [f"### {k}\n", table(header, [[l] + [ci(c[n][i]) for n in names] for i, l in enumerate(r["layers"])]),
                "Peak layers per seed: " + "; ".join(f"{n} {v}" for n, v in r["peak_layers"].items()) + ".\n"]
    out.append("## Localisation vs editing per kind (Spearman ρ)\n")
    keys = sorted({key for r in rows.values() for key in r["correlations"]})
    out.append(table(["kind"] + [key.replace("|", " ") for key in keys],
                     [[k] + [ci(r["correlations"].get(key)) for key in keys] for k, r in rows.items() if r["layers"]]))
    out += ["## Placement: one relu FFN in layer k only\n",
            table(["FFN in layer", "d_ff", "steps", "train-fact accuracy"],
                  [[k, p["d_ff"], p["steps"], ci(p["train_fact_acc"])] for k, p in summ["placement"].items()]),
            "## Capacity of attention alone\n",
            table(["facts", "steps", "train-fact accuracy"],
                  [[n, c["steps"], ci(c["train_fact_acc"])] for n, c in summ["capacity"].items()])]
    if figures:
        out.append("".join(f"![{name}]({figures}{name})\n" for name in FIGURES))
    return "\n".join(out)


def _colour_rows(rows, metrics):
    vals = np.array([[(r["metrics"].get(x) or {}).get("point", np.nan) for x in metrics] for r in rows.values()], float)
    finite = np.isfinite(vals)
    lo, hi = np.nanmin(np.where(finite, vals, np.inf), 0), np.nanmax(np.where(finite, vals, -np.inf), 0)
    return vals, (vals - lo) / np.where(hi > lo, hi - lo, 1.0)


def heatmap(result: dict, path) -> None:
    from studies.report.figures import save_figure, subplots

    rows, metrics = result["summary"]["rows"], list(result["summary"]["metrics"])
    vals, scaled = _colour_rows(rows, metrics)
    fig, ax = subplots(figsize=(1.5 * len(metrics) + 1.5, 0.7 * len(rows) + 1.8))
    ax.imshow(np.ma.masked_invalid(scaled), cmap="viridis", aspect="auto", vmin=0, vmax=1)
    for i, r in enumerate(rows.values()):
        for j, x in enumerate(metrics):
            iv = r["metrics"].get(x)
            if iv:
                ax.text(j, i, f"{iv['point']:.2f}\n[{iv['lo']:.2f}, {iv['hi']:.2f}]", ha="center", va="center",
                        fontsize=6.5, color="white" if scaled[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(metrics)), [x.replace("_", " ") for x in metrics], rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), list(rows), fontsize=8)
    ax.set_title("FFN kinds × metrics (colour: scaled per column; text: point [95% interval])", fontsize=9)
    save_figure(fig, path)


def layer_curves(result: dict, path) -> None:
    from studies.report.figures import save_figure, subplots

    rows = {k: r for k, r in result["summary"]["rows"].items() if r["layers"]}
    fig, axes = subplots(1, len(LAYER_CURVES), figsize=(3.6 * len(LAYER_CURVES), 3.2))
    for ax, (name, title) in zip(np.atleast_1d(axes), LAYER_CURVES.items()):
        for k, r in rows.items():
            ivs = r["curves"].get(name, [])
            x = [l for l, iv in zip(r["layers"], ivs) if iv]
            pts = [iv for iv in ivs if iv]
            if not pts:
                continue
            ax.plot(x, [p["point"] for p in pts], marker="o", label=k)
            ax.fill_between(x, [p["lo"] for p in pts], [p["hi"] for p in pts], alpha=0.15)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def placement_curves(result: dict, path) -> None:
    from studies.report.figures import save_figure, subplots

    summ = result["summary"]
    fig, (ax, bx) = subplots(1, 2, figsize=(9, 3.4))
    for ax_, data, xlab, title in ((ax, summ["placement"], "the one layer with an FFN", "fact accuracy one FFN buys"),
                                   (bx, summ["capacity"], "facts in the world", "attention alone: capacity")):
        items = [(int(k), v["train_fact_acc"]) for k, v in data.items() if v["train_fact_acc"]]
        if items:
            x, ivs = zip(*items)
            y = np.array([iv["point"] for iv in ivs])
            err = np.array([[iv["point"] - iv["lo"] for iv in ivs], [iv["hi"] - iv["point"] for iv in ivs]])
            ax_.errorbar(x, y, yerr=np.maximum(err, 0), marker="o", capsize=3)
        ax_.axhline(result["target"], color="grey", linestyle=":", label=f"target {result['target']}")
        ax_.set_xlabel(xlab)
        ax_.set_ylabel("train-fact accuracy")
        ax_.set_title(title, fontsize=9)
        ax_.set_ylim(0, 1.05)
        ax_.grid(alpha=0.3)
    none = next((r for k, r in summ["rows"].items() if r["kind"] == "none"), None)
    if none and none["metrics"].get("train_fact_acc"):
        ax.axhline(none["metrics"]["train_fact_acc"]["point"], color="red", linestyle="--", label="no FFN")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


PRETRAINED_CURVES = {"tracing": LAYER_CURVES["tracing"], "necessity": LAYER_CURVES["necessity"],
                     "rome_S": "ROME S at the layer (layer rule)"}
RHO_NAMES = {"layers": "across layers (per-layer mean vs ROME S)",
             "facts": "across facts (per layer, mean of the layers' ρ)"}


def pretrained_markdown(result: dict, figure: str = "") -> str:
    """atlas_pretrained.md: every number from ``result`` (``studies.atlas_pretrained.run``)."""
    s, m, mm = result["settings"], result["machine"], result["measure"]
    n_cal = len(result["calibration"])
    out = [f"# Does localisation predict editing? {result['model']}\n",
           f"{result['model']} ({result['n_layers']} layers, d_ff {result['d_ff']}): {n_cal} calibration facts of the "
           f"editing layer rule (known facts of {result['n_known_facts']} known in the {result['n_facts']} of the fact "
           f"set; seed {s['seed']}), ROME one edit at a time at {len(mm['layers'])} layers; causal tracing "
           f"({s['trace_samples']} noise samples, window 1, last subject token) and necessity (FFN mean-ablated, "
           f"means over {s['mean_batches']} batches of local text) of the same facts at every layer; knowledge-"
           f"neuron mass not measured. The layer rule picks layer {result['rule_layer']}. Intervals: 95% "
           f"bootstrap over facts ({s['n_boot']} draws). Took {m['seconds']:.0f} s wall, {m['cpu_seconds']:.0f} s "
           f"CPU (this process), {m['cpus']} CPUs, load average {m['loadavg_start'][0]:.1f} at the start and "
           f"{m['loadavg_end'][0]:.1f} at the end.\n",
           "## Spearman ρ with ROME edit success (verdict: ρ > 0 by the whole interval)\n",
           table(["localiser", "across", "ρ [95% interval]", "verdict", "undefined draws"],
                 [[k.split("|")[0], RHO_NAMES[k.split("|")[1]], ci(v), (v or {}).get("verdict", "–"),
                   (v or {}).get("n_undefined", "–")] for k, v in result["intervals"].items()]),
           _verdicts(result["intervals"]),
           "## Per layer (95% bootstrap interval over facts)\n"]
    c = result["curves"]
    rho_facts = {k.split("|")[0]: v for k, v in result["rho"].items() if k.endswith("|facts|rome")}
    out.append(table(["layer", "tracing", "necessity", "ROME S", "ρ tracing (facts)", "ρ necessity (facts)"],
                     [[l, ci(c["tracing"][i]), ci(c["necessity"][i]), ci(c["rome_S"][i]),
                       fmt(rho_facts["tracing"][i], 2), fmt(rho_facts["necessity"][i], 2)]
                      for i, l in enumerate(mm["layers"])]))
    if figure:
        out.append(f"![per-layer curves]({figure})\n")
    return "\n".join(out)


def _verdicts(intervals: dict) -> str:
    """One sentence per verdict: which ρs lie wholly above 0, wholly at or below it, straddle it, or are undefined."""
    by = {}
    for k, v in intervals.items():
        name = k.split("|")[0] + " across " + k.split("|")[1]
        by.setdefault((v or {}).get("verdict", "undefined (a constant side, or fewer than 3 points)"), []).append(name)
    words = {"holds": "Localisation predicts editing (ρ > 0 by the whole interval)",
             "fails": "Localisation does not predict editing (the whole interval ≤ 0)",
             "inconclusive": "The interval straddles 0 (inconclusive)"}
    return " ".join(f"{words.get(k, 'No ρ: ' + k)}: {', '.join(v)}." for k, v in by.items()) + "\n"


def pretrained_curves(result: dict, path) -> None:
    """Tracing, necessity and ROME S per layer, each with its interval over facts."""
    from studies.report.figures import save_figure, subplots

    layers = result["measure"]["layers"]
    fig, axes = subplots(1, len(PRETRAINED_CURVES), figsize=(3.8 * len(PRETRAINED_CURVES), 3.2))
    for ax, (name, title) in zip(np.atleast_1d(axes), PRETRAINED_CURVES.items()):
        ivs = result["curves"][name]
        x = [l for l, iv in zip(layers, ivs) if iv]
        pts = [iv for iv in ivs if iv]
        ax.plot(x, [p["point"] for p in pts], marker="o", markersize=3)
        ax.fill_between(x, [p["lo"] for p in pts], [p["hi"] for p in pts], alpha=0.2)
        ax.axvline(result["rule_layer"], color="grey", linestyle=":", label=f"layer rule: {result['rule_layer']}")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.suptitle(f"{result['model']}: {len(result['calibration'])} facts, 95% intervals over facts", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def write_pretrained(result: dict, out) -> list[Path]:
    """atlas_pretrained.json, .md and .png under ``out``; the paths written."""
    out = Path(out)
    paths = [write_json(out / "atlas_pretrained.json", result)]
    pretrained_curves(result, out / "atlas_pretrained.png")
    paths.append(write_text(out / "atlas_pretrained.md", pretrained_markdown(result, "atlas_pretrained.png")))
    return paths + [out / "atlas_pretrained.png"]


BEGIN, END = "<!-- atlas:begin -->", "<!-- atlas:end -->"
PRETRAINED_BEGIN, PRETRAINED_END = "<!-- atlas-pretrained:begin -->", "<!-- atlas-pretrained:end -->"


def pretrained_docs_section(result: dict, source: str) -> str:
    """docs/atlas.md's generated block of one pretrained model's ``atlas_pretrained.json`` (``source``)."""
    head = (f"Generated by `ffnkv report --atlas {source}` from `{source}`, written by `{result.get('command', '?')}`"
            f" at commit {result.get('meta', {}).get('commit', 'unknown')}.\n\n")
    body = pretrained_markdown(result).split("\n", 1)[1].replace("\n## ", "\n### ")
    return f"{PRETRAINED_BEGIN}\n{head}{body}\n{PRETRAINED_END}"


def docs_section(result: dict, source: str) -> str:
    """The generated part of docs/atlas.md: which run made the table (``source``, its settings and commit) and
    the table itself, headings one level down."""
    meta = result.get("meta", {})
    head = (f"Generated by `ffnkv report --atlas {source}` from `{source}`, written by `ffnkv atlas --profile "
            f"{result['settings']['profile']} --seed {result['settings']['seed']}` at commit "
            f"{meta.get('commit', 'unknown')}.\n\n")
    body = markdown(result).split("\n", 1)[1].replace("\n## ", "\n### ")
    return f"{BEGIN}\n{head}**The {result['settings']['profile']} profile.**\n{body}\n{END}"


def replace_in_docs(text: str, section: str) -> str:
    """``text`` (docs/atlas.md) with the block between the markers ``section`` starts and ends with (the trained
    atlas's or a pretrained model's) replaced by ``section``."""
    begin, end = (PRETRAINED_BEGIN, PRETRAINED_END) if section.startswith(PRETRAINED_BEGIN) else (BEGIN, END)
    if begin not in text or end not in text:
        from ffnkv.errors import FfnkvError

        raise FfnkvError(f"docs/atlas.md has no {begin} … {end} block; restore the markers.")
    return text.split(begin)[0] + section + text.split(end, 1)[1]


def write(result: dict, out) -> list[Path]:
    """atlas.json, atlas.md and the figures under ``out``; the paths written."""
    out = Path(out)
    paths = [write_json(out / "atlas.json", result)]
    heatmap(result, out / FIGURES[0])
    layer_curves(result, out / FIGURES[1])
    placement_curves(result, out / FIGURES[2])
    paths.append(write_text(out / "atlas.md", markdown(result)))
    return paths + [out / f for f in FIGURES]
