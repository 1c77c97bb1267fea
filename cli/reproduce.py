"""Reproduce the whole study with one command: ``ffnkv reproduce [--quick] [--out DIR]`` (the protocol is
``studies.reproduce``).

Stages, in order (each one is an ordinary ffnkv command on a run dir under ``--out``):
``condcomp`` (train every FFN kind on conditional computation: ``ffnkv compare``), ``specialise``
(``ffnkv analyze``: Rahman et al.'s four claims), ``facts`` (train the facts LM), ``memories`` (Geva et al.
2021/2022 on it), ``knowledge`` (knowledge neurons and causal tracing), ``edit`` (ROME and MEMIT on it),
``editability`` (facts LMs for relu/gelu/swiglu/softmax, traced, attributed and edited: one table), ``text``
(an LM on local text and Geva's analyses on it), ``minilm`` and ``smollm2`` (the real pretrained models, when
the ``models`` or ``all`` extra is installed). A finished stage leaves ``stages/<name>.json``; re-running skips it, and an
interrupted stage resumes its training from the last checkpoint. ``report.md`` (and ``report.html``) is
rewritten at the end from the stages' JSON outputs: every section with its figures and numbers, and the
claims table.
"""
from __future__ import annotations

import time

from cli.args import add_out
from studies.reproduce_stages import PROFILES

NAME = "reproduce"
HELP = "run every training and analysis of the study (--quick: ~13 min on 2 CPU cores) and write report.md"
DESCRIPTION = """Reproduce the whole study with one command. Stages, in order (each an ordinary ffnkv command on
a run dir under --out): condcomp (ffnkv compare), specialise (ffnkv analyze), facts (train the facts LM),
memories, knowledge and edit (on the facts LM), editability (facts LMs per FFN kind: one table), text (an LM on
local text and Geva's analyses on it), minilm and smollm2 (the real pretrained models, when the models or all
extra is installed). A finished stage leaves OUT/stages/NAME.json and re-running skips it; an interrupted stage
resumes its training from the last checkpoint. OUT/report.md (and report.html) is rewritten at the end from
the stages' outputs: every section with its figures and numbers, and the claims table."""


def add_arguments(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="the small profile (about 13 minutes on 2 CPU cores); "
                        "same as --profile quick")
    parser.add_argument("--profile", default=None, choices=PROFILES,
                        help="full (default: every command's own defaults), quick, or smoke (seconds; for tests)")
    add_out(parser, "runs/reproduce-PROFILE")
    parser.add_argument("--stages", default=None, help="comma list of stages to run (default: all); the report "
                        "always covers every finished stage")
    parser.add_argument("--redo", default="", help="comma list of finished stages to run again")


def _names(text: str | None) -> tuple:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def run(args) -> int:
    from cli.main import main
    from ffnkv.errors import FfnkvError
    from studies import reproduce

    if args.quick and args.profile not in (None, "quick"):
        raise FfnkvError(f"--quick contradicts --profile {args.profile}; pass one of them.")
    settings = reproduce.ReproduceSettings("quick" if args.quick else args.profile or "full", args.out,
                                           _names(args.stages), _names(args.redo))
    start = time.perf_counter()
    command = (lambda argv: main(argv + ["--no-progress"])) if args.no_progress else main
    result = reproduce.run(settings, command, log=lambda line: print(line, flush=True))
    print(f"\nreproduce ({settings.profile}) finished in {time.perf_counter() - start:.0f} s; report: {result['report']}")
    return 0
