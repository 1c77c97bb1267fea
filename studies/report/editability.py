"""The editability study's files (``studies.editability``): one table of every FFN kind, JSON and a figure."""
from __future__ import annotations

from pathlib import Path

COLUMNS = ["ffn", "d_ff", "train_fact_acc", "peak_mlp_layer", "edit_layer", "neurons_per_fact", "ROME ES", "ROME PS",
           "ROME NS", "ROME S", "ROME seq S", "ROME seq unrelated", "MEMIT ES", "MEMIT PS", "MEMIT NS", "MEMIT S",
           "MEMIT unrelated"]


def text_table(result: dict) -> str:
    from studies.report.markdown import table

    return table(COLUMNS, [[r["row"][c] for c in COLUMNS] for r in result["kinds"].values()], digits=3)


def write(result: dict, out) -> str:
    """``editability.json``, ``editability.md`` and ``editability.png`` under ``out``; returns the table."""
    from studies.report.edit_figures import plot_scores
    from studies.report.write import write_json, write_text

    out, text = Path(out), text_table(result)
    write_json(out / "editability.json", result)
    write_text(out / "editability.md", "# Editability across FFN kinds\n\n" + text)
    plot_scores({k: r["edit"] for k, r in result["kinds"].items()}, out / "editability.png",
                "Editability across FFN kinds")
    return text
