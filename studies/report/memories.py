"""Files of the memories study: ``memories.json``, ``promotion.json``, per-layer curves with their chance
baselines, ``triggers.txt`` and ``promotion.txt`` (readable examples)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from studies.report.figures import layer_ticks, save_figure, subplots
from studies.report.write import write_json, write_text


def curves(path, title: str, ylabel: str, series: dict, bands: dict | None = None):
    """One line per series over layers; ``bands``: label -> (mean, sd) drawn as a shaded baseline."""
    fig, ax = subplots(figsize=(5, 3.4))
    for label, ys in series.items():
        ax.plot(np.arange(len(ys)), ys, marker="o", label=label)
    for label, (mean, sd) in (bands or {}).items():
        mean, sd = np.asarray(mean), np.asarray(sd)
        xs = np.arange(len(mean))
        ax.plot(xs, mean, "k--", label=label)
        ax.fill_between(xs, mean - 2 * sd, mean + 2 * sd, color="k", alpha=0.15)
    ax.set(title=title, xlabel="layer", ylabel=ylabel)
    layer_ticks(ax)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def refinement_bars(path, ref: dict):
    fig, ax = subplots(figsize=(5, 3.4))
    bottom = np.zeros(len(ref["residual"]))
    for name, ys in ref.items():
        ax.bar(np.arange(len(ys)), ys, bottom=bottom, label=name)
        bottom += np.asarray(ys)
    ax.set(title="layer output top-1 comes from", xlabel="layer", ylabel="fraction of positions")
    layer_ticks(ax)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def triggers_text(result: dict) -> str:
    mem = result["memories"]
    lines = [f"Top trigger prefixes per key (Geva et al. 2021); values projected "
             f"{'through the final norm' if mem['final_norm'] else 'raw (x·E)'}.",
             "Each prefix ends at the position where the key fired; → marks the next token.", ""]
    agree = mem["agreement"]
    for layer, keys in enumerate(result["examples"]["keys"]):
        lines.append(f"=== layer {layer}: agreement {agree['agreement'][layer]:.3f} (shuffled baseline "
                     f"{agree['baseline'][layer]:.3f} ± {agree['baseline_sd'][layer]:.3f})")
        for key in keys:
            lines.append(f"key {layer}.{key['key']}  value top tokens: {', '.join(map(repr, key['value_top']))}"
                         + ("  AGREES" if key["agrees"] else ""))
            lines += [f"    m={t['coef']:7.3f}  {t['prefix']!r} → {t['next']!r}" for t in key["triggers"]]
        lines.append("")
    return "\n".join(lines)


def promotion_text(result: dict) -> str:
    promo, ex = result["promotion"], result["examples"]
    lines = [f"Geva et al. (2022): sub-updates m_i·‖v_i‖; top-{promo['top_n']} per position "
             f"(uniform rate {promo['uniform']:.4f}).", ""]
    for layer, dominant in enumerate(ex["dominant"]):
        lines.append(f"=== layer {layer}: {promo['values_ever_in_top_n'][layer]:.2%} of values ever in a top-n")
        lines += [f"  value {d['value']} in top-n at {d['fraction']:.2%} of positions; promotes "
                  f"{', '.join(map(repr, d['promotes']))}" for d in dominant]
        lines += [f"  cluster ({c['size']} values): centroid promotes {', '.join(map(repr, c['centroid_promotes']))}; "
                  f"members' top-1 {', '.join(map(repr, c['member_top1']))} ×{c['member_top1_counts']}"
                  for c in ex["clusters"][layer]]
        lines.append("")
    return "\n".join(lines)


def write(result: dict, out_dir) -> list[str]:
    """Every file of a memories-study result under ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    mem = result["memories"]
    ag, comp, rem = mem["agreement"], mem["composition"], mem["removal"]
    files = [
        curves(out / "agreement.png", "value top-1 = next token of key's top trigger", "agreement rate",
               {"agreement": ag["agreement"], "uniform 1/V": [ag["uniform"]] * len(ag["agreement"])},
               {"shuffled values (±2 sd)": (ag["baseline"], ag["baseline_sd"])}),
        curves(out / "active_memories.png", "active memories per position", "fraction of F with m > threshold",
               {"active": comp["active_fraction"]}),
        curves(out / "zero_agreement.png", "FFN top-1 differs from every active memory's", "zero-agreement rate",
               {"zero agreement": comp["zero_agreement"], "shuffled values": comp["zero_agreement_shuffled"]}),
        refinement_bars(out / "refinement.png", comp["refinement"]),
        curves(out / "removal.png", "coefficient change when a token is removed", "mean (m' - m) / |m|",
               {"remove last": rem["last"]["mean_relative_change"],
                "remove first": rem["first"]["mean_relative_change"]})]
    meta = {"model": result["model"], "settings": result["settings"]}
    files += [write_json(out / "memories.json", mem | meta | {"plots": [str(f) for f in files]}),
              write_json(out / "promotion.json", result["promotion"] | meta),
              write_text(out / "triggers.txt", triggers_text(result)),
              write_text(out / "promotion.txt", promotion_text(result) + "\n"),
              write_text(out / "memories.md", markdown(mem, result["promotion"]) + "\n")]
    return [str(f) for f in files]


def markdown(mem: dict, promo: dict | None) -> str:
    """The measured per-layer table of ``memories.json`` (and ``promotion.json``) with the chance baselines."""
    from studies.report.markdown import table

    ag, comp, rem = mem["agreement"], mem["composition"], mem["removal"]
    rows = [["agreement (value top-1 = top trigger's next token)", *ag["agreement"]],
            ["— shuffled pairs (chance), mean", *ag["baseline"]], ["— shuffled pairs, sd", *ag["baseline_sd"]],
            ["active memories (fraction of F)", *comp["active_fraction"]],
            ["zero agreement", *comp["zero_agreement"]],
            ["— shuffled values (chance)", *comp["zero_agreement_shuffled"]],
            *[[f"refinement: {k}", *v] for k, v in comp["refinement"].items()],
            ["remove last token: mean (m' − m)/|m|", *rem["last"]["mean_relative_change"]],
            ["remove first token: mean (m' − m)/|m|", *rem["first"]["mean_relative_change"]]]
    if promo:
        rows += [[f"top value in the top-{promo['top_n']} (fraction of positions)",
                  *[d[0] for d in promo["dominant_fraction"]]],
                 [f"— uniform rate top-{promo['top_n']} / F (chance)", *[promo["uniform"]] * len(ag["agreement"])]]
    L = len(ag["agreement"])
    return (f"{mem['n_tokens']:,} positions; values projected "
            f"{'through the final norm' if mem['final_norm'] else 'raw (v·E)'}; "
            f"1/V = {ag['uniform']:.4f}; {ag['n_shuffles']} shuffles.\n\n"
            + table(["per layer", *[f"L{l}" for l in range(L)]], rows, 3))
