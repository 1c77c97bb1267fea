"""Knowledge neurons (Dai et al. 2022) and causal tracing (Meng et al. 2022) of a facts run:
``ffnkv knowledge RUN_DIR [attribution|tracing|all]``.

Attribution: integrated gradients of p(attribute) over every FFN coefficient at the prediction position for
every prompt (training + paraphrase templates) of ``--facts`` facts, the completeness check, each fact's
knowledge neurons (coarse threshold, refinement by sharing across prompts), relation-level sharing, and the
relative change of p(correct) when the neurons are suppressed (×0) or amplified (×2), for the fact's own
prompts and for prompts of unrelated facts. Tracing: one prompt per fact, subject embeddings corrupted with
Gaussian noise, each (token, layer) state / MLP / attention output restored, plus the severed-path
variants; averages per token category and layer with 95% CIs. Writes ``attribution.json``,
``tracing.json`` and PNGs under ``RUN_DIR/analysis/knowledge/``.
"""
from __future__ import annotations

NAME = "knowledge"
HELP = "knowledge neurons (integrated gradients) and causal tracing of a facts run"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a facts run dir written by `ffnkv train`")
    parser.add_argument("what", nargs="?", default="all", choices=("attribution", "tracing", "all"))
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    parser.add_argument("--facts", type=int, default=120, help="facts analysed (a seeded sample)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fact sample, the noise and controls")
    parser.add_argument("--steps", type=int, default=20, help="integrated-gradient steps m")
    parser.add_argument("--rule", default="midpoint", choices=("left", "right", "midpoint", "trapezoid"),
                        help="Riemann rule of the integral (Dai et al. use right; midpoint is more accurate)")
    parser.add_argument("--threshold", type=float, default=0.2, help="coarse threshold t × max attribution")
    parser.add_argument("--share", type=float, default=0.7, help="refinement: fraction of a fact's prompts")
    parser.add_argument("--unrelated", type=int, default=10, help="unrelated-fact prompts per fact (controls)")
    parser.add_argument("--samples", type=int, default=10, help="tracing noise samples S")
    parser.add_argument("--noise-factor", type=float, default=3.0, help="ν = factor × std of token embeddings")
    parser.add_argument("--window", type=int, default=10, help="layers restored together for MLP/attention")
    parser.add_argument("--batch-size", type=int, default=2, help="prompts in flight (attribution)")
    parser.add_argument("--cell-batch", type=int, default=8, help="grid cells in flight (tracing)")
    parser.add_argument("--examples", type=int, default=3, help="per-fact tracing heatmaps")
    parser.add_argument("--out", default=None, help="output dir (default RUN_DIR/analysis/knowledge)")


def run(args) -> int:
    import json
    from pathlib import Path

    from cli._knowledge_report import attribution_report, load_facts_run, tracing_report

    task, model_cfg, params = load_facts_run(args.run_dir, args.step)
    out = Path(args.out or Path(args.run_dir) / "analysis" / "knowledge")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"out": str(out)}
    if args.what in ("attribution", "all"):
        summary["attribution"] = attribution_report(task, model_cfg, params, args, out)
    if args.what in ("tracing", "all"):
        summary["tracing"] = tracing_report(task, model_cfg, params, args, out)
    print(json.dumps(summary, indent=1))
    return 0
