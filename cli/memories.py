"""Geva et al.'s key-value memory analyses of a trained run: ``ffnkv memories RUN_DIR``.

Streams a corpus of the run's own task (text: contiguous windows of the token memmap; facts: fresh
training packs) through the model and writes, under ``RUN_DIR/analysis/memories/``:
``memories.json`` (Geva 2021: trigger search, value projections, agreement vs baselines, active memories,
zero agreement, refinement, last/first-token removal), ``promotion.json`` (Geva 2022: sub-update dominance,
top sub-updates of sample positions, value clusters), per-layer PNG curves, ``triggers.txt`` (sampled
keys' top trigger prefixes as text, with each value's top tokens) and ``promotion.txt``.
"""
from __future__ import annotations

NAME = "memories"
HELP = "Geva 2021/2022 key-value memory analyses of a run (triggers, agreement, refinement, promotion)"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run dir written by `ffnkv train`")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    parser.add_argument("--max-tokens", type=int, default=200_000, help="corpus size streamed (tokens)")
    parser.add_argument("--k", type=int, default=25, help="trigger prefixes kept per key")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per streamed chunk")
    parser.add_argument("--final-norm", action="store_true",
                        help="project through the final norm before the unembedding (default: raw x·E, as Geva 2021)")
    parser.add_argument("--threshold", type=float, default=0.0, help="a memory is active where m > threshold")
    parser.add_argument("--sample-keys", type=int, default=6, help="keys per layer in triggers.txt")
    parser.add_argument("--clusters", type=int, default=8, help="k-means clusters of values per layer")
    parser.add_argument("--top-n", type=int, default=10, help="top sub-updates per position (Geva 2022)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output dir (default RUN_DIR/analysis/memories)")


def run(args) -> int:
    import json
    from pathlib import Path

    import jax

    from analysis.plots_memories import plot_all
    from cli._memories_report import analyse, write_dumps
    from ffnkv.data import make_task
    from ffnkv.errors import FfnkvError
    from ffnkv.io.run import load_config, load_params

    train_cfg, model_cfg = load_config(args.run_dir)
    params = load_params(args.run_dir, model_cfg, args.step)
    task = make_task(train_cfg["data"]["kind"], **train_cfg["data"]["kwargs"])
    if not hasattr(task, "windows"):
        raise FfnkvError(f"task {train_cfg['data']['kind']!r} has no text corpus to stream; use a facts or text run.")
    out = Path(args.out or Path(args.run_dir) / "analysis" / "memories")
    out.mkdir(parents=True, exist_ok=True)
    corpus = task.windows(args.max_tokens)
    results, promotion, extras = analyse(params, model_cfg, corpus, args, jax.random.key(args.seed))
    results["plots"] = plot_all(results, out)
    for name, data in (("memories.json", results), ("promotion.json", promotion)):
        tmp = out / f"{name}.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(out / name)
    write_dumps(out, task.tokenizer, corpus, results, promotion, extras, args.sample_keys)
    summary = {k: results[k] for k in ("agreement", "composition")} | {"out": str(out)}
    summary["agreement"] = {k: v for k, v in summary["agreement"].items() if k in ("agreement", "baseline")}
    print(json.dumps(summary))
    return 0
