"""Analyse a trained run: ``ffnkv analyze RUN_DIR [ANALYSIS ...] [--out DIR]`` (default: all four analyses).

RUN_DIR is a run dir or a dir of runs such as ``ffnkv compare`` writes; then each run is analysed and a
side-by-side comparison is written too. The study is ``studies.specialisation`` (Rahman et al. 2026) on the
run's own probe set; files by ``studies.report.specialisation``.
"""
from __future__ import annotations

from pathlib import Path

from cli.args import add_out, add_seed, nonnegative_int, progress_of

NAME = "analyze"
HELP = "analyse a trained run or every run of a compare dir (sparsity, specialisation, ablation, hierarchy)"
DESCRIPTION = """Rahman et al. (2026)'s analyses of a conditional-computation run: sparsity, specialisation,
ablation, hierarchy, and with all four the claims, on the run's own probe set. RUN_DIR is a run dir, or a dir
of runs such as ffnkv compare writes; then every run is analysed and a side-by-side comparison is written.
Files (JSON, PNG, rahman_summary.md) go to --out: by default RUN/analysis/ for each run and RUN_DIR/analysis/
for the comparison; with --out DIR, DIR itself for one run, DIR/RUN/ per run and DIR for the comparison."""


def add_arguments(parser) -> None:
    from studies.specialisation import ANALYSES

    parser.add_argument("run_dir", help="a run dir, or a dir whose sub-dirs are runs (e.g. from ffnkv compare)")
    parser.add_argument("analyses", nargs="*", metavar="ANALYSIS",
                        help=f"which analyses (default: all): {', '.join(ANALYSES)}")
    parser.add_argument("--step", type=nonnegative_int, default=None, help="checkpoint step (default: the newest)")
    add_seed(parser, "random control sets and permutations")
    parser.add_argument("--n-random", type=int, default=20, help="random control sets per ablated set (>= 20)")
    add_out(parser, "RUN/analysis per run, RUN_DIR/analysis for a comparison")


def run(args) -> int:
    from studies.report.specialisation import write_comparison
    from studies.specialisation import ANALYSES, SpecialisationSettings, analyse_run, find_runs

    settings = SpecialisationSettings(tuple(args.analyses or ANALYSES), args.seed, args.n_random)
    path = Path(args.run_dir)
    runs = find_runs(path)
    many = len(runs) > 1
    outs = {r: (r / "analysis" if args.out is None else Path(args.out) / r.name if many else Path(args.out))
            for r in runs}
    rows = []
    for r in progress_of(args).chunks(runs, "analyze", "runs"):
        rows.append(analyse_run(r, settings, outs[r], args.step))
        print(f"{rows[-1]['label']}: {', '.join(settings.analyses)} in {rows[-1]['seconds']:.1f}s -> {rows[-1]['out']}")
    if many:
        out = path / "analysis" if args.out is None else Path(args.out)
        write_comparison(out, rows)
        print(f"comparison of {len(rows)} runs -> {out}")
    return 0
