"""``ffnkv knowledge SPEC [attribution|tracing|all]``: knowledge neurons (Dai et al. 2022) and causal tracing
(Meng et al. 2022) of any model (a facts run, a Hugging Face dir, a GGUF file, ``smollm2``) on its facts: a
facts run's own world, ``--facts FILE`` (CounterFact format), or the shipped well-known facts. The protocol is
``studies.knowledge``; files (``attribution.json``, ``tracing.json``, PNGs) by ``studies.report.knowledge``
under ``--out`` (default ``RUN_DIR/analysis/knowledge``, or ``runs/knowledge/NAME`` for other models).
"""
from __future__ import annotations

from cli.args import (
    add_distributed,
    add_facts,
    add_mesh,
    add_out,
    add_seed,
    alias,
    facts_file,
    finish_distributed,
    fraction,
    mesh_of,
    nonnegative_int,
    positive_float,
    positive_int,
    progress_of,
    start_distributed,
    trace_kind,
    writer,
)

NAME = "knowledge"
HELP = "knowledge neurons (integrated gradients) and causal tracing of any model on a fact set"
DESCRIPTION = """Knowledge neurons (Dai et al. 2022) and causal tracing (Meng et al. 2022) of any model: a facts
run dir, a Hugging Face dir, a GGUF file or a packaged name (smollm2), on its facts: the run's own facts world,
--facts FILE (CounterFact format), or the shipped well-known facts. Writes attribution.json, tracing.json and
PNGs under --out."""


def add_arguments(parser) -> None:
    from analysis.tracing import KINDS

    a = parser.add_argument
    a("run_dir", metavar="SPEC", help="a run dir, Hugging Face dir, .gguf file or packaged name (smollm2)")
    a("what", nargs="?", default="all", choices=("attribution", "tracing", "all"))
    a("--step", type=nonnegative_int, default=None, help="checkpoint step of a run dir (default: newest)")
    add_facts(parser, "the run's facts world, else the shipped well-known facts", 120,
              "facts analysed: a seeded sample of the fact set, relations in turn")
    alias(parser, "--facts-file", "--facts", "facts", type=facts_file)
    a("--known-only", action="store_true", help="keep only facts the model answers correctly")
    add_seed(parser, "the fact sample, the noise and the controls")
    a("--ig-steps", type=positive_int, default=20, help="integrated-gradient steps m")
    alias(parser, "--steps", "--ig-steps", "ig_steps", type=positive_int)
    a("--ig-rule", default="midpoint", choices=("left", "right", "midpoint", "trapezoid"),
      help="Riemann rule of the integral (Dai et al. use right; midpoint is more accurate)")
    alias(parser, "--rule", "--ig-rule", "ig_rule", choices=("left", "right", "midpoint", "trapezoid"))
    a("--ig-path", default="layer", choices=("layer", "joint"), help="one IG path per layer (Dai) or one joint path")
    a("--kn-threshold", type=fraction, default=0.2, help="knowledge neurons: coarse threshold t × max attribution")
    alias(parser, "--threshold", "--kn-threshold", "kn_threshold", type=fraction)
    a("--share", type=fraction, default=0.7, help="refinement: fraction of a fact's prompts")
    a("--no-paraphrases", action="store_true", help="attribute the main prompt only")
    a("--generic-relations", type=nonnegative_int, default=0,
      help="set aside neurons coarse for facts of ≥ this many relations")
    a("--all-positions", action="store_true", help="scale knowledge neurons at every position (suppress/amplify)")
    a("--unrelated-per-fact", type=positive_int, default=10, help="unrelated-fact prompts per fact (controls)")
    alias(parser, "--unrelated", "--unrelated-per-fact", "unrelated_per_fact", type=positive_int)
    a("--samples", type=positive_int, default=10, help="tracing noise samples S")
    a("--noise-factor", type=positive_float, default=3.0, help="ν = factor × std of token embeddings")
    a("--window", type=positive_int, default=10, help="layers restored together for MLP/attention (the paper's 10)")
    a("--no-single-layer", action="store_true", help="skip the single-layer MLP/attention restores")
    a("--trace-kinds", nargs="+", type=trace_kind, default=None, choices=KINDS,
      help="restored kinds (default: all)")
    a("--layer-stride", type=positive_int, default=1, help="trace every k-th layer")
    a("--batch-size", type=positive_int, default=None,
      help="at most this many prompts in flight (attribution; default: the memory plan's)")
    a("--cell-batch", type=positive_int, default=None,
      help="at most this many grid cells in flight (tracing; default: the memory plan's)")
    a("--memory-gb", type=positive_float, default=None,
      help="memory budget of the sweeps in GB (default: half the available memory)")
    a("--examples", type=positive_int, default=3, help="per-fact tracing heatmaps")
    add_out(parser, "RUN_DIR/analysis/knowledge for a run, runs/knowledge/NAME for other models")
    add_mesh(parser)
    add_distributed(parser)


def settings(args):
    from analysis.tracing import KINDS
    from studies.knowledge import KnowledgeSettings

    return KnowledgeSettings(
        what=args.what, n_facts=args.n_facts, seed=args.seed, known_only=args.known_only, steps=args.ig_steps,
        rule=args.ig_rule, path=args.ig_path, threshold=args.kn_threshold, share=args.share,
        paraphrases=not args.no_paraphrases, generic_relations=args.generic_relations,
        all_positions=args.all_positions, unrelated=args.unrelated_per_fact, batch_size=args.batch_size,
        samples=args.samples, noise_factor=args.noise_factor, window=args.window,
        single_layer=not args.no_single_layer, kinds=tuple(args.trace_kinds or KINDS),
        layer_stride=args.layer_stride, cell_batch=args.cell_batch, examples=args.examples, mesh=mesh_of(args),
        memory_gb=args.memory_gb)


def run(args) -> int:
    import json

    from ffnkv.io.load import load_model
    from studies import facts, knowledge
    from studies.report import knowledge as report
    from studies.report.paths import default_out

    s = settings(args)
    start_distributed(args)
    model = load_model(args.run_dir, args.step)
    result = knowledge.run(model, facts.model_facts(model, args.facts), s, progress_of(args))
    out = default_out(args.out, model, "knowledge")
    if writer(args):
        report.write(result, out)
        print(json.dumps(knowledge.summary(result) | {"out": str(out)}, indent=1))
    finish_distributed(args)
    return 0
