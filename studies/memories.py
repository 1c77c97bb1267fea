"""Geva et al.'s key-value memory analyses (2021: triggers, agreement, composition, refinement, token removal;
2022: sub-update dominance, promoted tokens, value clusters) on any model.

``corpus(model, settings, texts=None)`` gives the text to stream: a trained run's own corpus (facts: fresh
training packs; text: windows of the memmap), or, for a pretrained model, ``texts`` (default: the probe
sentences of ``ffnkv.data.probes``), one row each. ``run(model, corpus, settings) -> dict`` returns the
``memories`` and ``promotion`` results with their chance baselines (values re-paired with keys for agreement
and zero agreement, 1/V, top_n/F) and readable ``examples`` (sampled keys' triggers and values as text).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from analysis import memories as M
from analysis import promotion as P
from analysis.plan import announce, stream_plan
from ffnkv.errors import FfnkvError
from ffnkv.progress import Progress
from ffnkv.sharding import make_mesh


@dataclasses.dataclass(frozen=True)
class MemoriesSettings:
    """``max_tokens`` streamed; ``k`` triggers per key; ``final_norm``: project through the final norm (default raw
    ``v·E``, as Geva 2021); ``threshold``: a memory is active where m > threshold; ``n_shuffles`` re-pairings for
    the agreement baseline; ``removal_keys``: keys per layer in the token-removal test (0: all);
    ``sample_keys`` per layer in the examples; ``clusters`` per layer; ``top_n`` sub-updates; ``window``:
    tokens per row of a pretrained model's corpus."""

    max_tokens: int = 200_000
    window: int = 64
    batch_size: int = 32
    seed: int = 0
    k: int = 25
    final_norm: bool = False
    threshold: float = 0.0
    n_shuffles: int = 100
    removal_keys: int = 0
    sample_keys: int = 6
    clusters: int = 8
    top_n: int = 10
    mesh: tuple | None = None  # (data, model) device counts of the sweeps' mesh; None: one device
    memory_gb: float | None = None  # the streams' memory budget (analysis.plan); None: half the available memory

    def __post_init__(self):
        for name in ("max_tokens", "k", "batch_size", "n_shuffles", "top_n", "window", "clusters"):
            if getattr(self, name) < 1:
                raise FfnkvError(f"{name} must be a positive integer; got {getattr(self, name)}.")


