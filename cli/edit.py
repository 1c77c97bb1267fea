"""Edit facts of a trained facts LM with ROME and MEMIT and score the edits CounterFact-style.

``ffnkv edit RUN_DIR`` picks the facts the model knows, edits ``--n-edits`` of them to their counterfactual
attribute with ROME one at a time (each on a fresh model), ROME sequentially (all on one model) and MEMIT in
one batch, and writes ``edit.json``, ``edit.md`` and ``edit.png`` under ``RUN_DIR/analysis/edit/`` (with the
cached key second moments C). The ROME layer defaults to the layer of peak MLP indirect effect at the
subject's last token (causal tracing); MEMIT edits the ``--memit-width`` layers ending there.
ES/PS/NS: rates of P(new) > P(old) on the rewrite prompt / held-out paraphrases, and of P(true) > P(new)
on neighbourhood prompts; EM/PM/NM the mean probability differences; S their harmonic mean.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

NAME = "edit"
HELP = "ROME and MEMIT fact edits on a facts run, scored CounterFact-style"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run dir trained on the facts task")
    parser.add_argument("--layer", type=int, default=None, help="ROME layer (default: peak MLP effect by causal tracing)")
    parser.add_argument("--memit-width", type=int, default=2, help="MEMIT edits this many layers ending at --layer")
    parser.add_argument("--n-edits", type=int, default=100, help="facts to edit")
    parser.add_argument("--n-unrelated", type=int, default=100, help="unedited facts for the unrelated accuracy")
    parser.add_argument("--protocols", default="single,sequential,memit", help="comma list of single, sequential, memit")
    parser.add_argument("--token", default="subject_last", choices=("subject_last", "last"),
                        help="where keys are read and δ added (paper: subject_last)")
    parser.add_argument("--memit-lambda", type=float, default=None, help="MEMIT λ (default 15000, the paper's GPT-J value)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output dir (default RUN_DIR/analysis/edit)")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def edit_run(run_dir, layer=None, memit_width=2, settings=None, out_dir=None, trace_facts=20) -> dict:
    """Load a facts run, locate (unless ``layer``), edit and score; returns the result dict and writes it."""
    from analysis.edit_plots import plot_scores
    from analysis.edit_protocol import EditSettings, known_facts, memit_layers, peak_mlp_layer, run_protocols
    from ffnkv.data import make_task
    from ffnkv.errors import FfnkvError
    from ffnkv.io.run import load_run

    settings = settings or EditSettings()
    train_cfg, cfg, params = load_run(run_dir)
    if train_cfg["data"]["kind"] != "facts":
        raise FfnkvError(f"run {str(run_dir)!r} was trained on {train_cfg['data']['kind']!r}; editing needs a facts run.")
    if cfg.ffn in ("none",):
        raise FfnkvError("this model has no FFN to edit; train one with model.ffn set to relu, gelu, swiglu or softmax.")
    if layer is not None and not 0 <= layer < cfg.n_layers:
        raise FfnkvError(f"--layer {layer} is outside the model's {cfg.n_layers} layers.")
    task = make_task("facts", **train_cfg["data"]["kwargs"])
    trace = None
    if layer is None:
        probe_facts = known_facts(params, cfg, task, settings.seed + 7, trace_facts, 0)[0]
        layer, trace = peak_mlp_layer(params, cfg, task, probe_facts, seed=settings.seed)
    result = run_protocols(run_dir, params, cfg, task, layer, memit_layers(layer, memit_width), settings)
    result |= {"ffn": cfg.ffn, "mlp_indirect_effect_by_layer": trace}
    out = Path(out_dir or Path(run_dir) / "analysis" / "edit")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "edit.json", json.dumps(result, indent=2) + "\n")
    write_atomic(out / "edit.md", report_markdown(result))
    plot_scores({"": result}, out / "edit.png", f"{cfg.ffn}: edits at layer {layer} ({settings.token})")
    return result


def report_markdown(result: dict) -> str:
    from analysis.edit_plots import markdown_table

    rows = [{"protocol": key} | result[key] for key in ("unedited", "rome_single", "rome_sequential", "memit") if key in result]
    head = (f"# Fact editing ({result['ffn']})\n\n{result['n_edits']} edits of facts the model knows "
            f"({result['n_known_facts']}/{result['n_facts']}); ROME layer {result['layer']}, MEMIT layers "
            f"{result['memit_layers']}, token {result['token']}.\n\n")
    return head + markdown_table(rows, ["protocol", "ES", "PS", "NS", "S", "EM", "PM", "NM", "unrelated_acc"])


def run(args) -> int:
    import dataclasses

    from analysis.edit_protocol import EditSettings
    from ffnkv.errors import FfnkvError

    protocols = tuple(p for p in args.protocols.split(",") if p)
    bad = [p for p in protocols if p not in ("single", "sequential", "memit")]
    if bad or not protocols:
        raise FfnkvError(f"--protocols {args.protocols!r} is not allowed; use a comma list of single, sequential, memit.")
    settings = EditSettings(n_edits=args.n_edits, n_unrelated=args.n_unrelated, seed=args.seed, protocols=protocols,
                            token=args.token)
    if args.memit_lambda is not None:
        settings = dataclasses.replace(settings, memit_lambda=args.memit_lambda)
    result = edit_run(args.run_dir, args.layer, args.memit_width, settings, args.out)
    print(report_markdown(result))
    return 0
