"""Does localisation predict editing on a pretrained model? The atlas's question (``studies.atlas_summary``;
Hase et al. 2023 found on GPT-J that it does not) asked of one real checkpoint (SmolLM2-135M, issue 23 item 4):

1. **edits**: the editing study's layer rule (``studies.editing.run``: ROME one edit at a time of its seeded
   calibration facts — ``n_facts`` known facts — at every candidate layer; the rest of that run is one edit at
   the chosen layer, the only extra cost). Per layer: ROME S and each fact's edit success (mean of its ES, PS,
   NS; ``studies.atlas_layers.edit_score``).
2. **localisation** of the same facts at every layer: causal tracing's MLP effect at the last subject token
   (window 1, ``studies.atlas_layers.tracing_effect``) and necessity (``analysis.necessity``: the drop in
   p(answer) when the layer's FFN coefficients are replaced by their mean over ``mean_batches`` batches of local
   text, the text ``studies.editing`` takes C from). Knowledge-neuron mass is left out: integrated gradients over
   30 layers × 1536 neurons costs more than the rest of the study together on 2 CPU cores.
3. the atlas's measure dict, ``studies.atlas_summary.correlations`` on it, and intervals by bootstrap over facts
   (``studies.atlas_summary.fact_intervals``); verdict ρ > 0 by the whole 95% interval.
"""
from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from analysis.necessity import mean_over_batches, necessity
from analysis.rome import ROME_HPARAMS, DeltaHParams
from analysis.stats import interval
from ffnkv.errors import FfnkvError
from ffnkv.progress import Progress
from studies import editing
from studies import facts as FS
from studies.atlas import commit
from studies.atlas_layers import edit_score, tracing_effect
from studies.atlas_summary import N_BOOT, correlations, fact_intervals


@dataclasses.dataclass(frozen=True)
class PretrainedAtlasSettings:
    """Sized for about 30 min of SmolLM2-135M on 2 CPU cores (ROME at 30 layers dominates: ~80 s per layer for 6
    facts without context prefixes at a load of 4)."""

    n_facts: int = 6  # calibration facts of the layer rule: known facts, seeded (at most a third of the known)
    seed: int = 0
    layers: tuple | None = None  # candidate layers of the layer rule (default every layer)
    trace_samples: int = 3
    noise_factor: float = 3.0
    mean_batches: int = 4  # batches of local text for the necessity means
    mean_batch_size: int = 8
    mean_window: int = 64
    n_unrelated: int = 10
    cov_text: str = editing.LICENCE_TEXTS
    cov_tokens: int = 10000
    n_boot: int = N_BOOT
    memory_gb: float | None = None
    # ROME's hyper-parameters without its context prefixes (the bare rewrite prompt only): with them each step
    # runs 21 prompts, 7.6 instead of 0.35 TFLOP per edit of SmolLM2 (the memory plan's estimate); without, an
    # edit took ~16 s on a 2-core CPU at load 4, so the prefixes would turn 30 layers × 6 facts into hours
    rome: DeltaHParams = dataclasses.replace(ROME_HPARAMS, prefixes=())


def edit_settings(s: PretrainedAtlasSettings) -> editing.EditSettings:
    """The editing study's settings: its layer rule in full, the rest as small as it goes (one edit, no MEMIT)."""
    return editing.EditSettings(n_edits=1, n_unrelated=s.n_unrelated, seed=s.seed, protocols=("single",),
                                n_calibration=s.n_facts, layer_candidates=s.layers, delta_check=0,
                                cov_text=s.cov_text, cov_tokens=s.cov_tokens, lambda_sweep=(),
                                memory_gb=s.memory_gb, rome=s.rome, clear_caches=False)


def plan(model, s: PretrainedAtlasSettings) -> str:
    L = model.cfg.n_layers
    n_layers = len(s.layers) if s.layers else L
    return (f"plan: {model.name}, {L} layers: ROME single edits of {s.n_facts} calibration facts at {n_layers} "
            f"layers ({s.n_facts * n_layers} edits), causal tracing ({s.trace_samples} noise samples, every layer "
            f"and position) and necessity ({L} ablations, means over {s.mean_batches} text batches) of the same "
            f"facts, {s.n_boot} bootstrap draws over facts")


