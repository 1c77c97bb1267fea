"""Knowledge neurons (Dai et al. 2022) and causal tracing (Meng et al. 2022) on any model and any fact set.

``run(model, records, settings) -> dict``: ``model`` from ``ffnkv.io.load.load_model`` (a facts run, a Hugging
Face directory, a GGUF file, ``smollm2``), ``records`` CounterFact-format facts (``studies.facts``).

* Attribution: integrated gradients of p(answer) over the FFN coefficients at the prediction position of every
  prompt of each fact (``analysis.integrated_gradients``, Dai et al. eq. 3–5), knowledge neurons by the coarse
  threshold and the refinement across a fact's prompts (§3.2), relation sharing (§5.1), and the relative
  change of p(answer) when a fact's neurons are scaled ×0 / ×2 (§4.1) on its own prompts, on unrelated facts'
  prompts and — the chance baseline — when as many random neurons of the same layers are scaled on its own
  prompts. The layer distribution is reported beside two baselines from the same model: each layer's share
  of the attribution mass and of the neurons.
* Value projection: the rank of the answer in each knowledge neuron's value read through the logit lens
  (Geva et al. 2022, §3) against random neurons of the same layers.
* Tracing: one prompt per fact, subject embeddings corrupted, states restored per (token, layer) with the
  paper's window for MLP/attention and again with single-layer restores; averages per token category with
  95% CIs, and the early (last subject token) and late (last token) sites.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from analysis import integrated_gradients as IG
from analysis import knowledge_neurons as KN
from analysis import neuron_scaling as NS
from analysis import tracing as TR
from analysis.ablation import random_like
from analysis.memories import token_rank
from analysis.plan import announce_once
from ffnkv.errors import FfnkvError
from ffnkv.progress import SILENT, Progress, map_chunks
from ffnkv.prompts import FIELDS, Prompts
from studies import facts as FS

WHAT = ("attribution", "tracing", "all")


@dataclasses.dataclass(frozen=True)
class KnowledgeSettings:
    """``what``: attribution, tracing or all. Facts: ``n_facts`` (seeded sample, relations in turn), ``known_only``
    keeps facts the model answers correctly. Attribution: ``steps``/``rule``/``path`` of the integral,
    ``threshold`` (coarse, × max), ``share`` (refinement), ``paraphrases`` (use them as extra prompts),
    ``generic_relations`` (> 0: neurons coarse for facts of that many relations are set aside),
    ``all_positions`` (scale the neurons at every position), ``unrelated`` prompts per fact. Tracing: ``samples``,
    ``noise_factor``, ``window`` (the paper's 10), ``single_layer`` (also restore MLP/attention one layer at a
    time), ``whole_subject`` (also restore every subject token at once), ``kinds``, ``layer_stride``."""

    what: str = "all"
    n_facts: int = 120
    seed: int = 0
    known_only: bool = False
    steps: int = 20
    rule: str = "midpoint"
    path: str = "layer"
    threshold: float = 0.2
    share: float = 0.7
    paraphrases: bool = True
    generic_relations: int = 0
    all_positions: bool = False
    unrelated: int = 10
    batch_size: int | None = None
    value_random: int = 20
    samples: int = 10
    noise_factor: float = 3.0
    window: int = 10
    single_layer: bool = True
    whole_subject: bool = True
    kinds: tuple = TR.KINDS
    layer_stride: int = 1
    cell_batch: int | None = None
    examples: int = 3
    mesh: tuple | None = None  # (data, model) device counts of the sweeps' mesh; None: one device
    memory_gb: float | None = None  # the sweeps' memory budget (analysis.plan); None: half the available memory

    def __post_init__(self):
        if self.what not in WHAT:
            raise FfnkvError(f"what={self.what!r} is not a knowledge analysis; use one of {', '.join(WHAT)}.")
        for name in ("steps", "samples", "window", "layer_stride", "batch_size", "cell_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise FfnkvError(f"{name} must be a positive integer; got {getattr(self, name)}.")


def pretrained_settings(**changes) -> KnowledgeSettings:
    """The settings of ``ffnkv pretrained smollm2``: what a CPU affords on a 100M-parameter decoder and the
    shipped well-known facts — known facts only, one joint IG path, neurons scaled at every position, neurons
    coarse for facts of 3 relations set aside, every 3rd layer traced with 3 noise samples, resid and MLP
    restores, 2 example heatmaps; ``changes`` replace any of them."""
    return dataclasses.replace(KnowledgeSettings(
        n_facts=12, known_only=True, steps=30, path="joint", generic_relations=3, all_positions=True, samples=3,
        layer_stride=3, kinds=("resid", "mlp"), examples=2), **changes)


def _mesh(s):
    from ffnkv.sharding import make_mesh

    return None if s.mesh is None else make_mesh(s.mesh)


CHUNKS = 16  # a sweep is dispatched in about this many equal chunks (one program; the bar advances per chunk)


def rows_of(enc, rows) -> Prompts:
    """The prompts at ``rows`` with the padding of the whole set kept, so every chunk has one shape."""
    return Prompts(**{f: np.asarray(enc[f])[rows] for f in FIELDS})


def chunk_size(n: int, in_flight: int, mesh) -> int:
    """Rows per chunk: about n / CHUNKS, at least ``in_flight`` per "data" device of ``mesh``."""
    d = 1 if mesh is None else mesh.shape["data"]
    return max(-(-n // CHUNKS), (in_flight or 1) * d)


def run(model, records, settings: KnowledgeSettings = KnowledgeSettings(), progress: Progress | None = None) -> dict:
    """Screening, then ``attribution`` and/or ``tracing`` (module docstring) on ``records``; JSON-able.
    ``progress``: where the sweeps report (default: a bar when stderr is a terminal)."""
    progress = Progress() if progress is None else progress
    cfg, params, tok = model.cfg, jax.tree.map(np.asarray, model.params), model.tokenizer
    if not cfg.causal:
        raise FfnkvError(f"{model.name!r} is not a causal LM; knowledge neurons and tracing need "
                         "next-token prediction.")
    known_N = FS.known_mask(model, records)
    chosen = FS.select(records, known_N, settings.n_facts, settings.seed, settings.known_only)
    facts = [records[i] for i in chosen]
    out = {"model": {"name": model.name, "n_layers": cfg.n_layers, "width": cfg.width, "vocab_size": cfg.vocab_size},
           "screening": {"n_records": len(records), "n_known": int(known_N.sum()), "chosen": chosen.tolist()},
           "settings": dataclasses.asdict(settings),
           "selection": FS.selection("knowledge", {"chosen": settings.n_facts}, {"chosen": facts},
                                     [r for r, k in zip(records, known_N) if k], len(records))}
    if settings.what in ("attribution", "all"):
        out["attribution"] = attribution(params, cfg, tok, facts, settings, progress)
    if settings.what in ("tracing", "all"):
        out["tracing"] = tracing(params, cfg, tok, facts, known_N[chosen], settings, progress)
    return out


# ---------------------------------------------------------------- attribution

def layer_baselines(attr_NLF, has_ffn_L) -> dict:
    """Where knowledge neurons would sit by chance: each layer's share of the positive attribution mass (mean
    over prompts) and of the neurons."""
    pos_NLF = np.maximum(attr_NLF, 0)
    mass_NL = pos_NLF.sum(-1) / np.maximum(pos_NLF.sum((1, 2)), 1e-30)[:, None]
    count_L = np.asarray(has_ffn_L, float) * attr_NLF.shape[2]
    return {"attribution_mass": mass_NL.mean(0).tolist(), "neuron_count": (count_L / count_L.sum()).tolist()}


def _random_neurons(neurons, cfg, rng) -> list:
    mask_LF = NS.neuron_mask([neurons], cfg)[0]
    layers, units = np.nonzero(random_like(mask_LF, 1, rng)[0])
    return [[int(a), int(b)] for a, b in zip(layers, units)]


def integrated_gradients(params, cfg, enc, s: KnowledgeSettings, progress=SILENT) -> dict:
    """``analysis.integrated_gradients.integrated_gradients`` of every prompt, dispatched in equal chunks of prompts."""
    mesh, on_plan = _mesh(s), announce_once()

    def chunk(rows):
        ig = IG.integrated_gradients(params, cfg, rows_of(enc, rows), s.steps, s.rule, s.batch_size, path=s.path,
                                    mesh=mesh, memory_gb=s.memory_gb, on_plan=on_plan)
        return {k: ig[k] for k in ("attr", "prob", "prob_zero")}

    ig = map_chunks(chunk, len(enc), chunk_size(len(enc), s.batch_size, mesh), progress, "integrated gradients",
                    "prompts", multiple=1 if mesh is None else mesh.shape["data"])
    attr = ig["attr"]
    per_path = (attr, cfg.has_ffn_L()) if s.path == "layer" else (attr.reshape(len(attr), 1, -1), [True])
    return ig | {"steps": s.steps, "rule": s.rule, "path": s.path,
                 "completeness": IG.completeness(per_path[0], ig["prob"], ig["prob_zero"], per_path[1])}


def attribution(params, cfg, tok, facts, s: KnowledgeSettings, progress=SILENT) -> dict:
    """Knowledge neurons of ``facts`` with their effects and chance baselines (module docstring)."""
    enc, fact_N = FS.all_prompts(tok, facts, s.paraphrases)
    start = time.perf_counter()
    ig = integrated_gradients(params, cfg, enc, s, progress)
    seconds = time.perf_counter() - start
    progress.write(f"knowledge neurons: suppression/amplification of {len(facts)} facts…")
    relation_N = np.array([str(facts[k].relation_id) for k in fact_N])
    generic = (KN.generic_neurons(ig["attr"], relation_N, s.threshold, s.generic_relations)
               if s.generic_relations else None)
    kn = KN.knowledge_neurons(ig["attr"], fact_N, s.threshold, s.share, exclude_LF=generic)
    neurons = [f["neurons"] for f in kn]
    relation_K = np.array([str(f.relation_id) for f in facts])
    rng = np.random.default_rng([s.seed, 0x0C7])
    own = [np.flatnonzero(fact_N == k) for k in range(len(facts))]
    unrelated = []
    for k in range(len(facts)):
        pool = np.flatnonzero(relation_K[fact_N] != relation_K[k])
        pool = pool if pool.size else np.flatnonzero(fact_N != k)
        unrelated.append(rng.choice(pool, min(s.unrelated, pool.size), replace=False))
    effects = NS.suppression_amplification(params, cfg, enc, neurons, own, unrelated, ig["prob"],
                                          all_positions=s.all_positions)
    randoms = [_random_neurons(ns, cfg, rng) for ns in neurons]
    chance = NS.suppression_amplification(params, cfg, enc, randoms, own, own, ig["prob"],
                                          all_positions=s.all_positions)
    for stat in ("mean", "median"):
        effects[stat] |= {k.replace("_own", "_random"): v for k, v in chance[stat].items() if k.endswith("_own")}
    for row, ctl in zip(effects["per_fact"], chance["per_fact"]):
        row |= {k.replace("_own", "_random"): v for k, v in ctl.items() if k.endswith("_own")}
    effects["by_relation"] = {}
    for rel in np.unique(relation_K):
        rows = [effects["per_fact"][k] for k in np.flatnonzero(relation_K == rel) if neurons[k]]
        effects["by_relation"][str(rel)] = {key: float(np.mean([r[key] for r in rows])) if rows else None
                                            for key in effects["per_fact"][0]}
    correct_N = FS.top1(params, cfg, enc) == enc.target
    layer_counts = np.bincount([layer for ns in neurons for layer, _ in ns], minlength=cfg.n_layers)
    coarse_counts = KN.coarse_neurons(ig["attr"], s.threshold).sum((0, 2))
    n_neurons = np.array([len(ns) for ns in neurons])
    sharing = KN.relation_sharing(neurons, relation_K)
    summary = {
        "n_facts": len(facts), "n_prompts": len(enc), "prompt_top1_accuracy": float(correct_N.mean()),
        "paraphrases_without_subject": sum(f.subject not in p for f in facts for p in f.paraphrase_prompts),
        "mean_p_correct": float(ig["prob"].mean()), "completeness": ig["completeness"],
        "facts_with_neurons": int((n_neurons > 0).sum()), "mean_neurons_per_fact": float(n_neurons.mean()),
        "neurons_per_fact_hist": np.bincount(n_neurons).tolist(), "layer_counts": layer_counts.tolist(),
        "coarse_layer_counts": coarse_counts.tolist(), "layer_baselines": layer_baselines(ig["attr"], cfg.has_ffn_L()),
        "effects_mean": effects["mean"], "effects_median": effects["median"],
        "intra_relation_overlap": sharing["intra_relation_overlap"],
        "inter_relation_overlap": sharing["inter_relation_overlap"],
        "generic_neurons": [] if generic is None else np.argwhere(generic).tolist(),
        "ig_seconds": seconds, "ig_seconds_per_prompt": seconds / len(enc)}
    projection = value_projection(params, cfg, facts, neurons, enc.target[[o[0] for o in own]], s.value_random, rng)
    per_fact = [{"case_id": int(f.case_id), "subject": f.subject, "relation": f.relation_id, "prompt": f.prompt,
                 "answer": f.target_true, "neurons": e["neurons"], "random_neurons": randoms[k], "share": e["share"],
                 "threshold": e["threshold"], "n_coarse_mean": e["n_coarse_mean"],
                 "p_correct": float(ig["prob"][own[k]].mean()), "effects": effects["per_fact"][k]}
                for k, (f, e) in enumerate(zip(facts, kn))]
    first = own[0][0]
    return {"summary": summary, "relation_sharing": sharing, "value_projection": projection,
            "effects": {k: effects[k] for k in ("factors", "mean", "median", "n_facts", "by_relation")},
            "facts": per_fact,
            "example": {"attr_LF": ig["attr"][first].tolist(), "neurons": neurons[0],
                        "title": f"{facts[0].prompt.replace('{}', facts[0].subject)} → {facts[0].target_true}"}}


def value_projection(params, cfg, facts, neurons, target_K, n_random: int, rng) -> dict:
    """Rank of each fact's answer token in its knowledge neurons' values (logit lens) and in ``n_random`` random
    values of the same layers: do the neurons that matter write the answer directly?"""
    rows, gold, chance = [], [], []
    for k, ns in enumerate(neurons):
        for layer, unit in ns:
            rank = int(token_rank(params, cfg, layer, [unit], int(target_K[k]))[0])
            chance += np.asarray(token_rank(params, cfg, layer, rng.integers(0, cfg.width, n_random),
                                            int(target_K[k]))).tolist()
            gold.append(rank)
            rows.append({"fact": k, "layer": layer, "neuron": unit, "answer_rank": rank})
    median = lambda x: float(np.median(x)) if x else None
    return {"neurons": rows, "answer_rank_median": median(gold), "random_answer_rank_median": median(chance),
            "random_answer_ranks": chance, "vocab_size": cfg.vocab_size}


# ---------------------------------------------------------------- tracing

def sites(average: dict, kind: str, layers) -> dict:
    """The early site (last subject token) and the late site (last token) of one restored kind: the peak
    indirect effect, its CI and the model layer it is at (``layers``: the traced layers, e.g. every second)."""
    out = {}
    for name, category in (("early", "last_subject"), ("late", "last")):
        row = average.get(kind, {}).get(category)
        if row:
            at = int(np.argmax(row["mean"]))
            out[name] = {"category": category, "peak": row["mean"][at], "ci": row["ci"][at], "layer": int(layers[at])}
    return out


def fact_keys(seed: int, n: int):
    """Fact k's noise key ``fold_in(key(seed), k)`` (``analysis.tracing``'s default), for any chunk of facts."""
    keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.key(seed), k))(np.arange(n))
    return np.asarray(jax.random.key_data(keys))


def causal_trace(params, cfg, enc, noise, window, kinds, layers, s: KnowledgeSettings, progress=SILENT) -> dict:
    """``analysis.tracing.causal_trace`` of every prompt, dispatched in equal chunks of facts (each fact keeps
    the noise of the unchunked trace); the bar counts grid cells."""
    keys = fact_keys(s.seed, len(enc))
    mesh, on_plan = _mesh(s), announce_once()

    def chunk(rows):
        t = TR.causal_trace(params, cfg, rows_of(enc, rows), noise, s.samples, window, kinds, seed=s.seed,
                            layers=layers, mesh=mesh, cell_batch=s.cell_batch, memory_gb=s.memory_gb,
                            on_plan=on_plan, keys=jax.random.wrap_key_data(keys[rows]))
        return {k: t[k] for k in ("p_clean", "p_corrupt", "restored")}

    cells = len(kinds) * np.asarray(enc["tokens"]).shape[1] * len(layers)
    what = f"tracing ({'window' if window > 1 else 'single layer'} {window})"
    out = map_chunks(chunk, len(enc), chunk_size(len(enc), 1, None), progress, what, "cells", per_row=cells)
    return out | {"kinds": list(kinds), "layers": list(layers), "noise": noise, "samples": s.samples,
                  "window": window, "seed": s.seed}


def whole_subject(params, cfg, enc, noise, facts_mask, layers, s: KnowledgeSettings, progress=SILENT) -> dict:
    """Mean ± 95% CI over facts of the indirect effect of restoring every subject token at one layer (hidden
    states or MLP outputs; ``analysis.tracing.restore_subject``), per layer."""
    keys = fact_keys(s.seed, len(enc))

    def chunk(rows):
        out = TR.restore_subject(params, cfg, rows_of(enc, rows), noise, s.samples, s.seed, layers,
                                 keys=jax.random.wrap_key_data(keys[rows]))
        return {"p_corrupt": out["p_corrupt"], **out["restored"]}

    got = map_chunks(chunk, len(enc), chunk_size(len(enc), 1, None), progress, "tracing (whole subject)", "facts")
    out = {"p_corrupt": got["p_corrupt"], "restored": {k: got[k] for k in ("resid", "mlp")}}
    keep = np.ones(len(enc), bool) if facts_mask is None else np.asarray(facts_mask, bool)
    rows = {}
    for kind, p_NL in out["restored"].items():
        mean, ci, n = TR.mean_ci((p_NL - out["p_corrupt"][:, None])[keep])
        rows[kind] = {"mean": mean.tolist(), "ci": ci.tolist(), "n": n}
    return rows


def tracing(params, cfg, tok, facts, known_K, s: KnowledgeSettings, progress=SILENT) -> dict:
    """Causal traces of each fact's main prompt with the paper's window and with single-layer restores. Every
    per-layer list has one entry per traced layer; ``layers`` names their model layers (``layer_stride``)."""
    enc = FS.main_prompts(tok, facts)
    layers = tuple(range(0, cfg.n_layers, s.layer_stride))
    noise = TR.embedding_noise(params, s.noise_factor)
    window = min(s.window, cfg.n_layers)
    start = time.perf_counter()
    trace = causal_trace(params, cfg, enc, noise, window, s.kinds, layers, s, progress)
    averaged = known_K if known_K.any() else None  # Meng et al. average over known facts; else over all
    restores = {"window": TR.average_by_category(trace, enc, averaged, per_fact=True)}
    single_kinds = tuple(k for k in ("mlp", "attn") if k in s.kinds)
    if s.single_layer and single_kinds and window > 1:
        single = causal_trace(params, cfg, enc, noise, 1, single_kinds, layers, s, progress)
        restores["single"] = TR.average_by_category(single, enc, averaged)
    span = whole_subject(params, cfg, enc, noise, averaged, layers, s, progress) if s.whole_subject else None
    seconds = time.perf_counter() - start
    known = restores["window"]
    site_table = {kind if kind == "resid" else f"{kind} ({how})": sites(avg, kind, layers)
                  for how, avg in restores.items()
                  for kind in ("resid", "mlp", "attn") if kind in avg and (how == "window" or kind != "resid")}
    for kind, row in (span or {}).items():
        site_table[f"{kind} (whole subject)"] = sites({kind: {"last_subject": row}}, kind, layers)
    examples = []
    for n in np.flatnonzero(known_K if averaged is not None else np.ones(len(facts), bool))[: s.examples]:
        last = int(enc.predict_pos[n]) + 1
        examples.append({"restored": trace["restored"][n, :, :last].tolist(),
                         "labels": [tok.token_str(int(t)) for t in enc.tokens[n, :last]],
                         "subject_span": [int(enc.subject_start[n]), int(enc.subject_end[n])],
                         "p_corrupt": float(trace["p_corrupt"][n]),
                         "title": f"{facts[n].prompt.replace('{}', facts[n].subject)} → {facts[n].target_true} "
                                  f"(p clean {trace['p_clean'][n]:.3f}, corrupted {trace['p_corrupt'][n]:.3f})"})
    per_fact = [{"case_id": int(f.case_id), "prompt": f.prompt.replace("{}", f.subject), "answer": f.target_true,
                 "relation": f.relation_id, "known": bool(known_K[k]), "p_clean": float(trace["p_clean"][k]),
                 "p_corrupt": float(trace["p_corrupt"][k])} for k, f in enumerate(facts)]
    return {"config": {"noise": noise, "noise_factor": s.noise_factor, "samples": s.samples, "window": window,
                       "layers": list(layers), "seed": s.seed, "kinds": list(s.kinds)},
            "layers": list(layers), "seconds": seconds, "averaged_over": "all" if averaged is None else "known",
            "known_facts": known, "single_layer": restores.get("single"), "whole_subject": span,
            "all_facts": TR.average_by_category(trace, enc), "sites": site_table, "facts": per_fact,
            "examples": examples}


def summary(result: dict) -> dict:
    """The few numbers a command prints: facts, knowledge-neuron layers vs baselines, effects, tracing sites."""
    out = {"facts": result["screening"] | {"chosen": len(result["screening"]["chosen"])}}
    if "attribution" in result:
        s = result["attribution"]["summary"]
        out["attribution"] = {k: s[k] for k in ("n_prompts", "mean_neurons_per_fact", "layer_counts", "layer_baselines",
                                                "effects_mean")} | {"completeness": s["completeness"]["relative_error"]}
    if "tracing" in result:
        t = result["tracing"]
        out["tracing"] = {"n_known": t["known_facts"]["n_facts"], "total_effect": t["known_facts"]["total_effect"],
                          "sites": t["sites"], "seconds": t["seconds"]}
    return out
