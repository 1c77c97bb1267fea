"""Memory known before it is spent: each sweep's chunk size from a memory budget and the model's shapes.

A sweep maps a function over items (facts × cells, prompts × α blocks, corpus rows, edits) with
``lax.map(..., batch_size=chunk)``: memory is what the program holds throughout (parameters, per-fact caches,
outputs: ``fixed``) plus ``chunk`` items' activations in flight (``per_item``). :func:`plan` picks the largest
chunk whose estimate fits the budget (``--memory-gb``; default half of the memory the machine has available,
:func:`default_budget`) and refuses in one sentence when even one item does not fit. The estimates below count
the float32 buffers a block step keeps alive (inputs, projections, scores, FFN coefficients, outputs; all
saved for the backward pass where there is one) and the logits; ``tests/test_plan.py`` holds each estimate
within a stated factor of the compiled program's own ``memory_analysis()``. FLOPs are matmul FLOPs (a
multiply-add counts 2; norms, softmaxes and activations are not counted), the formulas the benchmarks use.
"""
from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

from ffnkv.errors import FfnkvError

F32 = 4
GB = 1e9


@dataclasses.dataclass(frozen=True)
class Plan:
    """``items`` swept ``chunk`` at a time; the estimated peak bytes of the program and its matmul FLOPs."""

    what: str
    items: int
    chunk: int
    peak_bytes: float
    flops: float
    budget_bytes: float

    def line(self) -> str:
        return (f"plan: {self.what}: {self.items} items in chunks of {self.chunk}, estimated peak "
                f"{self.peak_bytes / GB:.2f} GB of a {self.budget_bytes / GB:.2f} GB budget, "
                f"{self.flops / 1e12:.3g} TFLOP")


def announce(p: Plan) -> None:
    """The plan on stderr (what a command prints before compiling)."""
    print(p.line(), file=sys.stderr, flush=True)


def announce_once():
    """An ``on_plan`` that announces only the first plan it is shown (a sweep dispatched in chunks plans each)."""
    shown = []

    def on_plan(p: Plan) -> None:
        if not shown:
            shown.append(p)
            announce(p)
    return on_plan


def available_bytes() -> int:
    """Memory the machine has available now: ``MemAvailable`` of /proc/meminfo, else free physical pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_budget(share: float = 0.5) -> float:
    """The default budget: ``share`` of the available memory (the rest for the runtime, XLA and the OS)."""
    return share * available_bytes()


def budget_bytes(memory_gb: float | None) -> float:
    if memory_gb is not None and not memory_gb > 0:
        raise FfnkvError(f"--memory-gb={memory_gb} is not allowed; give a positive number of gigabytes.")
    return default_budget() if memory_gb is None else float(memory_gb) * GB


def plan(what: str, items: int, fixed: float, per_item: float, flops: float, memory_gb: float | None = None,
         max_chunk: int | None = None) -> Plan:
    """The largest chunk (≤ ``items``, ≤ ``max_chunk``) with ``fixed + chunk · per_item`` within the budget."""
    budget = budget_bytes(memory_gb)
    if fixed + per_item > budget:
        raise FfnkvError(f"{what} needs about {(fixed + per_item) / GB:.2f} GB for even one item in flight, more "
                         f"than the {budget / GB:.2f} GB budget; raise --memory-gb or use fewer facts, samples or "
                         "prompts.")
    chunk = int(min(items, max_chunk or items, (budget - fixed) // max(per_item, 1.0)))
    chunk = max(1, chunk)
    return Plan(what, int(items), chunk, fixed + chunk * per_item, float(flops), budget)


# ---------------------------------------------------------------- model FLOPs

def flops_parts(cfg, seq_len: int) -> dict:
    """Matmul FLOPs per token (a multiply-add counts 2) of the pieces of the forward pass.

    ``proj``: one layer's Q, K, V, O projections 2·D·(H + 2G + H)·d_head; ``scores``: one layer's QKᵀ and AV
    over all T keys, 2·2·T·D (the causal half is computed too); ``ffn``: one FFN layer 2·D·F·(3 if swiglu
    else 2); ``unembed``: 2·D·V. Norms, softmaxes and activations are not counted.
    """
    D = cfg.d_model
    return {"proj": 2 * D * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.kv_heads), "scores": 4 * seq_len * D,
            "ffn": 2 * D * cfg.width * (3 if cfg.ffn == "swiglu" else 2), "unembed": 2 * D * cfg.vocab_size}


def forward_flops_per_token(cfg, seq_len: int, logits: bool = True) -> float:
    """Matmul FLOPs of one token's forward pass: L·(proj + scores) + (FFN layers)·ffn + unembed
    (:func:`flops_parts`). ``logits=False`` leaves out the unembedding, for programs that only read
    activations (XLA drops the unused logits as dead code)."""
    p = flops_parts(cfg, seq_len)
    return (cfg.n_layers * (p["proj"] + p["scores"]) + float(cfg.has_ffn_L().sum()) * p["ffn"]
            + (p["unembed"] if logits else 0))


def block_flops(cfg, layer: int, keys: int) -> float:
    """Matmul FLOPs per query token of block ``layer`` attending over ``keys`` keys (:func:`flops_parts`)."""
    p = flops_parts(cfg, keys)
    return p["proj"] + p["scores"] + float(cfg.has_ffn_L()[layer]) * p["ffn"]


def suffix_flops(cfg, first: int, tokens: int, keys: int, logits: int = 1, query: bool = False) -> float:
    """A forward from block ``first`` over ``tokens`` suffix positions attending over ``keys`` keys, with the
    logits of ``logits`` positions (ffnkv.prefix.forward_from + logits_at). ``query``: the last block at one
    position, plus the keys/values 2·D·2G·d_head of every suffix position (forward_from's ``query``)."""
    L = cfg.n_layers
    if not query or first >= L:
        body = sum(block_flops(cfg, j, keys) for j in range(first, L))
        return tokens * body + logits * flops_parts(cfg, keys)["unembed"]
    kv = 2 * cfg.d_model * 2 * cfg.kv_heads * cfg.head_dim
    return (suffix_flops(cfg, first, tokens, keys, logits) - (tokens - 1) * block_flops(cfg, L - 1, keys)
            + (tokens - 1) * kv)


def cache_flops(cfg, seq: int, logits: int | None = None) -> float:
    """One run and its prefix cache: the forward with the logits of ``logits`` positions (default all ``seq``)
    plus the keys/values recomputed from each block's input, 2·D·2G·d_head per token and layer."""
    kv = 2 * cfg.d_model * 2 * cfg.kv_heads * cfg.head_dim
    unembed = (seq if logits is None else logits) * flops_parts(cfg, seq)["unembed"]
    return seq * (forward_flops_per_token(cfg, seq, logits=False) + cfg.n_layers * kv) + unembed


# ---------------------------------------------------------------- bytes

def param_bytes(cfg) -> float:
    """Bytes of the parameters (float32), from their shapes (nothing is allocated)."""
    import jax

    from ffnkv.model import init_params

    shapes = jax.eval_shape(lambda: init_params(jax.random.key(0), cfg))
    return float(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes))) * F32


