"""metrics.jsonl: one JSON object per line, ``{"step": s, ...}``; on resume, lines past the restored step go.

``write_summaries`` turns it into ``metrics.csv`` (one row per step and seed, a column per scalar, for any CSV
reader or spreadsheet) and ``loss.png`` (training and eval loss against step), from the file on the host: the
train loop calls it when a run ends (done, interrupted or diverged) and when it resumes, never inside a step.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path


class MetricsLog:
    def __init__(self, path: Path, resume_step: int, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled
        if enabled:
            self._truncate(resume_step)

    def _truncate(self, resume_step: int) -> None:
        """Keep only records of steps ≤ resume_step so a resumed run's log equals an uninterrupted one (a run
        starting from scratch re-evaluates step 0, so it keeps nothing)."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if 0 < resume_step and record.get("step", 0) <= resume_step:
                kept.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def read_records(path) -> list[dict]:
    """The records of a metrics.jsonl; a last line cut short by a kill is skipped."""
    records = []
    for line in Path(path).read_text().splitlines() if Path(path).exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def per_seed_rows(records: list[dict], first_seed: int = 0) -> list[dict]:
    """One row per (step, seed): the records of a step merged; a multi-seed run's lists split by seed."""
    rows: dict = {}
    for record in records:
        width = max((len(v) for v in record.values() if isinstance(v, list)), default=1)
        for i in range(width):
            row = rows.setdefault((record["step"], i), {"step": record["step"], "seed": first_seed + i})
            row |= {k: v[i] if isinstance(v, list) else v for k, v in record.items() if k != "step"}
    return [rows[k] for k in sorted(rows)]


def write_csv(rows: list[dict], path) -> Path:
    """``rows`` as CSV (header: step, seed, then every scalar in order of first appearance; blank = not logged)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    tmp = Path(f"{path}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return Path(path)


def plot_loss(rows: list[dict], path, title: str) -> Path:
    """Training loss (line) and eval loss (dots) against step, one colour per seed; log scale when the loss
    falls by more than 20×. Drawn on a bare ``Figure`` (no pyplot, no global backend)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.subplots()
    seeds = sorted({r["seed"] for r in rows})
    values = []
    for j, seed in enumerate(seeds):
        mine = [r for r in rows if r["seed"] == seed]
        for key, style in (("loss", "-"), ("eval/loss", "o--")):
            points = [(r["step"], r[key]) for r in mine if key in r]
            if points:
                xs, ys = zip(*points)
                values += ys
                label = ("train" if key == "loss" else "eval") + (f" (seed {seed})" if len(seeds) > 1 else "")
                ax.plot(xs, ys, style, color=f"C{j % 10}", label=label, markersize=3,
                        alpha=1.0 if key == "loss" else 0.8)
    positive = [v for v in values if v > 0]
    if positive and max(positive) > 20 * min(positive):
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    if values:
        ax.legend(fontsize=7)
    tmp = Path(f"{path}.tmp")
    fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    return Path(path)


def write_summaries(run_dir, first_seed: int = 0) -> list[Path]:
    """``metrics.csv`` and ``loss.png`` beside ``run_dir``'s metrics.jsonl (nothing when it has no records)."""
    run_dir = Path(run_dir)
    rows = per_seed_rows(read_records(run_dir / "metrics.jsonl"), first_seed)
    if not rows:
        return []
    return [write_csv(rows, run_dir / "metrics.csv"), plot_loss(rows, run_dir / "loss.png", run_dir.name)]
