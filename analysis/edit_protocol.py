"""The editing protocol on a facts LM: ROME one edit at a time, ROME sequentially, MEMIT in one batch.

Facts to edit and unrelated facts are drawn from those the model knows (every training template correct).
Each protocol is scored with ``analysis.edit_eval``; the unedited model is scored too, as the baseline.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from analysis.covariance import cached_second_moment
from analysis.edit_eval import score_edited, score_single_edits, summarise
from analysis.edit_requests import build_edits, context_prefixes, fact_set, known_facts
from analysis.memit import MEMIT_HPARAMS, MEMIT_LAMBDA, memit_edit
from analysis.rome import ROME_HPARAMS, regularised_inverse, rome_edit, rome_sequential


@dataclasses.dataclass(frozen=True)
class EditSettings:
    n_edits: int = 100
    n_unrelated: int = 100
    seed: int = 0
    cov_batches: int = 40
    cov_batch_size: int = 64
    rome: object = ROME_HPARAMS
    memit: object = MEMIT_HPARAMS
    memit_lambda: float = MEMIT_LAMBDA
    protocols: tuple = ("single", "sequential", "memit")
    token: str = "subject_last"


def memit_layers(layer: int, width: int) -> tuple[int, ...]:
    """The ``width`` layers ending at ``layer`` (MEMIT edits a band of layers ending at the critical one)."""
    return tuple(range(max(0, layer - width + 1), layer + 1))


def _stats(info: dict) -> dict:
    return {k: float(np.mean(np.asarray(v))) for k, v in info.items() if k in ("nll", "steps", "delta_norm", "final_gap")}


def run_protocols(run_dir, params, cfg, task, layer: int, mem_layers: tuple, s: EditSettings = EditSettings()) -> dict:
    """Scores (means over edits, S) of every protocol in ``s.protocols`` plus the unedited baseline."""
    edit, unrelated, n_known = known_facts(params, cfg, task, s.seed, s.n_edits, s.n_unrelated)
    others = fact_set(task, unrelated)
    layers = tuple(sorted(set((layer,) + tuple(mem_layers))))
    C_LFF = cached_second_moment(run_dir, params, cfg, layers, task, seed=s.seed + 1000,
                                 n_batches=s.cov_batches, batch_size=s.cov_batch_size)
    C = {l: C_LFF[i] for i, l in enumerate(layers)}
    out = {"layer": layer, "token": s.token, "memit_layers": list(mem_layers), "n_known_facts": n_known, "n_facts": len(task.facts),
           "n_edits": len(edit), "edited": [f._asdict() for f in edit]}
    reqs, probes = build_edits(task, edit, context_prefixes(params, cfg, s.seed, s.rome.prefixes), s.token)
    out["unedited"] = summarise(score_edited(params, cfg, probes, others))
    if "single" in s.protocols:
        t = time.time()
        Cinv = regularised_inverse(C[layer], s.rome.ridge)
        edit_fn = lambda p, r: rome_edit(p, cfg, layer, Cinv, r, s.rome)  # noqa: E731
        scores, info = score_single_edits(params, cfg, edit_fn, reqs, probes, others)
        out["rome_single"] = summarise(scores) | _stats(info) | {"seconds": time.time() - t}
    if "sequential" in s.protocols:
        t = time.time()
        edited, info = rome_sequential(params, cfg, layer, C[layer], reqs, s.rome)
        out["rome_sequential"] = summarise(score_edited(edited, cfg, probes, others)) | _stats(info) | {"seconds": time.time() - t}
    if "memit" in s.protocols:
        t = time.time()
        m_reqs, _ = build_edits(task, edit, context_prefixes(params, cfg, s.seed, s.memit.prefixes), s.token)
        C_mem = np.stack([C[l] for l in mem_layers])
        edited, info = memit_edit(params, cfg, tuple(mem_layers), C_mem, m_reqs, s.memit, s.memit_lambda)
        out["memit"] = summarise(score_edited(edited, cfg, probes, others)) | _stats(info) | {"seconds": time.time() - t}
    jax.clear_caches()
    return out


def _facts_enc(task, facts, all_templates: bool):
    prompts, targets, fact_ids = [], [], []
    for i, fact in enumerate(facts):
        for prompt in task.prompts(fact, "train")[: None if all_templates else 1]:
            prompts.append(prompt)
            targets.append(task.attribute_id(fact.attribute))
            fact_ids.append(i)
    enc = task.encode_prompts(prompts)
    return enc | {"target": np.asarray(targets, np.int32), "fact": np.asarray(fact_ids, np.int32)}


def peak_mlp_layer(params, cfg, task, facts, samples: int = 5, seed: int = 0, window: int = 1) -> tuple[int, list[float]]:
    """Where facts localise: the layer of peak average MLP indirect effect at the subject's last token
    (causal tracing, Meng et al. 2022 §2.1). Meng et al.'s window of 10 layers would cover the whole of a
    small model and make every layer tie, so single layers are restored by default."""
    from analysis.tracing import average_by_category, causal_trace

    enc = _facts_enc(task, facts, all_templates=False)
    avg = average_by_category(causal_trace(params, cfg, enc, samples=samples, kinds=("mlp",), seed=seed, window=window), enc)
    ie_L = avg["mlp"]["last_subject"]["mean"]
    return int(np.argmax(ie_L)), [float(x) for x in ie_L]


def neurons_per_fact(params, cfg, task, facts, steps: int = 20) -> float:
    """Mean number of knowledge neurons per fact (Dai et al. 2022: IG over every training template)."""
    from analysis.attribution import integrated_gradients, knowledge_neurons

    enc = _facts_enc(task, facts, all_templates=True)
    found = knowledge_neurons(integrated_gradients(params, cfg, enc, steps=steps)["attr"], enc["fact"])
    return float(np.mean([len(f["neurons"]) for f in found]))
