"""Compile time against depth: each command's programs (knowledge attribution, tracing, edit, memories) on models
of 4, 8, 16 and 30 layers of SmolLM2's shape (d 576, 9 heads, 3 KV heads, swiglu F 1536, RMSNorm, RoPE; vocab
49152, or ``--vocab`` for a smaller variant), random weights, small inputs so that compiling dominates.

For each (command, depth): the programs XLA compiled (count) and the seconds spent in XLA's backend compiles
(JAX's ``/jax/core/compile/backend_compile_duration`` events), wall and this process's CPU time (which the
load of a shared machine does not inflate), plus the wall time of the whole first call (tracing, lowering,
compiling and running), after ``jax.clear_caches()``. The target (issue 21): the 30-layer
compile ≤ 1.5× the 4-layer one, ≤ 60 s. Run: ``python benchmarks/compile_depth.py [--depths 4,8,16,30]
[--vocab 49152] [--only tracing,edit] [--json rows.json]``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script, sys.path[0] is benchmarks/: import from the repository root instead
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax
import jax.numpy as jnp
import numpy as np

import ffnkv

COMMANDS = ("attribution", "tracing", "edit", "memories")
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"  # ends just before each backend compile starts


def smollm2_shape(n_layers: int, vocab: int = 49152, **changes) -> ffnkv.ModelConfig:
    """SmolLM2-135M's shape with ``n_layers`` layers."""
    base = dict(vocab_size=vocab, d_model=576, n_layers=n_layers, n_heads=9, n_kv_heads=3, d_ff=1536, ffn="swiglu",
                norm="rmsnorm", positional="rope", bias=False, max_len=64)
    return ffnkv.ModelConfig(**(base | changes))


@contextlib.contextmanager
def compiles():
    """Counts XLA backend compiles inside the block: yields a dict whose ``n``, ``seconds`` (wall) and
    ``cpu_seconds`` fill in. The CPU seconds are this process's CPU time from the end of each lowering to the end
    of its backend compile: unlike the wall time, they do not grow when other jobs share the cores."""
    record = {"n": 0, "seconds": 0.0, "cpu_seconds": 0.0}
    lowered = [None]

    def listen(event, duration, **_):
        if event == LOWER_EVENT:
            lowered[0] = time.process_time()
        if event == COMPILE_EVENT:
            record["n"] += 1
            record["seconds"] += duration
            if lowered[0] is not None:
                record["cpu_seconds"] += time.process_time() - lowered[0]
                lowered[0] = None

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield record
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def random_prompts(cfg, n: int, seq: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"tokens": rng.integers(0, cfg.vocab_size, (n, seq)).astype(np.int32),
            "predict_pos": np.full(n, seq - 1, np.int32), "target": rng.integers(0, cfg.vocab_size, n).astype(np.int32),
            "subject_start": np.full(n, 1, np.int32), "subject_end": np.full(n, 3, np.int32)}


def attribution(params, cfg, seq: int = 12):
    from analysis.integrated_gradients import integrated_gradients

    return integrated_gradients(params, cfg, random_prompts(cfg, 2, seq), steps=4)["attr"]


def tracing(params, cfg, seq: int = 12):
    from analysis.tracing import causal_trace

    return causal_trace(params, cfg, random_prompts(cfg, 2, seq), samples=2, window=min(10, cfg.n_layers))["restored"]


def edit_inputs(cfg, seq: int = 12, E: int = 2):
    """Random stacked ``(EditRequest, EditProbe, FactSet)`` of ``E`` edits of ``seq`` tokens."""
    from analysis.edit_eval import EditProbe, FactSet
    from analysis.rome import EditRequest

    rng = np.random.default_rng(1)
    tok = lambda *shape: jnp.asarray(rng.integers(1, cfg.vocab_size, shape), jnp.int32)
    pos = lambda *shape: jnp.full(shape, seq - 1, jnp.int32)
    P, M, Q = 3, 1, 2
    reqs = EditRequest(tok(E, P, seq), jnp.full((E, P), 2, jnp.int32), pos(E, P), tok(E), tok(E, M, seq),
                       jnp.full((E, M), 2, jnp.int32), jnp.full((E, M), 2, jnp.int32))
    probes = EditProbe(tok(E, 1, seq), pos(E, 1), tok(E, Q, seq), pos(E, Q), jnp.ones((E, Q)), tok(E, Q, seq),
                       pos(E, Q), tok(E, Q), jnp.ones((E, Q)), tok(E), tok(E))
    return reqs, probes, FactSet(tok(2, seq), pos(2), tok(2))


def layer_rule(params, cfg, C_LFF, reqs, probes, others, hp):
    """The editing study's layer rule: ROME single edits scored at every layer (``rome_single_scores``, the
    layer traced); S per layer."""
    from analysis.edit_eval import summarise
    from analysis.rome import rome_single_scores

    return [summarise(rome_single_scores(params, cfg, jnp.int32(l), C_LFF[l], reqs, probes, others, hp)[0])["S"]
            for l in range(cfg.n_layers)]


