"""Train a model from a config file: ``ffnkv train configs/condcomp.py --set model.ffn=gelu --run-dir runs/x``.

The config file defines ``get_config()`` returning a ``train.config.TrainConfig``; ``--set key=value`` (dotted
keys: ``steps``, ``model.d_ff``, ``optim.lr``, ``data.modulus``, ``mesh``) overrides it. The resolved config is
saved as ``<run-dir>/config.json``; re-running the same command on the same run dir resumes from the newest
good checkpoint. SIGTERM saves and exits 0. Multi-host: pass --coordinator/--num-processes/--process-id in
every process (``jax.distributed.initialize``).
"""
from __future__ import annotations

import json

from cli.args import add_distributed, output_dir, start_distributed

NAME = "train"
HELP = "train a model from a config file (resumes if the run dir has checkpoints)"


def add_arguments(parser) -> None:
    parser.add_argument("config", help="Python config file with get_config() (e.g. configs/condcomp.py) or a preset: condcomp, facts, text")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (repeatable), e.g. --set model.ffn=gelu --set steps=500")
    parser.add_argument("--run-dir", type=output_dir, required=True, help="output dir: config.json, metrics.jsonl, checkpoints/")
    add_distributed(parser)
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="train N seeds (seed, seed+1, …: init and data order) as one program; sets `seeds`")


def run(args) -> int:
    from train.config import apply_overrides, load_config_file, resolve

    cfg = apply_overrides(load_config_file(args.config), args.overrides)
    if args.seeds is not None:
        cfg = cfg.replace(seeds=args.seeds)
    if args.no_progress:
        cfg = cfg.replace(progress=False)
    resolve(cfg)  # config mistakes fail here, before anything touches the run dir
    start_distributed(args)
    from train.loop import train

    result = train(cfg, args.run_dir)
    import jax

    if jax.process_index() == 0:
        print(json.dumps(result))
    return 0