def corpus(model, settings: MemoriesSettings, texts=None) -> dict:
    """``tokens``/``targets``/``mask`` ``[N, T]`` and ``protect`` (leading tokens never removed)."""
    task = model.run.task if model.run is not None else None
    if texts is None and task is not None:
        if not hasattr(task, "windows"):
            raise FfnkvError(f"the run {model.name!r} has no text corpus to stream; use a facts or text run, "
                             "or give texts.")
        return task.windows(settings.max_tokens)
    if texts is None:
        from ffnkv.data.probes import english_sentences

        texts = english_sentences(max(2, settings.max_tokens // 12), settings.seed)
    tok = model.tokenizer
    head = [tok.bos_id] if tok.add_bos else []
    rows, total = [], 0
    for text in texts:
        ids = (head + tok.encode(text))[: settings.window + 1]
        if len(ids) > 1 + len(head) and total < settings.max_tokens:
            rows.append(ids)
            total += len(ids)
    if not rows:
        raise FfnkvError("the texts give no row of at least two tokens to stream.")
    T = max(map(len, rows))
    tokens = np.zeros((len(rows), T), np.int32)
    real = np.zeros((len(rows), T), bool)
    for i, ids in enumerate(rows):
        tokens[i, : len(ids)], real[i, : len(ids)] = ids, True
    targets = np.concatenate([tokens[:, 1:], np.zeros((len(rows), 1), np.int32)], 1)
    mask = real & np.concatenate([real[:, 1:], np.zeros((len(rows), 1), bool)], 1)
    return {"tokens": tokens, "targets": targets, "mask": mask, "protect": len(head)}


def _sample_triggers(triggers: dict, n: int, rng) -> dict:
    """The triggers of ``n`` random keys per layer (all keys when ``n`` is 0)."""
    if not n or n >= triggers["index"].shape[1]:
        return triggers
    keys = np.sort(rng.choice(triggers["index"].shape[1], n, replace=False))
    return {name: np.asarray(a)[:, keys] for name, a in triggers.items()}


def run(model, data: dict, settings: MemoriesSettings = MemoriesSettings(), progress: Progress | None = None) -> dict:
    """Every analysis of the module docstring on ``data`` (from :func:`corpus`); JSON-able. ``progress``: where
    the streamed passes report (default: a bar when stderr is a terminal)."""
    params, cfg, s = model.params, model.cfg, settings
    progress = Progress() if progress is None else progress
    tokens, targets, mask = data["tokens"], data["targets"], data.get("mask")
    key_agree, key_zero, key_cluster = jax.random.split(jax.random.key(s.seed), 3)
    rng = np.random.default_rng(s.seed)
    p = stream_plan("memories (streamed rows)", cfg, len(tokens), np.shape(tokens)[1], s.memory_gb, s.batch_size)
    announce(p)
    s = dataclasses.replace(s, batch_size=p.chunk)
    triggers = M.trigger_search(params, cfg, tokens, mask, k=s.k, batch_size=s.batch_size,
                                mesh=None if s.mesh is None else make_mesh(s.mesh),
                                progress=progress.named("trigger search"))
    triggers = {name: np.asarray(a) for name, a in triggers.items()}
    ids_LFk = np.asarray(M.value_top_tokens(params, cfg, 10, s.final_norm)[0])
    ids_other = np.asarray(M.value_top_tokens(params, cfg, 1, not s.final_norm)[0])
    agree = M.agreement(ids_LFk[..., 0], triggers["index"], targets, key_agree, s.n_shuffles)
    next_LF = agree.pop("next_token_LF")
    agree["uniform"] = 1.0 / cfg.vocab_size
    comp = M.composition(params, cfg, tokens, mask, s.final_norm, s.threshold, s.batch_size, key=key_zero,
                         progress=progress.named("composition"))
    progress.write("token removal…")
    removal = M.removal_effect(params, cfg, tokens, _sample_triggers(triggers, s.removal_keys, rng), min(5, s.k),
                               data.get("protect", 0))
    top1_LF = triggers["coef"][..., 0]
    fired_LF = np.isfinite(top1_LF)
    memories = {
        "final_norm": s.final_norm, "n_tokens": int(np.asarray(mask).sum()) if mask is not None else int(tokens.size),
        "k": s.k, "threshold": s.threshold, "agreement": agree, "composition": comp, "removal": removal,
        "top_trigger_coef_mean": (np.where(fired_LF, top1_LF, 0).sum(1) / np.maximum(fired_LF.sum(1), 1)).tolist(),
        "final_norm_changes_value_top1": (ids_LFk[..., 0] != ids_other[..., 0]).mean(1).tolist()}
    dom = P.dominance_blocks(params, cfg, tokens, mask, s.top_n, s.batch_size,
                             progress=progress.named("sub-update dominance"))
    dom_LF = dom["fraction"]
    top1_L = dom_LF.argmax(1)
    clusters = [P.cluster_values(params, cfg, layer, s.clusters, jax.random.fold_in(key_cluster, layer), s.final_norm)
                for layer in progress.chunks(range(cfg.n_layers), "value clusters", "layers")]
    promotion = {
        "top_n": s.top_n, "uniform": s.top_n / cfg.width,
        "dominant_values": [np.argsort(-d)[:20].tolist() for d in dom_LF],
        "dominant_fraction": [np.sort(d)[::-1][:20].tolist() for d in dom_LF],
        "values_ever_in_top_n": (dom_LF > 0).mean(1).tolist(),
        # per block of token rows: positions, and those where each layer's most dominant value is in the top-n
        "blocks": {"n": dom["n"].tolist(),
                   "top1": dom["blocks"][:, np.arange(cfg.n_layers), top1_L].tolist()},
        "clusters": [[{k: v for k, v in c.items() if k != "members"} | {"members": c["members"][:50]} for c in layer]
                     for layer in clusters]}
    examples = key_examples(model.tokenizer, data, triggers, ids_LFk, next_LF, s.sample_keys, rng)
    examples["dominant"] = [[{"value": int(f), "fraction": float(d[f]),
                              "promotes": _words(model.tokenizer, ids_LFk[l, f, :6])}
                             for f in np.argsort(-d)[:5]] for l, d in enumerate(dom_LF)]
    examples["clusters"] = [[{"size": c["size"],
                              "centroid_promotes": _words(model.tokenizer, c["centroid_top_tokens"][:6]),
                              "member_top1": _words(model.tokenizer, c["member_top1"][:4]),
                              "member_top1_counts": c["member_top1_counts"][:4]} for c in layer if c["size"]]
                            for layer in clusters]
    return {"model": {"name": model.name, "n_layers": cfg.n_layers, "width": cfg.width, "vocab_size": cfg.vocab_size},
            "settings": dataclasses.asdict(s), "memories": memories, "promotion": promotion, "examples": examples}


def _words(tok, ids) -> list[str]:
    return [tok.decode([int(i)]) for i in ids]


def key_examples(tok, data, triggers, ids_LFk, next_LF, n_keys: int, rng, shown: int = 5, width: int = 24) -> dict:
    """For ``n_keys`` random fired keys per layer: the value's top tokens, whether it agrees with the top
    trigger's next token, and the top triggers as (coefficient, prefix text, next token)."""
    tokens, targets = np.asarray(data["tokens"]), np.asarray(data["targets"])
    T = tokens.shape[1]
    layers = []
    for layer in range(ids_LFk.shape[0]):
        alive = np.flatnonzero(triggers["index"][layer, :, 0] >= 0)
        keys = []
        for f in np.sort(rng.choice(alive, min(n_keys, len(alive)), replace=False)) if len(alive) else []:
            rows = []
            for j in range(min(shown, triggers["index"].shape[2])):
                n = int(triggers["index"][layer, f, j])
                if n < 0:
                    break
                row, t = divmod(n, T)
                prefix = tok.decode(tokens[row, max(0, t + 1 - width): t + 1])
                rows.append({"coef": float(triggers["coef"][layer, f, j]),
                             "prefix": ("…" if t + 1 > width else "") + prefix,
                             "next": tok.decode([int(targets[row, t])])})
            keys.append({"key": int(f), "value_top": _words(tok, ids_LFk[layer, f, :8]),
                         "agrees": bool(ids_LFk[layer, f, 0] == next_LF[layer, f]), "triggers": rows})
        layers.append(keys)
    return {"keys": layers}
