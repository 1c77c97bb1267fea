"""``ffnkv memories SPEC``: Geva et al.'s key-value memory analyses (2021, 2022) of any model — a trained run on
its own corpus, or a pretrained model (Hugging Face dir, GGUF, ``smollm2``) on ``--text`` files (one row per
line) or the probe sentences. The protocol is ``studies.memories``; files (``memories.json``,
``promotion.json``, PNGs, ``triggers.txt``, ``promotion.txt``) by ``studies.report.memories`` under ``--out``
(default ``RUN_DIR/analysis/memories``, or ``runs/memories/NAME``).
"""
from __future__ import annotations

from cli.args import (
    add_distributed,
    add_mesh,
    add_out,
    add_seed,
    alias,
    finish_distributed,
    finite_float,
    mesh_of,
    nonnegative_int,
    positive_float,
    positive_int,
    progress_of,
    start_distributed,
    writer,
)

NAME = "memories"
HELP = "Geva 2021/2022 key-value memory analyses of any model (triggers, agreement, refinement, promotion)"
DESCRIPTION = """Geva et al.'s key-value memory analyses (2021, 2022) of any model: a trained run on its own
corpus, or a pretrained model (Hugging Face dir, GGUF file, smollm2) on --text files (one row per line) or the
probe sentences. Writes memories.json, promotion.json, PNGs, triggers.txt and promotion.txt under --out."""


def add_arguments(parser) -> None:
    a = parser.add_argument
    a("run_dir", metavar="SPEC", help="a run dir, Hugging Face dir, .gguf file or packaged name (smollm2)")
    a("--step", type=nonnegative_int, default=None, help="checkpoint step of a run dir (default: newest)")
    a("--text", nargs="+", default=None, help="text files streamed instead of the run's corpus, one row per line")
    a("--max-tokens", type=positive_int, default=200_000, help="corpus size streamed (tokens)")
    a("--k", type=positive_int, default=25, help="trigger prefixes kept per key")
    a("--batch-size", type=positive_int, default=32,
      help="at most this many rows per streamed chunk (fewer where --memory-gb asks)")
    a("--memory-gb", type=positive_float, default=None, help="memory budget in GB (default: half the available memory)")
    a("--final-norm", action="store_true",
      help="project through the final norm before the unembedding (default: raw x·E, as Geva 2021)")
    a("--activation-threshold", type=finite_float, default=0.0,
      help="a memory is active where its coefficient m > this")
    alias(parser, "--threshold", "--activation-threshold", "activation_threshold", type=finite_float)
    a("--shuffles", type=positive_int, default=100, help="value re-pairings of the agreement baseline")
    a("--removal-keys", type=nonnegative_int, default=0, help="keys per layer in the token-removal test (0: all)")
    a("--sample-keys", type=nonnegative_int, default=6, help="keys per layer in triggers.txt")
    a("--clusters", type=positive_int, default=8, help="k-means clusters of values per layer")
    a("--top-n", type=positive_int, default=10, help="top sub-updates per position (Geva 2022)")
    a("--row-tokens", type=positive_int, default=64, help="tokens per row of a text corpus")
    alias(parser, "--window", "--row-tokens", "row_tokens", type=positive_int)
    add_seed(parser, "the shuffled baselines, the sampled keys and the clusters")
    add_out(parser, "RUN_DIR/analysis/memories for a run, runs/memories/NAME for other models")
    add_mesh(parser)
    add_distributed(parser)


def run(args) -> int:
    import json
    from pathlib import Path

    from ffnkv.io.load import load_model
    from studies import memories
    from studies.report import memories as report
    from studies.report.paths import default_out

    s = memories.MemoriesSettings(max_tokens=args.max_tokens, k=args.k, batch_size=args.batch_size,
                                  final_norm=args.final_norm, threshold=args.activation_threshold,
                                  n_shuffles=args.shuffles,
                                  removal_keys=args.removal_keys, sample_keys=args.sample_keys, clusters=args.clusters,
                                  top_n=args.top_n, window=args.row_tokens, seed=args.seed, mesh=mesh_of(args),
                                  memory_gb=args.memory_gb)
    from ffnkv.errors import FfnkvError

    missing = [f for f in args.text or () if not Path(f).is_file()]
    if missing:
        raise FfnkvError(f"--text file {missing[0]!r} does not exist.")
    start_distributed(args)
    model = load_model(args.run_dir, args.step)
    texts = [line for f in args.text
             for line in Path(f).read_text().splitlines() if line.strip()] if args.text else None
    result = memories.run(model, memories.corpus(model, s, texts), s, progress_of(args))
    out = default_out(args.out, model, "memories")
    if writer(args):
        report.write(result, out)
        mem = result["memories"]
        print(json.dumps({"agreement": {k: mem["agreement"][k] for k in ("agreement", "baseline")},
                          "zero_agreement": mem["composition"]["zero_agreement"],
                          "zero_agreement_shuffled": mem["composition"]["zero_agreement_shuffled"], "out": str(out)}))
    finish_distributed(args)
    return 0