def measure(model, facts, s: PretrainedAtlasSettings, progress: Progress) -> tuple[dict, dict]:
    """(the atlas's measure dict for ``model``'s layer rule, the editing study's result)."""
    cfg, tok = model.cfg, model.tokenizer
    progress.write("edits: the editing study's layer rule…")
    res = editing.run(model, facts, edit_settings(s), progress)
    rule = res["layer_rule"]
    layers = sorted(int(l) for l in rule["S_by_layer"])
    by_id = {r.case_id: r for r in facts}
    cal = [by_id[i] for i in rule["calibration"]]
    per = [rule["per_edit_by_layer"][str(l)] for l in layers]
    edit = {"layers": layers, "rome_S": [rule["S_by_layer"][str(l)] for l in layers],
            "edit_score": [edit_score(p).tolist() for p in per], "rome_per_edit": per}
    params = jax.tree.map(np.asarray, model.params)
    enc = FS.main_prompts(tok, cal)
    progress.write(f"localising the {len(cal)} calibration facts: causal tracing…")
    loc = tracing_effect(params, cfg, enc, s.trace_samples, s.seed, s.noise_factor, s.memory_gb)
    progress.write("necessity: mean coefficients over local text, then one ablation per layer…")
    batches = editing.text_batches(tok, s.cov_text, s.mean_batches * s.mean_batch_size * s.mean_window,
                                   min(s.mean_window, cfg.max_len), s.mean_batch_size)
    mean_LF = mean_over_batches(params, list(batches)[: s.mean_batches], cfg)
    if mean_LF is None:
        raise FfnkvError(f"no readable text matches {s.cov_text!r} for the necessity means; pass another text.")
    need = necessity(params, cfg, enc, mean_LF)
    loc |= {"necessity": need["drop"].tolist()}
    return {"layers": layers, "edit": edit, "localise": loc}, res


def curves(m: dict, key) -> dict:
    """Per layer of ``m``: tracing and necessity (mean over facts) and ROME S (harmonic mean of the facts' mean
    ES, PS, NS), each with its 95% bootstrap interval over facts (``analysis.stats.interval``)."""
    out, i = {}, 0
    for name in ("tracing", "necessity"):
        out[name] = []
        for l in m["layers"]:
            i += 1
            out[name].append(interval(np.asarray(m["localise"][name])[l], "mean", jax.random.fold_in(key, i), 1000))
    out["rome_S"] = []
    for p in m["edit"]["rome_per_edit"]:
        i += 1
        out["rome_S"].append(interval(np.stack([p[k] for k in ("ES", "PS", "NS")], 1), "harmonic_mean_of_means",
                                      jax.random.fold_in(key, i), 1000))
    return out


def run(model, facts, settings: PretrainedAtlasSettings = PretrainedAtlasSettings(),
        progress: Progress | None = None) -> dict:
    """The study of the module docstring on ``model`` and its fact records ``facts``: a JSON-able dict."""
    s = settings
    progress = Progress() if progress is None else progress
    if s.layers is not None and not all(0 <= l < model.cfg.n_layers for l in s.layers):
        raise FfnkvError(f"layers {list(s.layers)} are outside the model's {model.cfg.n_layers} layers.")
    t, cpu, load = time.time(), time.process_time(), os.getloadavg()
    progress.write(plan(model, s))
    m, res = measure(model, facts, s, progress)
    key = jax.random.key(s.seed)
    rho = correlations(m)
    out = {"kind": "atlas_pretrained", "meta": {"commit": commit()}, "model": model.name,
           "n_layers": model.cfg.n_layers, "d_ff": model.cfg.width,
           "settings": dataclasses.asdict(s), "n_facts": len(facts), "n_known_facts": res["n_known_facts"],
           "calibration": res["layer_rule"]["calibration"], "rule_layer": res["layer"],
           "covariance": res["covariance"], "measure": m,
           "rho": {k: [None if not np.isfinite(x) else float(x) for x in v] for k, v in rho.items()},
           "intervals": fact_intervals(m, jax.random.fold_in(key, 0), s.n_boot),
           "curves": curves(m, jax.random.fold_in(key, 1))}
    out["machine"] = {"seconds": time.time() - t, "cpu_seconds": time.process_time() - cpu,
                      "cpus": os.cpu_count(), "loadavg_start": list(load), "loadavg_end": list(os.getloadavg())}
    jax.clear_caches()
    return out