def block_bytes(cfg, positions: int, keys: int) -> float:
    """The buffers one block step holds for one row of ``positions`` queries over ``keys`` keys: the input,
    norms, Q/K/V, the keys and values with the suffix written in, scores and probabilities, attention and FFN
    outputs, and the FFN coefficients (two, or three for swiglu)."""
    D, F, H, G, dh = cfg.d_model, cfg.width, cfg.n_heads, cfg.kv_heads, cfg.head_dim
    per_position = 8 * D + H * dh + 2 * G * dh + (3 if cfg.ffn == "swiglu" else 2) * F + 2 * H * keys
    return F32 * (positions * per_position + 2 * keys * G * dh)


def logits_bytes(cfg, rows: int) -> float:
    """Logits and their exponentials (softmax / log-sum-exp) of ``rows`` positions."""
    return F32 * 2 * rows * cfg.vocab_size


def acts_bytes(cfg, positions: int) -> float:
    """A forward's stacked Acts of one row (resid_pre, attn_out, resid_mid, mlp_out, resid_post and the FFN
    coefficients of every layer)."""
    return F32 * cfg.n_layers * positions * (5 * cfg.d_model + cfg.width)


def cache_bytes(cfg, positions: int) -> float:
    """One run's ffnkv.prefix.Cache: keys and values of every block and the L + 1 residuals."""
    return F32 * positions * (2 * cfg.n_layers * cfg.kv_heads * cfg.head_dim + (cfg.n_layers + 1) * cfg.d_model)


# ---------------------------------------------------------------- the sweeps