def edit(params, cfg, seq: int = 12):
    """The edit command's programs: C of every layer's keys, the layer rule (ROME single edits scored at every
    layer), ROME in sequence, the MEMIT λ sweep of a two-layer band and the scores, on random edits."""
    from analysis.covariance import key_second_moment
    from analysis.edit_eval import score_edited
    from analysis.rome import DeltaHParams, rome_sequential
    from studies.editing import memit_layers, memit_sweep

    reqs, probes, others = edit_inputs(cfg, seq)
    hp = DeltaHParams(steps=2, prefixes=())
    tokens = np.random.default_rng(3).integers(0, cfg.vocab_size, (4, seq)).astype(np.int32)
    C_LFF, _ = key_second_moment(params, cfg, range(cfg.n_layers), [(tokens, np.ones_like(tokens, np.float32))])
    C_LFF = jnp.asarray(C_LFF) + jnp.eye(cfg.width)
    layer_rule(params, cfg, C_LFF, reqs, probes, others, hp)
    layer = cfg.n_layers // 2
    edited, _ = rome_sequential(params, cfg, layer, C_LFF[layer], reqs, hp)
    scores = score_edited(edited, cfg, probes, others)["ES"]
    band = memit_layers(layer, 2, cfg.n_layers)
    memit = memit_sweep(params, cfg, band, C_LFF[jnp.asarray(band)], reqs, probes, others,
                        jnp.asarray([1e2, 1e4], jnp.float32), hp)
    return scores, memit[0]["ES"]


def memories(params, cfg, seq: int = 32):
    """Triggers, value projections, agreement inputs, composition, token removal, dominance and value clusters."""
    from analysis import memories as M
    from analysis import promotion as P

    tokens = np.random.default_rng(2).integers(0, cfg.vocab_size, (8, seq)).astype(np.int32)
    triggers = M.trigger_search(params, cfg, tokens, k=4, batch_size=4)
    M.value_top_tokens(params, cfg, 10)
    M.composition(params, cfg, tokens, batch_size=4)
    M.removal_effect(params, cfg, tokens, {k: np.asarray(v) for k, v in triggers.items()}, k=2, chunk=64)
    P.dominance(params, cfg, tokens, n=4, batch_size=4)
    return [P.cluster_values(params, cfg, layer, 4, jax.random.key(layer)) for layer in range(cfg.n_layers)]


WORK = {"attribution": attribution, "tracing": tracing, "edit": edit, "memories": memories}


def measure_one(command: str, cfg) -> dict:
    """Programs compiled, backend compile seconds and first-call wall seconds of ``command`` on ``cfg``."""
    params = ffnkv.init_params(jax.random.key(0), cfg)
    jax.block_until_ready(params)
    jax.clear_caches()
    with compiles() as c:
        start = time.perf_counter()
        jax.block_until_ready(WORK[command](params, cfg))
        wall = time.perf_counter() - start
    return {"command": command, "n_layers": cfg.n_layers, "programs": c["n"], "compile_s": c["seconds"],
            "compile_cpu_s": c["cpu_seconds"], "first_call_s": wall, "load_average": os.getloadavg()[0]}


def table(rows: list[dict]) -> str:
    """One line per command: programs, compile CPU seconds (wall seconds) per depth, and the deepest / shallowest
    ratio of the CPU seconds (the wall seconds of a shared machine grow with its load)."""
    depths = sorted({r["n_layers"] for r in rows})
    head = "| command | " + " | ".join(f"{d} layers: programs, compile CPU s (wall s)" for d in depths) + \
        f" | compile CPU {depths[-1]} / {depths[0]} layers |"
    lines = [head, "|" + "---|" * (len(depths) + 2)]
    for command in dict.fromkeys(r["command"] for r in rows):
        by = {r["n_layers"]: r for r in rows if r["command"] == command}
        if set(by) != set(depths):
            continue
        cells = [f"{by[d]['programs']}, {by[d]['compile_cpu_s']:.1f} ({by[d]['compile_s']:.1f})" for d in depths]
        ratio = by[depths[-1]]["compile_cpu_s"] / max(by[depths[0]]["compile_cpu_s"], 1e-9)
        lines.append(f"| {command} | " + " | ".join(cells) + f" | {ratio:.2f}× |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="4,8,16,30")
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--only", default=",".join(COMMANDS))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for command in args.only.split(","):
        for depth in (int(d) for d in args.depths.split(",")):
            rows.append(measure_one(command, smollm2_shape(depth, args.vocab)))
            print(json.dumps(rows[-1]), flush=True)
    print(f"device: {jax.devices()[0].device_kind}; SmolLM2 shape, vocab {args.vocab}")
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
