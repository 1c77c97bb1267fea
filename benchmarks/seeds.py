"""S seeds in one program vs S separate runs: tokens/s of the train step for one seed, for k seeds batched
(``TrainConfig.seeds = k``: one ``vmap``-ed step over a state stacked on a seed axis) and for k seeds trained
one after another, each with the ratio to the machine's f32 matmul peak measured in the same run.

The step is ``train.step``'s, compiled as ``train.loop`` compiles it (state donated), on the config's own
batches (seed i's from ``task.batch(seed + i, step, batch_size)``, already on the device, so the host's batch
drawing is not timed). Model FLOPs per token: 3 × ``common.forward_flops_per_token`` (forward + backward).
The three loops alternate in interleaved rounds (``common.interleaved``), so load on a shared machine falls on
all of them alike; the peak is the better of one measurement before and one after. Each loop's CPU seconds
(this process, all threads) are reported beside its wall time: on a machine shared with other work they say
what the loop costs better than wall time does.

With ``--seed-batch B`` a fourth loop runs the k seeds as one program that loops over groups of B vmapped seeds
(``TrainConfig.seed_batch``; B = 1: a ``lax.map`` over the seeds).

Usage: ``python benchmarks/seeds.py [CONFIG|PRESET] [--seeds 4] [--steps 20] [--rounds 3] [--seed-batch B]
[--set k=v ...]``
(default: the ``condcomp`` preset); prints one JSON object and a table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # the benchmarks dir must not shadow the repository's packages
    sys.path[0] = str(REPO)

import jax
import numpy as np

from benchmarks import common
from train.config import apply_overrides, load_config_file, resolve
from train.state import init_state, make_optimizer, schedule, seed_values
from train.step import jit_train_step

FIELDS = ("tokens", "targets", "weights")


class Seeds:
    """The compiled step of ``cfg`` (``cfg.seeds`` seeds in one program; or ``step``, compiled already for the
    same shapes), its state and ``steps`` device batches."""

    def __init__(self, cfg, task, steps: int, step=None):
        self.cfg = cfg
        self.state = init_state(cfg)
        per_step = [[task.batch(s, k, cfg.batch_size) for s in seed_values(cfg)] for k in range(steps)]
        stack = (lambda parts, f: parts[0][f]) if cfg.seeds == 1 else (lambda parts, f: np.stack([p[f] for p in parts]))
        self.batches = jax.device_put([{f: stack(parts, f) for f in FIELDS} for parts in per_step])
        start = time.perf_counter()
        self.step = step or jit_train_step(cfg, make_optimizer(cfg), schedule(cfg)).lower(
            self.state, self.batches[0]).compile()
        self.compile_s = time.perf_counter() - start

    def run(self):
        """Every batch once, dispatched back to back; returns the last metrics (the caller blocks on them)."""
        for batch in self.batches:
            self.state, metrics = self.step(self.state, batch)
        return metrics


def measure(cfg, k: int, steps: int, rounds: int, seed_batch: int | None = None) -> dict:
    cfg, task = resolve(cfg.replace(seeds=1))
    seq = int(np.shape(task.batch(cfg.seed, 0, 1)["tokens"])[1])
    load_before = common.load_average()
    peaks = [common.matmul_peak_flops()]
    one = Seeds(cfg, task, steps)
    sequential = [one] + [Seeds(cfg.replace(seed=cfg.seed + i), task, steps, one.step) for i in range(1, k)]
    batched = Seeds(cfg.replace(seeds=k), task, steps)
    loops = {"1 seed": one.run, f"{k} seeds batched": batched.run,
             f"{k} seeds sequential": lambda: [s.run() for s in sequential]}
    grouped = f"{k} seeds, groups of {seed_batch}"
    if seed_batch is not None:
        loops[grouped] = Seeds(cfg.replace(seeds=k, seed_batch=seed_batch), task, steps).run
    for fn in loops.values():  # warm-up: the first calls after compilation
        jax.block_until_ready(fn())
    cpu = {name: [] for name in loops}

    def cpu_timed(name, fn):
        start = time.process_time()
        out = jax.block_until_ready(fn())
        cpu[name].append(time.process_time() - start)
        return out

    secs = common.interleaved({name: (lambda n=name, f=fn: cpu_timed(n, f)) for name, fn in loops.items()},
                              repeats=rounds)
    peaks.append(common.matmul_peak_flops())
    flops_per_token = 3 * common.forward_flops_per_token(cfg.model, seq)
    tokens = {"1 seed": steps * cfg.batch_size * seq}
    tokens[f"{k} seeds batched"] = tokens[f"{k} seeds sequential"] = tokens[grouped] = k * tokens["1 seed"]
    rows = {name: common.row(name, "tokens", tokens[name], secs[name], tokens[name] * flops_per_token, peaks,
                             cpu_s=float(np.median(cpu[name]))) for name in loops}
    return {"seeds": k, "steps": steps, "rounds": rounds, "batch_size": cfg.batch_size, "seq": seq,
            "model": cfg.model.to_dict(), "flops_per_token": flops_per_token, "rows": rows,
            "speedup_batched_vs_sequential": secs[f"{k} seeds sequential"] / secs[f"{k} seeds batched"],
            "batched_cost_in_single_runs": secs[f"{k} seeds batched"] / secs["1 seed"],
            "cpu_speedup_batched_vs_sequential": (rows[f"{k} seeds sequential"]["cpu_s"]
                                                  / rows[f"{k} seeds batched"]["cpu_s"]),
            "compile_s": {"1 seed": one.compile_s, f"{k} seeds batched": batched.compile_s},
            "load_average_before": load_before, "load_average": common.load_average(), "cpus": os.cpu_count()}


def print_table(result: dict) -> None:
    print(f"{'':<26}{'tokens/s':>12}{'seconds':>10}{'CPU s':>8}{'GFLOP/s':>10}{'of peak':>9}")
    for name, r in result["rows"].items():
        print(f"{name:<26}{r['throughput']:>12,.0f}{r['seconds']:>10.3f}{r['cpu_s']:>8.3f}"
              f"{r['model_flops_per_s'] / 1e9:>10.2f}{r['ratio_to_peak']:>9.1%}")
    k, peak = result["seeds"], next(iter(result["rows"].values()))["peak_flops_per_s"]
    print(f"{k} seeds batched: {result['speedup_batched_vs_sequential']:.2f}x the speed of {k} sequential runs "
          f"(CPU time: {result['cpu_speedup_batched_vs_sequential']:.2f}x), "
          f"costing {result['batched_cost_in_single_runs']:.2f} single-seed runs; "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s; "
          f"{result['steps']} steps × {result['rounds']} rounds; {result['rows']['1 seed']['device']}, "
          f"{result['cpus']} CPUs, load average {result['load_average'][0]}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="condcomp", help="config file or preset (default condcomp)")
    parser.add_argument("--seeds", type=int, default=4, help="k: seeds batched in one program (default 4)")
    parser.add_argument("--steps", type=int, default=20, help="train steps per timed loop (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--seed-batch", type=int, default=None, metavar="B",
                        help="also time the k seeds as one program looping over groups of B (TrainConfig.seed_batch)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    cfg = apply_overrides(load_config_file(args.config), args.overrides)
    result = measure(cfg, args.seeds, args.steps, args.rounds, args.seed_batch)
    print(json.dumps(result, indent=2))
    print_table(result)


if __name__ == "__main__":
    main()
