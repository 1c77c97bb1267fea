"""The atlas's measures of one trained facts LM, layer by layer (``studies.atlas``; issue 23, item 3).

``measure(model, seed, s, progress)`` edits first, then localises the edited facts, so that every per-fact
measure is on the same facts:

* **editing** at each FFN layer l: ``studies.editing.run`` with the layer given (ROME one edit at a time at l;
  MEMIT on the band of ``memit_width`` layers ending at l, ``studies.editing.memit_layers``), λ by the band
  rule, no λ sweep. The facts edited do not depend on l (the editing study's seeded split of the known facts).
  A fact's **edit success** at l is the mean of its ROME ES, PS and NS.
* **causal tracing**: the MLP indirect effect at the last subject token restored one layer at a time (window 1;
  Meng et al. 2022 §2.1), per fact: p(o | corrupted, MLP_l restored) − p(o | corrupted).
* **knowledge neurons** (Dai et al. 2022): integrated gradients over each fact's prompts (main and
  paraphrases), the refined neurons (count per layer) and each layer's share of the fact's positive attribution
  mass (**KN mass**).
* **necessity**: the drop in p(answer) when layer l's FFN is mean-ablated (``analysis.necessity``), per fact.
* **sparsity**: token Gini of |m| per layer (``analysis.sparsity``) on training packs, trained and at
  initialisation (the same config, a fresh init).
* **Geva agreement**: the share of keys whose value's top token is the next token of the key's top trigger
  against values re-paired with keys (chance), and the zero-agreement rate against its shuffled chance
  (``analysis.memories``).
"""
from __future__ import annotations

import jax
import numpy as np

from analysis import memories as M
from analysis import tracing as TR
from analysis.integrated_gradients import integrated_gradients
from analysis.knowledge_neurons import knowledge_neurons
from analysis.necessity import mean_coefficients, necessity
from analysis.sparsity import model_sparsity
from ffnkv.model import init_params
from ffnkv.progress import SILENT
from studies import editing
from studies import facts as FS


def edit_score(per_edit: dict) -> np.ndarray:
    """Each edit's edit success: the mean of its ROME ES, PS and NS ``[N]``."""
    return np.mean([np.asarray(per_edit[k], float) for k in ("ES", "PS", "NS")], 0)


def edits(model, records, layers, s, seed: int, progress=SILENT) -> dict:
    """ROME and MEMIT scores at each layer of ``layers`` (module docstring)."""
    out = {"layers": list(layers), "rome_S": [], "memit_S": [], "rome": [], "memit": [], "edit_score": [],
           "rome_per_edit": []}
    for l in layers:
        progress.write(f"  editing at layer {l}: ROME one at a time, MEMIT on its band…")
        res = editing.run(model, records, editing.EditSettings(
            n_edits=s.n_edits, n_unrelated=s.n_unrelated, seed=seed, protocols=("single", "memit"), layer=l,
            lambda_sweep=(), delta_check=0, cov_batches=s.cov_batches, clear_caches=False,
            memit_width=min(2, model.cfg.n_layers)),
            SILENT)
        out["edited"] = res["edited"]
        out["rome_S"].append(res["rome_single"]["S"])
        out["memit_S"].append(res["memit"]["S"])
        out["rome"].append({k: res["rome_single"][k] for k in ("ES", "PS", "NS", "S", "unrelated_acc")})
        out["memit"].append({k: res["memit"][k] for k in ("ES", "PS", "NS", "S", "unrelated_acc")}
                            | {"layers": res["memit_layers"]})
        out["edit_score"].append(edit_score(res["rome_single"]["per_edit"]).tolist())
        out["rome_per_edit"].append({k: np.asarray(res["rome_single"]["per_edit"][k], float).tolist()
                                     for k in ("ES", "PS", "NS")})
    return out


def tracing_effect(params, cfg, enc, samples: int, seed: int, noise_factor: float = 3.0,
                   memory_gb: float | None = None) -> dict:
    """Causal tracing's MLP indirect effect at each prompt's last subject token, one layer restored at a time
    (window 1; Meng et al. 2022 §2.1): ``tracing`` ``[L, N]`` = p(o | corrupted, MLP_l restored) − p(o |
    corrupted), with ``p_clean`` and ``p_corrupt`` ``[N]`` (lists)."""
    noise = TR.embedding_noise(params, noise_factor)
    trace = TR.causal_trace(params, cfg, enc, noise, samples=samples, window=1, kinds=("mlp",), seed=seed,
                            memory_gb=memory_gb)
    last_N = np.asarray(enc.subject_end) - 1
    restored_NL = trace["restored"][np.arange(len(last_N)), 0, last_N, :]
    tracing_LN = (restored_NL - trace["p_corrupt"][:, None]).T
    return {"tracing": tracing_LN.tolist(), "p_clean": trace["p_clean"].tolist(),
            "p_corrupt": trace["p_corrupt"].tolist()}


