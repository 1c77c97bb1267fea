"""The FFN-variant atlas: ``ffnkv atlas [--quick | --profile P] --out DIR`` (``studies.atlas``): facts LMs per FFN
kind (and per placement of one FFN, and attention alone over the number of facts), measured layer by layer, with
intervals over seeds; ``DIR/atlas.json``, ``DIR/atlas.md`` and the figures (``studies.report.atlas``).
"""
from __future__ import annotations

from cli.args import add_out, add_seed, progress_of

NAME = "atlas"
HELP = "the FFN-variant atlas: per FFN kind and layer, where facts live, how sparsely, how editably (--quick: 3 seeds)"
DESCRIPTION = """The FFN-variant atlas (docs/atlas.md). Facts LMs with each FFN kind (relu, gelu, swiglu,
softmax, linear at matched FFN parameters, and none), one FFN in one layer only (placement), and attention
alone over the number of facts (capacity), several seeds trained as one program to a plateau. Per model and
layer: fact and paraphrase accuracy, Gini vs init, Geva agreement vs chance, knowledge neurons, causal tracing,
necessity (mean ablation), ROME and MEMIT S at that layer; and whether localisation predicts editing (Spearman
rank correlations with intervals over seeds). Writes OUT/atlas.json, OUT/atlas.md and figures; one run dir per
model under OUT (re-running resumes)."""


def add_arguments(parser) -> None:
    from studies.atlas import PROFILES

    parser.add_argument("--quick", action="store_true",
                        help="the quick profile: 3 seeds, depth 4, the 6 kinds, placement; same as --profile quick")
    parser.add_argument("--profile", default=None, choices=PROFILES,
                        help="full (default: 5 seeds, depths 4 and 8), quick, or smoke (seconds; for tests)")
    add_out(parser, None, "study dir, required: one run dir per model plus atlas.json, atlas.md and figures")
    add_seed(parser, "the models (the first of the profile's seeds), the facts world and the edit choices")


def run(args) -> int:
    from ffnkv.errors import FfnkvError
    from studies import atlas
    from studies.report.atlas import write

    if args.quick and args.profile not in (None, "quick"):
        raise FfnkvError(f"--quick contradicts --profile {args.profile}; pass one of them.")
    settings = atlas.AtlasSettings(profile="quick" if args.quick else args.profile or "full", seed=args.seed)
    result = atlas.run(settings, args.out, progress_of(args))
    paths = write(result, args.out)
    print(f"atlas ({settings.profile}) finished in {result['machine']['seconds']:.0f} s: "
          + ", ".join(str(p) for p in paths))
    return 0