def tracing_plan(cfg, n_facts: int, seq: int, kind_ids, layers, samples: int, sample_blocks: int, window: int,
                 recompute: str = "prefix", buckets: int = 8, memory_gb: float | None = None,
                 max_chunk: int | None = None) -> Plan:
    """Causal tracing (analysis.tracing): per fact the clean and S corrupted caches and restored activations
    (fixed), then (fact, cell, sample block) items of S / blocks rows each, a suffix of ≤ T positions."""
    from analysis.tracing import first_layer
    from ffnkv.prefix import suffix_groups

    L, T, D = cfg.n_layers, seq, cfg.d_model
    rows = samples // sample_blocks
    sites = sum(any(k in pair for k in kind_ids) for pair in ((1, 3), (2, 4)))
    if recompute == "prefix":
        per_fact = samples * (cache_bytes(cfg, T) + F32 * sites * L * T * D) + F32 * (L + 1 + sites * L) * T * D
        per_row = block_bytes(cfg, T, T) + logits_bytes(cfg, 1) + F32 * 2 * T * D
        length = {t: n for n, ts in suffix_groups(T, cfg.causal, buckets).items() for t in ts}
        cell = sum(suffix_flops(cfg, first_layer(k, l, window), length[t], T, query=True) for k in kind_ids
                   for t in range(T) for l in layers)
        flops = n_facts * ((1 + samples) * cache_flops(cfg, T) + samples * cell)
    else:
        per_fact = F32 * (1 + samples) * 3 * L * T * D
        per_row = block_bytes(cfg, T, T) + logits_bytes(cfg, T) + acts_bytes(cfg, T)
        runs = 1 + samples + len(kind_ids) * T * len(layers) * samples
        flops = n_facts * T * forward_flops_per_token(cfg, T) * runs
    context = (1 + samples) * (acts_bytes(cfg, T) + cache_bytes(cfg, T) + logits_bytes(cfg, T))
    items = n_facts * len(kind_ids) * T * len(layers) * sample_blocks
    out = F32 * 2 * items
    fixed = param_bytes(cfg) + n_facts * per_fact + out
    p = plan("causal tracing", items, fixed + context, rows * per_row, flops, memory_gb, max_chunk)
    return p


def attribution_plan(cfg, n_prompts: int, seq: int, steps: int, alpha_blocks: int, path: str = "layer",
                     recompute: str = "prefix", memory_gb: float | None = None, max_chunk: int | None = None) -> Plan:
    """Integrated gradients (analysis.integrated_gradients): (prompt, α block) items; with the cached prefix each item
    is the prompt's clean run and every layer's K + 1 rows through the blocks from their own, forward and
    backward (every block's buffers saved); otherwise K whole forwards and backwards per (prompt, path)."""
    L, T = cfg.n_layers, seq
    K = -(-steps // alpha_blocks) + 1
    S = 1 if cfg.causal else T
    if path == "layer" and recompute == "prefix":
        rows = L * K
        per_item = (acts_bytes(cfg, T) + cache_bytes(cfg, T) + 2 * rows * L * block_bytes(cfg, S, T)
                    + 3 * logits_bytes(cfg, rows))
        items = n_prompts * alpha_blocks
        flops = n_prompts * (cache_flops(cfg, T, 1) + 3 * K * sum(suffix_flops(cfg, l, S, T) for l in range(L)))
    else:
        paths = L if path == "layer" else 1
        P = S if recompute == "prefix" else T  # the joint path over the cached prefix recomputes S positions
        per_item = K * (2 * L * block_bytes(cfg, P, T) + 3 * logits_bytes(cfg, P))
        items = n_prompts * paths * alpha_blocks
        flops = n_prompts * paths * 3 * K * T * forward_flops_per_token(cfg, T)
    fixed = param_bytes(cfg) + n_prompts * (cache_bytes(cfg, T) + F32 * L * cfg.width * 2)
    return plan("integrated gradients", items, fixed, per_item, flops, memory_gb, max_chunk)


def stream_plan(what: str, cfg, n_rows: int, seq: int, memory_gb: float | None = None,
                max_chunk: int | None = None, logits_per_layer: bool = True) -> Plan:
    """A corpus streamed in chunks of rows (memories: triggers, composition, dominance): per row a forward's
    Acts and one block step, plus one layer's logits at every position (the top-1 readings)."""
    per_row = acts_bytes(cfg, seq) + block_bytes(cfg, seq, seq) + (logits_bytes(cfg, seq) if logits_per_layer else 0)
    fixed = param_bytes(cfg) + F32 * 4 * cfg.n_layers * cfg.width * 32
    flops = n_rows * seq * forward_flops_per_token(cfg, seq)
    return plan(what, n_rows, fixed, per_row, flops, memory_gb, max_chunk)


def edit_plan(cfg, n_edits: int, prompts: int, seq: int, steps: int, memory_gb: float | None = None,
              max_chunk: int | None = None) -> Plan:
    """ROME edits scored one by one (analysis.edit_eval.score_single_edits): per edit an edited copy of the
    value matrices, the δ hooks, and forward + backward over its ``prompts`` prompts of ``seq`` tokens."""
    L, T = cfg.n_layers, seq
    per_item = (F32 * L * cfg.width * cfg.d_model + F32 * L * prompts * T * cfg.d_model
                + prompts * (2 * L * block_bytes(cfg, T, T) + 3 * logits_bytes(cfg, T)))
    flops = n_edits * prompts * T * forward_flops_per_token(cfg, T) * (3 * steps + 4)
    return plan("ROME edits", n_edits, param_bytes(cfg), per_item, flops, memory_gb, max_chunk)
