"""``ffnkv compare``: train every FFN kind on the same task with matched FFN parameter counts and compare them
(the study is ``studies.condcomp``).

Each kind trains in its own run dir ``<out>/<kind>/`` (resumable; every analysis command runs on it). The FFN
width of kind k is ``matched_d_ff(k, d_model, d_ff)`` with the config's relu ``d_ff`` as the reference, so
every FFN has (nearly) the parameters of the relu FFN; ``none`` has no FFN at all. Writes
``<out>/compare.json`` (per kind: parameters, FFN parameters, d_ff, steps, final train/eval loss, eval
accuracy per op, the first eval step with accuracy ≥ 95% per op) and ``<out>/compare.png`` (eval accuracy
curves per kind), and prints the table.
"""
from __future__ import annotations

from pathlib import Path

from cli.args import add_mesh, add_out, alias, fraction, nonnegative_int

NAME = "compare"
HELP = "train every FFN kind on conditional computation with matched parameters; compare.json + PNG + table"
DESCRIPTION = """Train every FFN kind on the same conditional-computation task with matched FFN parameter counts
and compare them. Each kind trains in its own run dir OUT/KIND/ (resumable; every analysis command runs on it);
the relu FFN's d_ff is the reference width and every other kind gets (nearly) its parameters. Writes
OUT/compare.json (per kind: parameters, d_ff, steps, final losses, eval accuracy per op, the first eval step
reaching --accuracy-threshold per op), OUT/compare.png (eval accuracy curves) and prints the table."""


def add_arguments(parser) -> None:
    from studies.condcomp import KINDS

    parser.add_argument("--config", default=None, help="config file with get_config() (default: the embedded "
                        "condcomp preset, configs/condcomp.py)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field for every kind, e.g. --set steps=3000")
    add_out(parser, "runs/compare")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated FFN kinds (default: all six)")
    parser.add_argument("--accuracy-threshold", type=fraction, default=0.95, metavar="A",
                        help="eval accuracy that counts as learnt, for steps-to-threshold")
    alias(parser, "--threshold", "--accuracy-threshold", "accuracy_threshold", type=fraction)
    parser.add_argument("--no-plateau", action="store_true", help="train every kind the config's steps (default: stop "
                        "when eval accuracy stops rising; steps is the cap)")
    parser.add_argument("--seed", type=nonnegative_int, default=None,
                        help="seed of initialisation and data order (default: the config's seed)")
    add_mesh(parser, "the config's mesh, (-1,1): every device on the data axis")


def run(args) -> int:
    import jax

    from studies import condcomp
    from studies.report.condcomp import table, write
    from train.config import apply_overrides, load_config_file

    cfg = apply_overrides(load_config_file(args.config or "condcomp"), args.overrides)
    cfg = cfg.replace(**{k: v for k, v in {"seed": args.seed, "mesh": args.mesh}.items() if v is not None})
    if args.no_progress:
        cfg = cfg.replace(progress=False)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    settings = condcomp.CompareSettings(kinds, args.accuracy_threshold,
                                        None if args.no_plateau else condcomp.Plateau())
    out = Path(args.out or "runs/compare")
    result = condcomp.run(cfg, out, settings, log=lambda line: print(line, flush=True))
    if jax.process_index() == 0:
        write(result, out)
        print(table(result["kinds"], args.accuracy_threshold))
        print(f"wrote {out / 'compare.json'} and {out / 'compare.png'}")
    return 0
