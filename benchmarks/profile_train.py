"""Where the compiled train step spends its time: a ``jax.profiler`` trace of the reference step, each XLA:CPU
thunk attributed to a model component through the source location XLA keeps in the HLO metadata.

Per component: milliseconds per step summed over the runtime's threads (so on 2 busy cores the total is about
2 × the wall time), and the share of the total. Run with the per-thunk trace events switched on:

    XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true python benchmarks/profile_train.py [--dtype bfloat16] [--top 20]

On a machine shared with other jobs the milliseconds stretch with the load; the shares are the stable part.
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax
from jax.profiler import ProfileData

from benchmarks.train import Trainer

# innermost project function -> component (the first match walking outwards from the op's own frame)
COMPONENTS = {
    "norm": "layer norms", "_project": "attention q/k/v projections", "keys_values": "attention q/k/v projections",
    "_project_qkv": "attention q/k/v projections", "attend": "attention scores, softmax, AV",
    "causal_attention": "attention scores, softmax, AV", "attention": "attention W_o + glue",
    "_keys": "FFN (W_in, GELU, W_out)", "_values": "FFN (W_in, GELU, W_out)", "gelu": "FFN (W_in, GELU, W_out)",
    "_gelu": "FFN (W_in, GELU, W_out)", "coefficients": "FFN (W_in, GELU, W_out)", "values": "FFN (W_in, GELU, W_out)",
    "unembed": "unembedding + cross-entropy", "weighted_xent": "unembedding + cross-entropy",
    "embed": "embedding (gather, scatter-add)", "block": "residual adds, has_ffn",
}
_OPTAX = "optimizer (clip, AdamW)"


def _frames(hlo: str) -> tuple[dict, dict]:
    """instruction name -> stack_frame_id, and stack_frame_id -> [(file, function)] innermost first."""
    section = lambda name: re.search(rf"^{name}\n((?:\d+ .*\n)*)", hlo, re.M).group(1)
    files = dict(re.findall(r'^(\d+) "(.*)"$', section("FileNames"), re.M))
    funcs = dict(re.findall(r'^(\d+) "(.*)"$', section("FunctionNames"), re.M))
    locs = {i: (files[f], funcs[g]) for i, f, g in
            re.findall(r"^(\d+) \{file_name_id=(\d+) function_name_id=(\d+)", section("FileLocations"), re.M)}
    parents = {i: (loc, p) for i, loc, p in
               re.findall(r"^(\d+) \{file_location_id=(\d+)(?: parent_frame_id=(\d+))?", section("StackFrames"), re.M)}
    ops = dict(re.findall(r"%([\w.\-]+) = [^\n]*?stack_frame_id=(\d+)", hlo))
    return ops, {frame: _chain(parents, locs, frame) for frame in parents}


def _chain(parents: dict, locs: dict, frame: str) -> list:
    chain, seen = [], set()
    while frame in parents and frame not in seen:
        seen.add(frame)
        loc, parent = parents[frame]
        chain.append(locs[loc])
        frame = str(int(parent or 0) - 1)  # the text form prints parent ids one above the frame they name
    return chain


def component(chain: list) -> str:
    """The component of an op from its call chain (innermost first)."""
    for file, func in chain:
        if "/optax/" in file and not any(f.startswith(("weighted_xent", "softmax_cross")) for _, f in chain):
            return _OPTAX
        name = func.split(".<locals>")[0]
        if ("/ffnkv/" in file or "/train/" in file) and name in COMPONENTS:
            return COMPONENTS[name]
    return "other (layout copies, step glue)"


def profile(dtype: str = "float32", steps: int = 3) -> dict:
    """Per-component and per-op milliseconds per step (summed over threads) of the reference train step."""
    trainer = Trainer(dtype)
    ops, chains = _frames(trainer.step.as_text())
    trainer.realistic(2)
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            wall = trainer.realistic(steps)
        data = ProfileData.from_file(glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)[0])
    per_op = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if "Eigen" not in line.name:  # the runtime's worker threads
                continue
            for event in line.events:
                if not event.name.startswith(("ThunkExecutor", "SlinkyThreadPool")):
                    per_op[event.name] += event.duration_ns / steps / 1e6
    per_component = collections.Counter()
    for op, ms in per_op.items():
        per_component[component(chains.get(ops.get(op), []))] += ms
    return {"wall_s_per_step": wall / steps, "load_average": os.getloadavg()[0], "per_component_ms": per_component,
            "per_op_ms": per_op, "op_component": {op: component(chains.get(ops.get(op), [])) for op in per_op}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=15, help="also list the slowest ops")
    args = parser.parse_args()
    if "xla_cpu_enable_xprof_traceme" not in os.environ.get("XLA_FLAGS", ""):
        sys.exit("set XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true (per-thunk trace events)")
    result = profile(args.dtype, args.steps)
    total = sum(result["per_component_ms"].values())
    print(f"wall {result['wall_s_per_step']:.3f} s/step, {total:.0f} ms of thunks/step summed over threads, "
          f"load average {result['load_average']:.2f}")
    print(f"{'component':<36}{'ms/step':>9}{'share':>8}")
    for name, ms in result["per_component_ms"].most_common():
        print(f"{name:<36}{ms:>9.1f}{ms / total:>8.1%}")
    for op, ms in result["per_op_ms"].most_common(args.top):
        print(f"  {op:<34}{ms:>9.1f}  {result['op_component'][op]}")


if __name__ == "__main__":
    main()
