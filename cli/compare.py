"""Train every FFN kind on the same task with matched FFN parameter counts and compare them.

Each kind trains in its own run dir ``<out>/<kind>/`` (resumable; every analysis command runs on it). The FFN
width of kind k is ``matched_d_ff(k, d_model, d_ff)`` with the config's relu ``d_ff`` as the reference, so
every FFN has (nearly) the parameters of the relu FFN; ``none`` has no FFN at all. Writes
``<out>/compare.json`` (per kind: parameters, FFN parameters, d_ff, steps, final train/eval loss, eval
accuracy per op, the first eval step with accuracy ≥ 95% per op) and ``<out>/compare.png`` (eval accuracy
curves per kind), and prints the table.
"""
from __future__ import annotations

import json
from pathlib import Path

NAME = "compare"
HELP = "train every FFN kind on conditional computation with matched parameters; compare.json + PNG + table"
KINDS = ("relu", "gelu", "swiglu", "softmax", "linear", "none")


def add_arguments(parser) -> None:
    parser.add_argument("--config", default=None, help="config file with get_config() (default: the embedded "
                        "condcomp preset, configs/condcomp.py)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field for every kind, e.g. --set steps=3000")
    parser.add_argument("--out", default="runs/compare", help="output dir (default runs/compare)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated FFN kinds (default: all six)")
    parser.add_argument("--threshold", type=float, default=0.95, help="accuracy for steps-to-threshold")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def kind_config(cfg, kind: str):
    """The config for ``kind``: same everything, FFN width matched to the relu reference ``cfg.model.d_ff``."""
    from ffnkv.config import matched_d_ff

    m = cfg.model
    return cfg.replace(model=m.replace(ffn=kind, d_ff=matched_d_ff(kind, m.d_model, m.d_ff, bias=m.bias)))


def summarise(run_dir: Path, threshold: float) -> dict:
    """One kind's row of compare.json, from its run dir."""
    import numpy as np

    from ffnkv.config import ffn_params_per_layer
    from ffnkv.io.run import load_metrics, load_run
    from ffnkv.params import count_params

    cfg, model_cfg, params = load_run(run_dir)
    records = load_metrics(run_dir)
    train_recs = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval/loss" in r]
    ops = [k.removeprefix("eval/acc/") for k in evals[-1] if k.startswith("eval/acc/")]
    reached = {op: next((r["step"] for r in evals if r[f"eval/acc/{op}"] >= threshold), None) for op in ops}
    return {
        "ffn": model_cfg.ffn, "d_ff": model_cfg.d_ff, "params": count_params(params, model_cfg),
        "ffn_params": int(model_cfg.has_ffn_L().sum()) * ffn_params_per_layer(model_cfg.ffn, model_cfg.d_model,
                                                                           model_cfg.d_ff, model_cfg.bias),
        "steps": int(evals[-1]["step"]),
        "final_train_loss": float(np.mean([r["loss"] for r in train_recs[-5:]])),
        "final_eval_loss": evals[-1]["eval/loss"],
        "accuracy": {op: evals[-1][f"eval/acc/{op}"] for op in ops},
        f"steps_to_{round(threshold * 100)}": reached,
        "curve": {"step": [r["step"] for r in evals], **{op: [r[f"eval/acc/{op}"] for r in evals] for op in ops}},
    }


def table(rows: dict, threshold: float) -> str:
    ops = list(next(iter(rows.values()))["accuracy"])
    key = f"steps_to_{round(threshold * 100)}"
    head = ["kind", "d_ff", "params", "ffn params", "eval loss"] + [f"acc {op}" for op in ops] + [f"steps≥{threshold:.0%} all"]
    lines = [head]
    for kind, r in rows.items():
        lines.append([kind, str(r["d_ff"]), str(r["params"]), str(r["ffn_params"]), f"{r['final_eval_loss']:.3f}"]
                     + [f"{r['accuracy'][op]:.3f}" for op in ops] + [str(r[key]["all"] or "—")])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in lines)


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = list(next(iter(rows.values()))["accuracy"])
    fig, axes = plt.subplots(1, len(ops), figsize=(4 * len(ops), 3.4), sharey=True)
    for ax, op in zip(axes, ops):
        for kind, r in rows.items():
            ax.plot(r["curve"]["step"], r["curve"][op], label=kind, linestyle="--" if kind in ("none", "linear") else "-")
        ax.set_title(f"eval accuracy: {op}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args) -> int:
    import jax

    from ffnkv.config import FFN_KINDS
    from ffnkv.errors import ConfigError
    from train.config import apply_overrides, load_config_file, resolve
    from train.loop import train

    cfg = load_config_file(args.config or "condcomp")
    cfg = apply_overrides(cfg, args.overrides)
    if args.no_progress:
        cfg = cfg.replace(progress=False)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in FFN_KINDS]
    if bad or not kinds:
        raise ConfigError(f"--kinds {args.kinds!r} is not allowed; use a comma-separated subset of {', '.join(FFN_KINDS)}.")
    configs = {kind: kind_config(cfg, kind) for kind in kinds}
    for c in configs.values():
        resolve(c)  # every config mistake is reported before any training starts
    if cfg.data.kind != "condcomp":
        raise ConfigError(f"compare reports accuracy per op and needs data.kind='condcomp', not {cfg.data.kind!r}.")
    out = Path(args.out)
    rows = {}
    for kind, c in configs.items():
        result = train(c, out / kind)
        print(f"{kind}: {result['status']} at step {result['step']}" +
              (f" in {result['seconds']:.1f} s" if "seconds" in result else ""), flush=True)
        if result["status"] != "done":
            return 0
        rows[kind] = summarise(out / kind, args.threshold)
    if jax.process_index() == 0:
        summary = {"config": cfg.to_dict(), "reference": {"ffn": "relu", "d_ff": cfg.model.d_ff},
                   "matching": "d_ff = ffnkv.matched_d_ff(kind, d_model, reference d_ff): FFN parameters closest to relu's",
                   "kinds": rows}
        tmp = out / "compare.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(out / "compare.json")
        plot(rows, out / "compare.png")
        print(table(rows, args.threshold))
        print(f"wrote {out / 'compare.json'} and {out / 'compare.png'}")
    return 0
