"""Train a model from a config file: ``ffnkv train configs/condcomp.py --set model.ffn=gelu --out runs/x``.

The config file defines ``get_config()`` returning a ``train.config.TrainConfig``; ``--set key=value`` (dotted
keys), ``--seed``, ``--seeds`` and ``--mesh`` override it. SIGTERM and SIGINT save a checkpoint and exit
128 + the signal (143, 130); multi-host runs pass --coordinator/--num-processes/--process-id in every process.
"""
from __future__ import annotations

import json

from cli.args import add_distributed, add_mesh, alias, nonnegative_int, output_dir, start_distributed

NAME = "train"
HELP = "train a model from a config file (resumes if the run dir has checkpoints)"
DESCRIPTION = """Train a model from a config file or preset, e.g.
  ffnkv train condcomp --set model.ffn=gelu --set steps=500 --out runs/gelu

The resolved config is saved as OUT/config.json; running the same command on the same --out resumes from the
newest good checkpoint. SIGTERM saves a checkpoint and exits 143, SIGINT (Ctrl-C) saves and exits 130; re-run the
same command to resume. Several processes (one per host) run the same command, each with its own --process-id."""


def add_arguments(parser) -> None:
    parser.add_argument("config", help="Python config file with get_config() (e.g. configs/condcomp.py) or a preset: "
                        "condcomp, facts, text")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (repeatable; dotted keys such as steps, model.d_ff, optim.lr, "
                             "data.modulus), e.g. --set model.ffn=gelu --set steps=500")
    parser.add_argument("--out", type=output_dir, default=None, metavar="DIR",
                        help="run dir, required: config.json, metrics.jsonl, checkpoints/")
    alias(parser, "--run-dir", "--out", "out", type=output_dir)
    parser.add_argument("--seed", type=nonnegative_int, default=None,
                        help="seed of initialisation and data order (default: the config's seed)")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="train N seeds (seed, seed+1, ...: init and data order) as one program (default: the "
                             "config's seeds)")
    add_mesh(parser, "the config's mesh, (-1,1): every device on the data axis")
    add_distributed(parser)


def run(args) -> int:
    from ffnkv.errors import FfnkvError
    from train.config import apply_overrides, load_config_file, resolve

    if args.out is None:
        raise FfnkvError("no run dir given; pass --out DIR.")
    cfg = apply_overrides(load_config_file(args.config), args.overrides)
    changes = {"seed": args.seed, "seeds": args.seeds, "mesh": args.mesh}
    cfg = cfg.replace(**{k: v for k, v in changes.items() if v is not None})
    if args.no_progress:
        cfg = cfg.replace(progress=False)
    resolve(cfg)  # config mistakes fail here, before anything touches the run dir
    start_distributed(args)
    from train.loop import train

    result = train(cfg, args.out)
    import jax

    if jax.process_index() == 0:
        print(json.dumps(result))
    return 0