def localise(params, cfg, tok, facts, s, seed: int) -> dict:
    """Per fact and layer: tracing effect, KN count and mass; ``[L, N]`` lists (rows of every layer)."""
    enc = FS.main_prompts(tok, facts)
    trace = tracing_effect(params, cfg, enc, s.trace_samples, seed)
    enc_all, fact_N = FS.all_prompts(tok, facts, True)
    ig = integrated_gradients(params, cfg, enc_all, steps=s.ig_steps)
    pos_NLF = np.maximum(ig["attr"], 0)
    mass_NL = pos_NLF.sum(-1) / np.maximum(pos_NLF.sum((1, 2)), 1e-30)[:, None]
    kn = knowledge_neurons(ig["attr"], fact_N)
    count_LN = np.zeros((cfg.n_layers, len(facts)))
    for k, found in enumerate(kn):
        for layer, _ in found["neurons"]:
            count_LN[layer, k] += 1
    mass_LN = np.stack([mass_NL[fact_N == k].mean(0) for k in range(len(facts))], 1)
    return trace | {"kn_mass": mass_LN.tolist(), "kn_count": count_LN.tolist(), "enc": enc}


def structure(params, cfg, task, s, seed: int) -> dict:
    """Per layer: token Gini trained and at init, Geva agreement and zero agreement with their chance levels."""
    corpus = task.windows(s.probe_tokens)
    tokens, targets, mask = corpus["tokens"], corpus["targets"], corpus["mask"]
    init = init_params(jax.random.key(seed), cfg)
    trained, fresh = model_sparsity(params, cfg, tokens), model_sparsity(init, cfg, tokens)
    key_agree, key_zero = jax.random.split(jax.random.key(seed), 2)
    trig = M.trigger_search(params, cfg, tokens, mask, k=s.geva_k, batch_size=16)
    top1_LF = np.asarray(M.value_top_tokens(params, cfg, 1)[0])[..., 0]
    agree = M.agreement(top1_LF, np.asarray(trig["index"]), targets, key_agree, s.geva_shuffles)
    comp = M.composition(params, cfg, tokens, mask, key=key_zero, batch_size=16)
    layers = [str(l) for l in range(cfg.n_layers)]
    get = lambda rows, key: [rows[l][key] if l in rows else None for l in layers]
    return {"gini": get(trained, "token_gini_mean"), "gini_init": get(fresh, "token_gini_mean"),
            "agreement": agree["agreement"], "agreement_chance": agree["baseline"],
            "zero_agreement": comp["zero_agreement"], "zero_agreement_chance": comp["zero_agreement_shuffled"],
            "corpus": corpus}


def measure(model, seed: int, s, progress=SILENT) -> dict:
    """Every per-layer measure of the module docstring for one trained model (seed index ``seed`` of its run)."""
    cfg, tok = model.cfg, model.tokenizer
    params = jax.tree.map(np.asarray, model.params)
    records = FS.model_facts(model)
    layers = [int(l) for l in np.flatnonzero(cfg.has_ffn_L())]
    edit = edits(model, records, layers, s, s.seed + seed, progress)
    by_id = {r.case_id: r for r in records}
    facts = [by_id[i] for i in edit["edited"]]
    progress.write(f"  localising {len(facts)} edited facts: tracing, knowledge neurons, necessity, structure…")
    loc = localise(params, cfg, tok, facts, s, s.seed + seed)
    st = structure(params, cfg, model.run.task, s, s.seed + seed)
    mean_LF = mean_coefficients(params, st["corpus"]["tokens"], st["corpus"]["mask"], cfg)
    need = necessity(params, cfg, loc.pop("enc"), mean_LF)
    st.pop("corpus")
    return {"layers": layers, "edit": edit, "localise": loc | {"necessity": need["drop"].tolist()}, "structure": st}
