"""Which FFN kind stores facts most editably? ``ffnkv editability --out DIR`` (``studies.editability``):
per FFN kind (relu, gelu, swiglu, softmax; parameter-matched) a facts LM trained with loss on every token,
causal tracing, knowledge neurons per fact and ``ffnkv edit``'s protocols. One table:
``DIR/editability.json``, ``.md`` and ``.png``.
"""
from __future__ import annotations

from pathlib import Path

from cli.args import add_out, add_seed, positive_int, progress_of

NAME = "editability"
HELP = "train facts LMs with relu/gelu/swiglu/softmax FFNs, trace, find knowledge neurons, edit: one table"
DESCRIPTION = """Which FFN kind stores facts most editably? Per FFN kind (relu, gelu, swiglu, softmax;
parameter-matched) a facts LM is trained with loss on every token, then causal tracing, knowledge neurons per
fact and ffnkv edit's protocols. One run dir per kind under --out, and one table: OUT/editability.json, .md
and .png."""


def add_arguments(parser) -> None:
    add_out(parser, None, "study dir, required: one run dir per FFN kind plus the table")
    parser.add_argument("--kinds", default="relu,gelu,swiglu,softmax", help="comma list of FFN kinds")
    parser.add_argument("--steps", type=positive_int, default=500, help="training steps per model")
    parser.add_argument("--d-model", type=positive_int, default=64, help="model width")
    parser.add_argument("--n-layers", type=positive_int, default=4, help="transformer layers")
    parser.add_argument("--d-ff", type=positive_int, default=256, help="ReLU width; other kinds are parameter-matched")
    parser.add_argument("--n-entities", type=positive_int, default=64, help="facts = entities × 6 relations")
    parser.add_argument("--loss", default="all", choices=("all", "attribute"),
                        help="facts LM loss: every token or the attribute")
    parser.add_argument("--names", default="families", choices=("families", "random"),
                        help="facts world names: families differing only in the last token, or drawn one by one")
    parser.add_argument("--n-edits", type=positive_int, default=100, help="facts to edit")
    parser.add_argument("--n-unrelated", type=positive_int, default=100,
                        help="unedited facts for the unrelated accuracy")
    parser.add_argument("--neuron-facts", type=positive_int, default=10,
                        help="facts whose knowledge neurons are counted")
    parser.add_argument("--trace-facts", type=positive_int, default=20, help="facts traced for the peak MLP layer")
    parser.add_argument("--token", default="subject_last", choices=("subject_last", "last"),
                        help="where keys are read and δ added (paper: subject_last)")
    add_seed(parser, "the models, the facts worlds and the edit choices")


def run(args) -> int:
    from studies import editability
    from studies.report.editability import write

    settings = editability.EditabilitySettings(
        kinds=tuple(k for k in args.kinds.split(",") if k), steps=args.steps, d_model=args.d_model,
        n_layers=args.n_layers, d_ff=args.d_ff, n_entities=args.n_entities, loss=args.loss, names=args.names,
        n_edits=args.n_edits,
        n_unrelated=args.n_unrelated, neuron_facts=args.neuron_facts, trace_facts=args.trace_facts, token=args.token,
        seed=args.seed)
    out = Path(args.out)
    result = editability.run(out, settings, progress_of(args))
    print(write(result, out))
    return 0
