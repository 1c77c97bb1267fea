"""``ffnkv knowledge SPEC [attribution|tracing|all]``: knowledge neurons (Dai et al. 2022) and causal tracing
(Meng et al. 2022) of any model (a facts run, a Hugging Face dir, a GGUF file, ``smollm2``) on its facts: a
facts run's own world, ``--facts-file`` (CounterFact format), or the shipped well-known facts. The protocol is
``studies.knowledge``; files (``attribution.json``, ``tracing.json``, PNGs) by ``studies.report.knowledge``
under ``--out`` (default ``RUN_DIR/analysis/knowledge``, or ``runs/knowledge/NAME`` for other models).
"""
from __future__ import annotations

from cli.args import add_mesh, fraction, nonnegative_int, output_dir, positive_float, positive_int

NAME = "knowledge"
HELP = "knowledge neurons (integrated gradients) and causal tracing of any model on a fact set"


def add_arguments(parser) -> None:
    a = parser.add_argument
    a("run_dir", metavar="SPEC", help="a run dir, Hugging Face dir, .gguf file or packaged name (smollm2)")
    a("what", nargs="?", default="all", choices=("attribution", "tracing", "all"))
    a("--step", type=nonnegative_int, default=None, help="checkpoint step of a run dir (default: newest)")
    a("--facts", type=positive_int, default=120, help="facts analysed (a seeded sample, relations in turn)")
    a("--facts-file", default=None, help="CounterFact-format JSON file of facts (default: the run's or the shipped ones)")
    a("--known-only", action="store_true", help="keep only facts the model answers correctly")
    a("--seed", type=nonnegative_int, default=0, help="seed of the fact sample, the noise and the controls")
    a("--steps", type=positive_int, default=20, help="integrated-gradient steps m")
    a("--rule", default="midpoint", choices=("left", "right", "midpoint", "trapezoid"),
      help="Riemann rule of the integral (Dai et al. use right; midpoint is more accurate)")
    a("--ig-path", default="layer", choices=("layer", "joint"), help="one IG path per layer (Dai) or one joint path")
    a("--threshold", type=fraction, default=0.2, help="coarse threshold t × max attribution")
    a("--share", type=fraction, default=0.7, help="refinement: fraction of a fact's prompts")
    a("--no-paraphrases", action="store_true", help="attribute the main prompt only")
    a("--generic-relations", type=nonnegative_int, default=0, help="set aside neurons coarse for facts of ≥ this many relations")
    a("--all-positions", action="store_true", help="scale knowledge neurons at every position (suppress/amplify)")
    a("--unrelated", type=positive_int, default=10, help="unrelated-fact prompts per fact (controls)")
    a("--samples", type=positive_int, default=10, help="tracing noise samples S")
    a("--noise-factor", type=positive_float, default=3.0, help="ν = factor × std of token embeddings")
    a("--window", type=positive_int, default=10, help="layers restored together for MLP/attention (the paper's 10)")
    a("--no-single-layer", action="store_true", help="skip the single-layer MLP/attention restores")
    a("--trace-kinds", nargs="+", default=None, help="restored kinds (default all of analysis.tracing.KINDS)")
    a("--layer-stride", type=positive_int, default=1, help="trace every k-th layer")
    a("--batch-size", type=positive_int, default=None, help="at most this many prompts in flight (attribution; default: the memory plan's)")
    a("--cell-batch", type=positive_int, default=None, help="at most this many grid cells in flight (tracing; default: the memory plan's)")
    a("--memory-gb", type=positive_float, default=None, help="memory budget of the sweeps in GB (default: half the available memory)")
    a("--examples", type=positive_int, default=3, help="per-fact tracing heatmaps")
    a("--out", type=output_dir, default=None, help="output dir")
    add_mesh(parser)


def settings(args):
    from analysis.tracing import KINDS
    from studies.knowledge import KnowledgeSettings

    return KnowledgeSettings(
        what=args.what, n_facts=args.facts, seed=args.seed, known_only=args.known_only, steps=args.steps,
        rule=args.rule, path=args.ig_path, threshold=args.threshold, share=args.share,
        paraphrases=not args.no_paraphrases, generic_relations=args.generic_relations,
        all_positions=args.all_positions, unrelated=args.unrelated, batch_size=args.batch_size,
        samples=args.samples, noise_factor=args.noise_factor, window=args.window,
        single_layer=not args.no_single_layer, kinds=tuple(args.trace_kinds or KINDS),
        layer_stride=args.layer_stride, cell_batch=args.cell_batch, examples=args.examples, mesh=args.mesh,
        memory_gb=args.memory_gb)


def run(args) -> int:
    import json

    from studies.report.paths import default_out
    from ffnkv.io.load import load_model
    from studies import facts, knowledge
    from studies.report import knowledge as report

    model = load_model(args.run_dir, args.step)
    result = knowledge.run(model, facts.model_facts(model, args.facts_file), settings(args))
    out = default_out(args.out, model, "knowledge")
    report.write(result, out)
    print(json.dumps(knowledge.summary(result) | {"out": str(out)}, indent=1))
    return 0
