"""Which FFN kind stores facts most editably? Train, trace, find knowledge neurons and edit, per FFN kind.

``ffnkv editability --out DIR`` trains a facts LM for each of relu, gelu, swiglu, softmax (widths matched to
the ReLU FFN's parameter count; runs resume if DIR/<kind> exists), locates facts by causal tracing (the layer
of peak MLP indirect effect at the subject's last token), counts knowledge neurons per fact (integrated
gradients, Dai et al. 2022), then edits ``--n-edits`` known facts with ROME one by one, ROME sequentially
and MEMIT at once (``ffnkv edit``). One table: ``DIR/editability.json``, ``.md`` and ``.png``.
"""
from __future__ import annotations

import json
from pathlib import Path

NAME = "editability"
HELP = "train facts LMs with relu/gelu/swiglu/softmax FFNs, trace, find knowledge neurons, edit: one table"
KINDS = ("relu", "gelu", "swiglu", "softmax")
COLUMNS = ["ffn", "d_ff", "train_fact_acc", "peak_mlp_layer", "neurons_per_fact", "ROME ES", "ROME PS", "ROME NS",
           "ROME S", "ROME seq S", "ROME seq unrelated", "MEMIT ES", "MEMIT PS", "MEMIT NS", "MEMIT S", "MEMIT unrelated"]


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="study dir: one run dir per FFN kind plus the table")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma list of FFN kinds")
    parser.add_argument("--steps", type=int, default=500, help="training steps per model")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--d-ff", type=int, default=256, help="ReLU width; other kinds are parameter-matched")
    parser.add_argument("--n-entities", type=int, default=64, help="facts = entities × 6 relations")
    parser.add_argument("--n-edits", type=int, default=100)
    parser.add_argument("--n-unrelated", type=int, default=100)
    parser.add_argument("--neuron-facts", type=int, default=10, help="facts whose knowledge neurons are counted")
    parser.add_argument("--trace-facts", type=int, default=20, help="facts traced to find the peak layer")
    parser.add_argument("--token", default="subject_last", choices=("subject_last", "last"))
    parser.add_argument("--seed", type=int, default=0)


def study_config(kind: str, args):
    from ffnkv.config import ModelConfig, matched_d_ff
    from train.config import DataConfig, OptimConfig, TrainConfig

    d_ff = matched_d_ff(kind, args.d_model, args.d_ff)
    return TrainConfig(model=ModelConfig(d_model=args.d_model, n_layers=args.n_layers, n_heads=4, d_ff=d_ff, ffn=kind),
                       data=DataConfig("facts", {"n_entities": args.n_entities, "n_relations": 6, "n_attributes": 12,
                                                 "seed": args.seed}),
                       optim=OptimConfig(lr=3e-3, warmup_steps=min(100, args.steps // 5), weight_decay=0.01),
                       steps=args.steps, batch_size=64, eval_every=args.steps, ckpt_every=args.steps, keep=1,
                       log_every=50, seed=args.seed, progress=False)


def one_kind(kind: str, args) -> dict:
    from analysis.edit_protocol import EditSettings, known_facts, neurons_per_fact, peak_mlp_layer
    from cli.edit import edit_run
    from ffnkv.data import make_task
    from ffnkv.io.run import load_run
    from train.loop import train

    run_dir = Path(args.out) / kind
    trained = train(study_config(kind, args), run_dir)
    train_cfg, cfg, params = load_run(run_dir)
    task = make_task("facts", **train_cfg["data"]["kwargs"])
    traced = known_facts(params, cfg, task, args.seed + 7, args.trace_facts, 0)[0]
    layer, ie_L = peak_mlp_layer(params, cfg, task, traced, seed=args.seed)
    neurons = neurons_per_fact(params, cfg, task, traced[: args.neuron_facts])
    settings = EditSettings(n_edits=args.n_edits, n_unrelated=args.n_unrelated, seed=args.seed, token=args.token)
    res = edit_run(run_dir, layer, 2, settings)
    row = {"ffn": kind, "d_ff": cfg.d_ff, "train_fact_acc": float(trained.get("eval/train_fact_acc", float("nan"))),
           "peak_mlp_layer": layer, "neurons_per_fact": neurons}
    for key, name in (("rome_single", "ROME"), ("memit", "MEMIT")):
        row |= {f"{name} {m}": res[key][m] for m in ("ES", "PS", "NS", "S")}
    row |= {"ROME seq S": res["rome_sequential"]["S"], "ROME seq unrelated": res["rome_sequential"]["unrelated_acc"],
            "MEMIT unrelated": res["memit"]["unrelated_acc"]}
    return {"row": row, "mlp_indirect_effect_by_layer": ie_L, "edit": {k: v for k, v in res.items() if k != "edited"}}


def run(args) -> int:
    from analysis.edit_plots import markdown_table, plot_scores
    from cli.edit import write_atomic
    from ffnkv.config import FFN_KINDS
    from ffnkv.errors import FfnkvError

    kinds = tuple(k for k in args.kinds.split(",") if k)
    bad = [k for k in kinds if k not in FFN_KINDS or k in ("none",)]
    if bad or not kinds:
        raise FfnkvError(f"--kinds {args.kinds!r} is not allowed; use FFN kinds with keys and values: {', '.join(KINDS)}.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {kind: one_kind(kind, args) for kind in kinds}
    rows = [r["row"] for r in results.values()]
    table = markdown_table(rows, COLUMNS)
    write_atomic(out / "editability.json", json.dumps({"settings": vars(args) | {"run": None}, "kinds": results}, indent=2,
                                                      default=str) + "\n")
    write_atomic(out / "editability.md", "# Editability across FFN kinds\n\n" + table)
    plot_scores({k: r["edit"] for k, r in results.items()}, out / "editability.png", "Editability across FFN kinds")
    print(table)
    return 0
