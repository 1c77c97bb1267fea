"""The matmul floor of the compiled training step: every dot XLA emits for it, timed alone at its own shapes.

The step (``benchmarks/train.py``'s ``Trainer``, reference shape) is compiled and every ``dot`` in its optimised
HLO — forward, input gradients, weight gradients, attention — is rebuilt as a lone ``lax.dot_general`` with the
same operand shapes and dimension numbers, jitted and timed (median of ``repeats``). Their sum is the time the
step needs for its matmuls alone with XLA:CPU's own dot kernels, before any softmax, norm, optimizer or glue:
no schedule of the same dots can beat it. Printed beside the whole step, the same-run 2048² matmul peak and,
with ``--torch-tokens-per-s``, the step time a target ratio over that figure needs.

Usage: ``python benchmarks/train_floor.py [--repeats 20] [--torch-tokens-per-s N] [--ratio 1.2]``; prints JSON.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import re
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script, sys.path[0] is benchmarks/: import from the repository root instead
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax
import jax.numpy as jnp

from benchmarks import common
from benchmarks.train import Trainer

_DEF = re.compile(r"%([\w.\-]+) = (\w+)\[([\d,]*)\]")
_DOT = re.compile(r"dot\(%([\w.\-]+), %([\w.\-]+)\)(.*)")
_DIMS = ("lhs_batch_dims", "rhs_batch_dims", "lhs_contracting_dims", "rhs_contracting_dims")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def dots(hlo: str) -> collections.Counter:
    """(lhs shape, rhs shape, dimension numbers, dtype) of every dot in the compiled ``hlo`` (operand shapes
    looked up by instruction name), with how often it occurs."""
    shapes = {m.group(1): (m.group(2), _ints(m.group(3))) for m in _DEF.finditer(hlo)}
    found = collections.Counter()
    for line in hlo.splitlines():
        m = _DOT.search(line)
        if not m:
            continue
        attrs = m.group(3)
        dims = tuple(_ints(re.search(rf"{d}={{([\d,]*)}}", attrs).group(1)) if f"{d}=" in attrs else () for d in _DIMS)
        (dtype, lhs), (_, rhs) = shapes[m.group(1)], shapes[m.group(2)]
        found[(lhs, rhs, dims, dtype)] += 1
    return found


def dot_seconds(lhs, rhs, dims, dtype: str, repeats: int) -> float:
    """Median seconds of one jitted ``lax.dot_general`` at these shapes (operands already on the device)."""
    lb, rb, lc, rc = dims
    dtype = {"f32": jnp.float32, "bf16": jnp.bfloat16, "f16": jnp.float16}[dtype]
    a = jax.random.normal(jax.random.key(0), lhs, dtype)
    b = jax.random.normal(jax.random.key(1), rhs, dtype)
    return common.seconds(jax.jit(lambda a, b: jax.lax.dot_general(a, b, ((lc, rc), (lb, rb)))), a, b, repeats=repeats)


def floor(repeats: int = 20, steps: int = 10) -> dict:
    peak_before = common.matmul_peak_flops()
    trainer = Trainer()
    hlo = trainer.step.as_text()
    rows, total = [], 0.0
    for (lhs, rhs, dims, dtype), count in sorted(dots(hlo).items()):
        secs = dot_seconds(lhs, rhs, dims, dtype, repeats)
        free_rhs = [n for i, n in enumerate(rhs) if i not in dims[1] + dims[3]]
        flops = 2.0 * math.prod(lhs) * math.prod(free_rhs)
        rows.append({"lhs": lhs, "rhs": rhs, "dims": dims, "count": count, "seconds": secs,
                     "gflops_per_s": flops / secs / 1e9})
        total += count * secs
    trainer.back_to_back(2)
    step_s = trainer.back_to_back(steps) / steps
    peak = max(peak_before, common.matmul_peak_flops())
    tokens = trainer.batch * trainer.seq
    return {"device": str(jax.devices()[0]), "dots": rows, "n_dots": sum(r["count"] for r in rows),
            "matmul_floor_s": total, "step_s": step_s, "floor_share_of_step": total / step_s,
            "floor_tokens_per_s": tokens / total, "step_tokens_per_s": tokens / step_s,
            "matmul_peak_gflops": peak / 1e9, "load_average": common.load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--torch-tokens-per-s", type=float, default=None, help="a measured PyTorch figure to compare")
    parser.add_argument("--ratio", type=float, default=1.2, help="the target ratio over that figure")
    args = parser.parse_args()
    r = floor(args.repeats)
    if args.torch_tokens_per_s:
        r["target_tokens_per_s"] = args.ratio * args.torch_tokens_per_s
        r["floor_reaches_target"] = r["floor_tokens_per_s"] >= r["target_tokens_per_s"]
    print(json.dumps(r, indent=1, default=str))


if __name__ == "__main__":
    main()
