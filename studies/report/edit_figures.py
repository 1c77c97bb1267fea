"""Figures and markdown of the editing study (rendering only)."""
from __future__ import annotations

import numpy as np
from matplotlib.patches import Patch

from studies.report.figures import save_figure, subplots
from studies.report.markdown import table

PROTOCOLS = (("unedited", "unedited"), ("rome_single", "ROME single"), ("rome_sequential", "ROME sequential"),
             ("memit", "MEMIT batch"))
BARS = ("ES", "PS", "NS", "S", "unrelated_acc")
COLUMNS = ("ES", "PS", "NS", "S", "EM", "PM", "NM", "unrelated_acc")


def plot_scores(results: dict, path, title: str) -> None:
    """Grouped bars of ES, PS, NS, S and unrelated accuracy per protocol, the unedited model first (the baseline
    each edit is read against, hatched); every bar is labelled with its value, so a zero shows as "0", and each
    group with its number of edits and unrelated facts. ``results`` maps a row label to an edit result."""
    rows = [(label, name, proto, res) for label, res in results.items() for key, name in PROTOCOLS
            if (proto := res.get(key)) is not None]
    fig, ax = subplots(figsize=(max(6, 1.2 * len(rows) + 1.5), 3.8))
    width = 0.8 / len(BARS)
    x = np.arange(len(rows))
    for i, metric in enumerate(BARS):
        ys = [p[metric] for _, _, p, _ in rows]
        bars = ax.bar(x + (i - len(BARS) / 2 + 0.5) * width, ys, width, label=metric, color=f"C{i}",
                      hatch=["//" if name == "unedited" else "" for _, name, _, _ in rows], edgecolor="white")
        ax.bar_label(bars, [f"{y:.2f}".rstrip("0").rstrip(".") if y else "0" for y in ys], fontsize=5, padding=1)
    ax.set_xticks(x, ["\n".join(([label] if label else []) + [name, f"n = {res['n_edits']} edits",
                                                                f"{res['n_unrelated']} unrelated"])
                      for label, name, _, res in rows], fontsize=7)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score")
    ax.set_title(title)
    handles = [Patch(color=f"C{i}", label=metric) for i, metric in enumerate(BARS)]
    ax.legend(handles=handles, fontsize=7, ncol=len(BARS), loc="upper center", bbox_to_anchor=(0.5, -0.22))
    save_figure(fig, path)


def edit_markdown(result: dict) -> str:
    """The report of one ``studies.editing.run`` result."""
    rows = [[name] + [result[key].get(c) for c in COLUMNS] for key, name in PROTOCOLS if key in result]
    lines = [f"# Fact editing ({result['model']}, {result['ffn']})", "",
             f"{result['n_edits']} edits of facts the model knows ({result['n_known_facts']}/{result['n_facts']}), "
             f"{result['n_unrelated']} unrelated facts; layer {result['layer']} ({result['layer_rule']['rule']}), "
             f"MEMIT layers {result['memit_layers']}, token {result['token']}, constraint {result['constraint']}.", "",
             table(["protocol", *COLUMNS], rows, digits=3)]
    if "S_by_layer" in result["layer_rule"]:
        by = result["layer_rule"]["S_by_layer"]
        lines += ["Layer rule (ROME S on calibration facts):", "", table(["layer", *by], [["S", *by.values()]], 3)]
    if "delta_check" in result:
        d = result["delta_check"]
        lines += [f"Testbed check: unconstrained δ at layer {d['layer']} flips {d['flip_rate']:.2f} of {d['n']} facts "
                  f"(NLL {d['nll']:.3f}, ‖δ‖ {d['delta_norm']:.1f}).", ""]
    if "memit_lambda_rule" in result:
        r = result["memit_lambda_rule"]
        lines += [f"MEMIT λ = {r['lambda']:.4g} ({r['rule']}; ratio {r['ratio']:.3f}, mean kᵀC⁻¹k "
                  f"{r['mean_key_mahalanobis']:.4g}, "
                  f"d_ff {r['d_ff']}).", ""]
    if result.get("memit_lambda_sweep"):
        sweep = result["memit_lambda_sweep"]
        readings = result["memit_lambda_rule"].get("readings")
        if readings:
            lines += [f"MEMIT S over the ratio r = λ / mean kᵀC⁻¹k (one program over λ): the band rule gives r = "
                      f"{readings['d_ff']:.3f} if GPT-J's keys have E[kᵀC⁻¹k] = d_ff and r = "
                      f"{readings['measured']:.3f} "
                      f"if {readings['key_scale']}·d_ff, as SmolLM2's do; here mean kᵀC⁻¹k = "
                      f"{result['memit_lambda_rule']['key_scale_here']:.2f}·d_ff.", ""]
        else:
            lines += ["MEMIT λ sweep:", ""]
        lines += [table(["λ", "λ ratio", "band share", "reading", "ES", "PS", "NS", "S", "unrelated_acc"],
                        [[p["lambda"], p["lambda_ratio"], p.get("band_realised", "—"), p.get("reading") or "—",
                          p["ES"], p["PS"], p["NS"], p["S"], p["unrelated_acc"]] for p in sweep], 3)]
    return "\n".join(lines)


def plot_lambda_sweep(result: dict, path) -> None:
    """MEMIT S, ES, NS and unrelated accuracy against the ratio r (log axis), the two readings marked."""
    sweep = [p for p in result.get("memit_lambda_sweep", []) if p.get("reading") != "paper λ = 15000"]
    if not sweep:
        return
    sweep = sorted(sweep, key=lambda p: p["lambda_ratio"])
    fig, ax = subplots(figsize=(5.5, 3.4))
    r = [p["lambda_ratio"] for p in sweep]
    for metric in ("S", "ES", "NS", "unrelated_acc"):
        ax.plot(r, [p[metric] for p in sweep], marker="o", label=metric, linewidth=2 if metric == "S" else 1)
    readings = result["memit_lambda_rule"].get("readings") or {}
    for name, value in readings.items():
        if name != "key_scale":
            ax.axvline(value, color="grey", linestyle=":", linewidth=1)
            ax.text(value, 0.02, " E[kᵀC⁻¹k] = " + ("d_ff" if name == "d_ff" else f"{readings['key_scale']}·d_ff"),
                    rotation=90, fontsize=7, color="grey", va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("r = λ / mean kᵀC⁻¹k")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"MEMIT over r, layers {result['memit_layers']}")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def write(result: dict, out, name: str) -> list[str]:
    """Every file of one ``studies.editing.run`` result under ``out``: ``edit.json``, ``edit.md``, ``edit.png``
    and ``edit_lambda_sweep.png``; ``name`` is the model's, for the figure's title."""
    from pathlib import Path

    from studies.report.write import write_json, write_text

    out = Path(out)
    files = [write_json(out / "edit.json", result), write_text(out / "edit.md", edit_markdown(result))]
    plot_scores({"": result}, out / "edit.png", f"{name}: edits at layer {result['layer']} ({result['token']})")
    plot_lambda_sweep(result, out / "edit_lambda_sweep.png")
    return [str(f) for f in files] + [str(out / "edit.png"), str(out / "edit_lambda_sweep.png")]
