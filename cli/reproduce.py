"""Reproduce the whole study with one command: ``ffnkv reproduce [--quick] [--out DIR] [--seed N]`` (the
protocol is ``studies.reproduce``, its stages ``studies.reproduce_stages``: studies called in-process)."""
from __future__ import annotations

import time

from cli.args import add_out, add_seed, progress_of
from studies.reproduce_stages import PROFILES, SEEDS

NAME = "reproduce"
HELP = "run every training and analysis of the study (--quick: ≤ 25 min on 2 CPU cores) and write report.md"
DESCRIPTION = f"""Reproduce the whole study with one command. Stages, in order (each runs studies in-process on
run dirs under --out): condcomp (every FFN kind on conditional computation, as ffnkv compare), specialise
(Rahman et al.'s analyses, as ffnkv analyze), facts (the facts LM), memories, knowledge and edit (on the facts
LM), atlas (ffnkv atlas: every FFN kind and placement, per
layer), text (an LM on local text and Geva's analyses on it),
minilm and smollm2 (the real pretrained models, when the models or all extra is installed). Every trained
model trains {SEEDS['full']} seeds in the full profile, {SEEDS['quick']} in quick ({SEEDS['smoke']} in smoke) as one
batched program, each seed analysed, the verdicts judged over seeds and items. A finished stage leaves
OUT/stages/NAME.json and re-running skips it; an interrupted stage (SIGTERM exits 143, SIGINT 130) is not
recorded and resumes its training from the last checkpoint. OUT/report.md, report.html and claims.json are
rewritten at the end from the stages' outputs."""


def add_arguments(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="the small profile (≤ 25 minutes on 2 CPU cores); "
                        "same as --profile quick")
    parser.add_argument("--profile", default=None, choices=PROFILES,
                        help="full (default: every study at its own defaults), quick, or smoke (seconds; for tests)")
    add_out(parser, "runs/reproduce-PROFILE")
    parser.add_argument("--stages", default=None, help="comma list of stages to run (default: all); the report "
                        "always covers every finished stage")
    parser.add_argument("--redo", default="", help="comma list of finished stages to run again")
    add_seed(parser, "every training (the base seed: seeds N, N+1, …) and every analysis")


def _names(text: str | None) -> tuple:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def run(args) -> int:
    from ffnkv.errors import FfnkvError
    from studies import reproduce

    if args.quick and args.profile not in (None, "quick"):
        raise FfnkvError(f"--quick contradicts --profile {args.profile}; pass one of them.")
    settings = reproduce.ReproduceSettings("quick" if args.quick else args.profile or "full", args.out,
                                           _names(args.stages), _names(args.redo), args.seed)
    start = time.perf_counter()
    result = reproduce.run(settings, progress_of(args), log=lambda line: print(line, flush=True))
    print(f"\nreproduce ({settings.profile}) finished in {time.perf_counter() - start:.0f} s; report: "
          f"{result['report']}")
    return 0
