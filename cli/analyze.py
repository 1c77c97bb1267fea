"""Analyse a trained run: ``ffnkv analyze RUN_DIR [ANALYSIS ...]`` (default: every analysis listed below).

RUN_DIR is a run dir (with config.json and checkpoints) or a dir of runs such as ``ffnkv compare`` writes;
then each run is analysed and a side-by-side comparison is written into ``RUN_DIR/analysis/``. Outputs (JSON
and PNG) go to ``<run>/analysis/``. Analyses of Rahman et al. (2026) on conditional-computation runs:
sparsity (Gini, active fraction; trained vs initial), specialisation (selectivity, specialists, generalists,
Jaccard), ablation (double dissociation with random controls), hierarchy (generalists → specialists); with
all four, ``rahman_summary.md`` states whether each claim holds. Add an analysis by adding an entry to
``ANALYSES``: a function ``(RunContext, out_dir) -> dict`` (its JSON).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ffnkv.errors import FfnkvError

NAME = "analyze"
HELP = "analyse a trained run or every run of a compare dir (sparsity, specialisation, ablation, hierarchy)"
RAHMAN = ("sparsity", "specialisation", "ablation", "hierarchy")
NEURON_ARRAYS = ("mean", "active", "si", "p", "specialist", "generalist")  # per neuron, [K, L, F] or [L, F]


class RunContext:
    """A loaded run: its configs, parameters, task and probe set; heavier shared state is built on first use."""

    def __init__(self, run_dir: Path, step: int | None, seed: int, n_random: int):
        from ffnkv.data import make_task
        from ffnkv.io.run import load_init_params, load_run

        self.run_dir = run_dir
        self.train_cfg, self.model_cfg, self.params = load_run(run_dir, step)
        data = self.train_cfg.get("data", {})
        self.task = make_task(data.get("kind", "condcomp"), **data.get("kwargs", {}))
        self.probe = self.task.eval_set(int(self.train_cfg.get("seed", 0)))
        self._load_init = lambda: load_init_params(run_dir)
        self.seed, self.n_random = seed, n_random
        self._study = None

    @property
    def label(self) -> str:
        kind = self.model_cfg.ffn
        return kind if self.run_dir.name == kind else f"{kind} ({self.run_dir.name})"

    def study(self):
        """The Rahman et al. analyses of this run (``analysis.rahman.Study``); condcomp runs only."""
        if "op" not in self.probe:
            raise FfnkvError(f"run {str(self.run_dir)!r} is not a conditional-computation run; the specialisation "
                             "analyses need data.kind=condcomp.")
        if self._study is None:
            from analysis.rahman import Study

            self._study = Study(self.params, self.model_cfg, self.probe, self.task.ops, self._load_init(),
                                seed=self.seed, n_random=self.n_random)
        return self._study


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _write_json(path: Path, value) -> None:
    _write_text(path, json.dumps(value, indent=1))


def _sparsity(ctx: RunContext, out: Path) -> dict:
    from analysis import plots_specialisation as plots

    result = ctx.study().sparsity()
    plots.gini_by_kind({ctx.model_cfg.ffn: result}, out / "sparsity.png")
    return result


def _specialisation(ctx: RunContext, out: Path) -> dict:
    from analysis import plots_specialisation as plots

    study = ctx.study()
    arrays = study.specialisation_arrays()
    plots.selectivity(None if arrays is None else arrays["si"], study.layers, study.ops, out / "selectivity.png")
    if arrays is not None:
        import numpy as np

        tmp = out / "specialisation_neurons.tmp.npz"
        np.savez_compressed(tmp, ops=np.asarray(study.ops), **{k: arrays[k] for k in NEURON_ARRAYS})
        tmp.replace(out / "specialisation_neurons.npz")
    return study.specialisation()


def _ablation(ctx: RunContext, out: Path) -> dict:
    from analysis import plots_specialisation as plots

    result = ctx.study().ablation()
    plots.dissociation(result, out / "dissociation.png")
    return result


def _hierarchy(ctx: RunContext, out: Path) -> dict:
    from analysis import plots_specialisation as plots

    result = ctx.study().hierarchy()
    plots.hierarchy(result, out / "hierarchy.png")
    return result


ANALYSES = {"sparsity": _sparsity, "specialisation": _specialisation, "ablation": _ablation, "hierarchy": _hierarchy}


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run dir, or a dir whose sub-dirs are runs (e.g. from ffnkv compare)")
    parser.add_argument("analyses", nargs="*", metavar="ANALYSIS",
                        help=f"which analyses (default: all): {', '.join(ANALYSES)}")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random control sets and permutations")
    parser.add_argument("--n-random", type=int, default=20, help="random control sets per ablated set (>= 20)")


def find_runs(path: Path) -> list[Path]:
    """``[path]`` if it is a run dir, else its sub-dirs that are run dirs (sorted); none raises FfnkvError."""
    if (path / "config.json").is_file():
        return [path]
    runs = sorted(p for p in path.iterdir() if (p / "config.json").is_file()) if path.is_dir() else []
    if not runs:
        raise FfnkvError(f"{str(path)!r} is neither a run dir nor a dir of runs (no config.json found); "
                         "pass the --run-dir of ffnkv train or the output dir of ffnkv compare.")
    return runs


def analyse_run(run_dir: Path, names, step, seed, n_random) -> dict:
    ctx = RunContext(run_dir, step, seed, n_random)
    out = run_dir / "analysis"
    out.mkdir(exist_ok=True)
    results, start = {}, time.perf_counter()
    for name in names:
        results[name] = ANALYSES[name](ctx, out)
        _write_json(out / f"{name}.json", results[name])
    row = {"label": ctx.label, "kind": ctx.model_cfg.ffn, "results": results}
    if all(name in results for name in RAHMAN):
        from analysis.rahman import summary_markdown

        study = ctx.study()
        row |= {"claims": study.claims(), "accuracy": study.accuracy()}
        _write_json(out / "rahman_claims.json", {"claims": row["claims"], "accuracy": row["accuracy"]})
        _write_text(out / "rahman_summary.md", summary_markdown({ctx.label: row}))
    row["seconds"] = time.perf_counter() - start
    print(f"{ctx.label}: {', '.join(names)} in {row['seconds']:.1f}s -> {out}")
    return row


def compare(path: Path, rows: list[dict]) -> None:
    """Side-by-side outputs of several runs in ``path/analysis``."""
    from analysis import plots_specialisation as plots
    from analysis.rahman import summary_markdown

    out = path / "analysis"
    out.mkdir(exist_ok=True)
    if all("sparsity" in r["results"] for r in rows):
        plots.gini_by_kind({r["label"]: r["results"]["sparsity"] for r in rows}, out / "gini_by_kind.png")
    with_claims = [r for r in rows if "claims" in r]
    _write_json(out / "rahman_comparison.json", {r["label"]: {"claims": r.get("claims"), "accuracy": r.get("accuracy"),
                                                              "seconds": r["seconds"]} for r in rows})
    if with_claims:
        _write_text(out / "rahman_summary.md", summary_markdown({r["label"]: r for r in with_claims}))


def run(args) -> int:
    names = args.analyses or list(ANALYSES)
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:
        raise FfnkvError(f"unknown analysis {unknown[0]!r}; choose from {', '.join(ANALYSES)}.")
    if args.n_random < 20:
        raise FfnkvError(f"--n-random={args.n_random} is too few; use at least 20 random control sets.")
    path = Path(args.run_dir)
    runs = find_runs(path)
    rows = [analyse_run(run_dir, names, args.step, args.seed, args.n_random) for run_dir in runs]
    if len(runs) > 1:
        compare(path, rows)
        print(f"comparison of {len(rows)} runs -> {path / 'analysis'}")
    return 0
