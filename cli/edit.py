"""Edit facts with ROME and MEMIT and score the edits CounterFact-style (``studies.editing``).

``ffnkv edit SPEC`` takes a facts run dir, a Hugging Face directory, a .gguf file or a packaged name
(``smollm2``); ``--facts FILE.json`` a CounterFact-format file (default: the run's own facts world, or the
packaged ``known_facts.json`` for a pretrained model). Writes ``edit.json``, ``edit.md`` and ``edit.png`` under
``--out`` (default ``RUN_DIR/analysis/edit`` for a run, ``runs/edit/<name>`` otherwise).
"""
from __future__ import annotations

import sys

from cli.args import (
    add_distributed,
    add_facts,
    add_mesh,
    add_out,
    add_seed,
    finish_distributed,
    mesh_of,
    nonnegative_int,
    positive_float,
    positive_int,
    progress_of,
    start_distributed,
    writer,
)

NAME = "edit"
HELP = "ROME and MEMIT fact edits on any model, scored CounterFact-style"
DESCRIPTION = """Edit facts with ROME and MEMIT and score the edits CounterFact-style (efficacy, paraphrase and
neighbourhood scores). SPEC is a facts run dir, a Hugging Face dir, a GGUF file or a packaged name (smollm2);
--facts FILE a CounterFact-format file (default: the run's own facts world, or the shipped well-known facts for
a pretrained model). Writes edit.json, edit.md and edit.png under --out."""


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="SPEC",
                        help="a facts run dir, a Hugging Face dir, a .gguf file or a packaged name")
    add_facts(parser, "the run's facts world, else the shipped well-known facts", None,
              "use a seeded sample of N facts of the fact set, relations in turn (default: all of them)")
    parser.add_argument("--layer", type=nonnegative_int, default=None,
                        help="edit layer (default: editability per layer on calibration facts)")
    parser.add_argument("--layers-to-try", default=None,
                        help="comma list of candidate layers for the layer rule (default all)")
    parser.add_argument("--memit-width", type=positive_int, default=2,
                        help="MEMIT edits this many layers ending at the edit layer")
    parser.add_argument("--n-edits", type=positive_int, default=100, help="facts to edit")
    parser.add_argument("--n-unrelated", type=positive_int, default=100,
                        help="unedited facts for the unrelated accuracy")
    parser.add_argument("--n-calibration", type=positive_int, default=10, help="facts for the layer rule (not scored)")
    parser.add_argument("--protocols", default="single,sequential,memit",
                        help="comma list of single, sequential, memit")
    parser.add_argument("--token", default="subject_last", choices=("subject_last", "last"),
                        help="where keys are read and δ added (paper: subject_last)")
    parser.add_argument("--constraint", default="bare", choices=("bare", "mean"),
                        help="ROME/MEMIT constraint key: the bare prompt's (reference code) or the prefix mean "
                             "(Gupta et al.)")
    parser.add_argument("--memit-lambda", type=positive_float, default=None,
                        help="absolute MEMIT λ (default: the relative rule)")
    parser.add_argument("--lambda-ratio", type=positive_float, default=None,
                        help="λ / mean kᵀC⁻¹k (default: the band realises what GPT-J's band does at λ = 15000)")
    parser.add_argument("--lambda-sweep", default=None, help="comma list of λ ratios also scored (plus λ = 15000); "
                        "default: 6 ratios from the band rule's two readings (0.078 … 0.461 for 2 layers); '' none")
    parser.add_argument("--cov-text", default=None, help="glob of text files for C of a pretrained model")
    parser.add_argument("--cov-tokens", type=positive_int, default=20000, help="tokens of that text")
    add_seed(parser, "the fact sample and the choice of edited, unrelated and calibration facts")
    add_out(parser, "RUN_DIR/analysis/edit for a run, runs/edit/NAME for other models")
    parser.add_argument("--memory-gb", type=positive_float, default=None,
                        help="memory budget in GB (default: half the available memory)")
    add_mesh(parser)
    add_distributed(parser)


def _ints(text, what):
    from ffnkv.errors import FfnkvError

    try:
        return tuple(int(x) for x in text.split(",") if x)
    except ValueError:
        raise FfnkvError(f"{what} {text!r} is not a comma list of integers.") from None


def _floats(text, what):
    from ffnkv.errors import FfnkvError

    try:
        return tuple(float(x) for x in text.split(",") if x)
    except ValueError:
        raise FfnkvError(f"{what} {text!r} is not a comma list of numbers.") from None


def settings_from(args):
    from studies.editing import LICENCE_TEXTS, EditSettings

    return EditSettings(n_edits=args.n_edits, n_unrelated=args.n_unrelated, seed=args.seed,
                        protocols=tuple(p for p in args.protocols.split(",") if p), token=args.token,
                        constraint=args.constraint, layer=args.layer, n_calibration=args.n_calibration,
                        layer_candidates=_ints(args.layers_to_try, "--layers-to-try") if args.layers_to_try else None,
                        memit_width=args.memit_width, memit_lambda=args.memit_lambda,
                        lambda_ratio=args.lambda_ratio,
                        lambda_sweep=None if args.lambda_sweep is None
                        else _floats(args.lambda_sweep, "--lambda-sweep"),
                        cov_text=args.cov_text or LICENCE_TEXTS, cov_tokens=args.cov_tokens, mesh=mesh_of(args),
                        memory_gb=args.memory_gb)


def run(args) -> int:
    from ffnkv.io.load import load_model
    from studies import editing
    from studies import facts as FS
    from studies.report.edit_figures import edit_markdown, write
    from studies.report.paths import default_out

    settings = settings_from(args)
    editing.check_protocols(settings.protocols)
    start_distributed(args)
    model = load_model(args.run_dir)
    editing.check(model, settings)
    facts = FS.model_facts(model, args.facts, training_paraphrases=False)
    if args.n_facts is not None:
        if args.n_facts > len(facts):
            print(f"ffnkv edit: fewer facts than asked: the fact set holds {len(facts)} of the {args.n_facts} asked.",
                  file=sys.stderr, flush=True)
        facts = [facts[i] for i in FS.select(facts, None, args.n_facts, args.seed, False)]
    result = editing.run(model, facts, settings, progress_of(args))
    if writer(args):
        write(result, default_out(args.out, model, "edit"), model.name)
        print(edit_markdown(result))
    finish_distributed(args)
    return 0
