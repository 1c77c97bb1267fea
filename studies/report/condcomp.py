"""The conditional-computation comparison's report: the accuracy table and the eval-curve figure."""
from __future__ import annotations

from pathlib import Path


def table(rows: dict, threshold: float) -> str:
    ops = list(next(iter(rows.values()))["accuracy"])
    key = f"steps_to_{round(threshold * 100)}"
    head = (["kind", "d_ff", "params", "ffn params", "eval loss"] + [f"acc {op}" for op in ops]
            + [f"steps≥{threshold:.0%} all"])
    head += ["stopped at"] + [f"slope {op}" for op in ops if op != "all"]
    lines = [head]
    for kind, r in rows.items():
        slopes = r.get("end_slope_per_1000_steps", {})
        lines.append([kind, str(r["d_ff"]), str(r["params"]), str(r["ffn_params"]), f"{r['final_eval_loss']:.3f}"]
                     + [f"{r['accuracy'][op]:.3f}" for op in ops] + [str(r[key]["all"] or "—")]
                     + [f"{r['steps']} ({r.get('stopped', 'cap')})"]
                     + [f"{slopes[op]:+.3f}" if op in slopes else "—" for op in ops if op != "all"])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in lines)


def plot(rows: dict, path: Path) -> None:
    from studies.report.figures import plt, save_figure

    ops = list(next(iter(rows.values()))["accuracy"])
    fig, axes = plt.subplots(1, len(ops), figsize=(4 * len(ops), 3.4), sharey=True)
    for ax, op in zip(axes, ops):
        for kind, r in rows.items():
            ax.plot(r["curve"]["step"], r["curve"][op], label=kind,
                    linestyle="--" if kind in ("none", "linear") else "-")
        ax.set_title(f"eval accuracy: {op}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def write(result: dict, out: Path) -> list[str]:
    """``compare.json`` and ``compare.png`` of a comparison (``studies.condcomp.run``) under ``out``."""
    from studies.report.write import write_json

    write_json(Path(out) / "compare.json", result)
    plot(result["kinds"], Path(out) / "compare.png")
    return [str(Path(out) / "compare.json"), str(Path(out) / "compare.png")]
