"""The FFN-variant atlas: ``ffnkv atlas [--quick | --profile P] --out DIR`` (``studies.atlas``): facts LMs per FFN
kind (and per placement of one FFN, and attention alone over the number of facts), measured layer by layer, with
intervals over seeds; ``DIR/atlas.json``, ``DIR/atlas.md`` and the figures (``studies.report.atlas``).
``ffnkv atlas --model SPEC [--facts FILE] [--n-facts N] --out DIR`` asks the atlas's question of one existing
model instead (``studies.atlas_pretrained``; ``DIR/atlas_pretrained.json``, ``.md``, ``.png``).
"""
from __future__ import annotations

from cli.args import add_facts, add_out, add_seed, positive_float, positive_int, progress_of

NAME = "atlas"
HELP = "the FFN-variant atlas: per FFN kind and layer, where facts live, how sparsely, how editably (--quick: 3 seeds)"
DESCRIPTION = """The FFN-variant atlas (docs/atlas.md). Facts LMs with each FFN kind (relu, gelu, swiglu,
softmax, linear at matched FFN parameters, and none), one FFN in one layer only (placement), and attention
alone over the number of facts (capacity), several seeds trained as one program to a plateau. Per model and
layer: fact and paraphrase accuracy, Gini vs init, Geva agreement vs chance, knowledge neurons, causal tracing,
necessity (mean ablation), ROME and MEMIT S at that layer; and whether localisation predicts editing (Spearman
rank correlations with intervals over seeds). Writes OUT/atlas.json, OUT/atlas.md and figures; one run dir per
model under OUT (re-running resumes). With --model SPEC (a run dir, a Hugging Face dir, a GGUF file or a
packaged name such as smollm2), the question alone on that model: the editing layer rule's ROME S per layer on
--n-facts known facts of --facts, and causal tracing and necessity of the same facts at every layer; writes
OUT/atlas_pretrained.json, .md and .png."""


def add_arguments(parser) -> None:
    from studies.atlas import PROFILES

    parser.add_argument("--quick", action="store_true",
                        help="the quick profile: 3 seeds, depth 4, the 6 kinds, placement; same as --profile quick")
    parser.add_argument("--profile", default=None, choices=PROFILES,
                        help="full (default: 5 seeds, depths 4 and 8), quick, or smoke (seconds; for tests)")
    add_out(parser, None, "study dir, required: one run dir per model plus atlas.json, atlas.md and figures")
    add_seed(parser, "the models (the first of the profile's seeds), the facts world and the edit choices")
    parser.add_argument("--model", default=None, metavar="SPEC",
                        help="ask the question of this model instead of training any (a run dir, a Hugging Face dir, "
                             "a .gguf file or a packaged name such as smollm2)")
    add_facts(parser, "with --model: the run's facts world, else the shipped well-known facts", None,
              "with --model: the known facts edited and localised (the layer rule's calibration facts; default 6)")
    parser.add_argument("--samples", type=positive_int, default=3, help="with --model: tracing noise samples S")
    parser.add_argument("--memory-gb", type=positive_float, default=None,
                        help="with --model: memory budget of the sweeps in GB (default: half the available memory)")


def run(args) -> int:
    from ffnkv.errors import FfnkvError
    from studies import atlas
    from studies.report.atlas import write

    if args.model is not None:
        return run_model(args)
    if args.facts is not None or args.n_facts is not None:
        raise FfnkvError("--facts and --n-facts belong to --model SPEC; the trained atlas uses its own facts world.")
    if args.quick and args.profile not in (None, "quick"):
        raise FfnkvError(f"--quick contradicts --profile {args.profile}; pass one of them.")
    settings = atlas.AtlasSettings(profile="quick" if args.quick else args.profile or "full", seed=args.seed)
    result = atlas.run(settings, args.out, progress_of(args))
    paths = write(result, args.out)
    print(f"atlas ({settings.profile}) finished in {result['machine']['seconds']:.0f} s: "
          + ", ".join(str(p) for p in paths))
    return 0


def run_model(args) -> int:
    """``--model SPEC``: ``studies.atlas_pretrained`` on that model and its facts."""
    from ffnkv.errors import FfnkvError
    from ffnkv.io.load import load_model
    from studies import atlas_pretrained as AP
    from studies import facts as FS
    from studies.report.atlas import write_pretrained

    if args.quick or args.profile is not None:
        raise FfnkvError("--quick and --profile size the trained atlas; --model SPEC takes --n-facts and --samples.")
    s = AP.PretrainedAtlasSettings(n_facts=args.n_facts or AP.PretrainedAtlasSettings.n_facts, seed=args.seed,
                                   trace_samples=args.samples, memory_gb=args.memory_gb)
    model = load_model(args.model)
    result = AP.run(model, FS.model_facts(model, args.facts, training_paraphrases=False), s, progress_of(args))
    result["command"] = "ffnkv atlas " + " ".join(
        [f"--model {args.model}"] + ([f"--facts {args.facts}"] if args.facts else [])
        + [f"--n-facts {s.n_facts}", f"--samples {s.trace_samples}", f"--seed {s.seed}", f"--out {args.out}"])
    paths = write_pretrained(result, args.out)
    print(f"atlas of {model.name} finished in {result['machine']['seconds']:.0f} s "
          f"({result['machine']['cpu_seconds']:.0f} CPU s): " + ", ".join(str(p) for p in paths))
    return 0
