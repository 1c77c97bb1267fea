"""GPT-style analyses on a causal LM (default: SmolLM2-135M-Instruct GGUF), for `ffnkv pretrained`.

Facts from ``ffnkv.data.probes.WORLD_FACTS`` are kept when the model's top-1 next token is the gold answer's
first token. On each kept fact: causal tracing (hidden states and MLP outputs), knowledge neurons by
integrated gradients with their suppression/amplification effect, and the vocabulary projection of the
knowledge neurons' values (plus a sample of random values per layer).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from analysis import pretrained_kn as kn
from analysis import pretrained_tracing as tracing
from analysis import pretrained_vocab as vocab
from ffnkv.data.probes import WORLD_FACTS
from ffnkv.errors import FfnkvError
from ffnkv.model import forward


def encode_facts(tokenizer, facts):
    rows = []
    for prompt, subject, answer in facts:
        enc = tokenizer.encode(prompt)
        start = prompt.find(subject)
        if start < 0:
            raise FfnkvError(f"subject {subject!r} is not part of the prompt {prompt!r}.")
        subject_T = np.array([a < start + len(subject) and b > start for a, b in enc.offsets])
        rows.append({"prompt": prompt, "subject": subject, "answer": answer, "relation": prompt.replace(subject, "{}"),
                     "ids": np.array(enc.ids, np.int32),
                     "subject_T": subject_T, "target": tokenizer.encode(" " + answer).ids[0]})
    return rows


def _round_robin(rows, n):
    """Up to ``n`` rows, taking one fact of each relation in turn so that no relation dominates."""
    by_relation: dict[str, list] = {}
    for r in rows:
        by_relation.setdefault(r["relation"], []).append(r)
    queues, out = list(by_relation.values()), []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def _padded(rows):
    T = max(len(r["ids"]) for r in rows)
    tokens = np.zeros((len(rows), T), np.int32)
    for i, r in enumerate(rows):
        tokens[i, : len(r["ids"])] = r["ids"]
    return (jnp.asarray(tokens), jnp.asarray([len(r["ids"]) for r in rows], jnp.int32),
            jnp.asarray([r["target"] for r in rows], jnp.int32))


def _aggregate(per_fact, key, layers):
    """Mean and 95% CI of the indirect effect per (token category, layer) over facts."""
    n_cat = len(tracing.CATEGORIES)
    table = [[[] for _ in layers] for _ in range(n_cat)]
    for f in per_fact:
        ie_KT = np.asarray(f[key])
        cats = np.array(f["categories"])
        for c in range(n_cat):
            if (cats == c).any():
                for k in range(len(layers)):
                    table[c][k].append(ie_KT[k, cats == c].mean())
    mean = [[float(np.mean(v)) if v else None for v in row] for row in table]
    ci = [[float(1.96 * np.std(v) / np.sqrt(len(v))) if len(v) > 1 else None for v in row] for row in table]
    return {"categories": list(tracing.CATEGORIES), "layers": list(map(int, layers)), "mean": mean, "ci95": ci}


def run_smollm2(params, cfg, tokenizer, args) -> dict:
    params = jax.tree.map(jnp.asarray, params)
    rows = encode_facts(tokenizer, WORLD_FACTS)
    tokens, lengths, targets = _padded(rows)
    probs = np.asarray(jax.jit(kn.scaled_probs, static_argnames="cfg")(
        params, cfg, tokens, lengths, targets, jnp.ones((cfg.n_layers, cfg.width))))
    logits = forward(params, tokens, cfg).logits
    top1 = np.asarray(jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0].argmax(-1))
    correct = [i for i in range(len(rows)) if top1[i] == rows[i]["target"]]
    screening = [{"prompt": r["prompt"], "answer": r["answer"], "p_gold": float(probs[i]),
                  "top1": tokenizer.decode([int(top1[i])]), "correct": i in correct} for i, r in enumerate(rows)]
    kept = _round_robin([rows[i] for i in correct], args.facts)
    if len(kept) < 2:
        raise FfnkvError("the model answers fewer than 2 probe facts correctly; nothing to localise.")

    # causal tracing
    layers = np.arange(0, cfg.n_layers, args.layer_stride)
    sigma = 3.0 * float(jnp.std(params["embed"]["tok"]))
    trace = jax.jit(tracing.trace, static_argnames=("cfg", "kind", "samples", "window", "batch_size"))
    per_fact = []
    for i, r in enumerate(kept):
        entry = {"prompt": r["prompt"], "answer": r["answer"],
                 "categories": tracing.token_categories(r["subject_T"], len(r["ids"]))}
        for kind in args.trace_kinds:
            out = trace(params, cfg, jnp.asarray(r["ids"]), jnp.asarray(r["subject_T"], jnp.float32), r["target"],
                        jnp.asarray(layers), jax.random.key(args.seed + i), kind=kind, samples=args.samples,
                        sigma=sigma, window=args.window)
            entry |= {"p_clean": float(out["p_clean"]), f"{kind}_p_corrupt": float(out["p_corrupt"]),
                      f"{kind}_indirect_KT": np.asarray(out["indirect_KT"]).tolist()}
        per_fact.append(entry)
    traced = {kind: _aggregate(per_fact, f"{kind}_indirect_KT", layers) for kind in args.trace_kinds}

    # knowledge neurons
    ig = jax.jit(kn.integrated_gradients, static_argnames=("cfg", "steps"))
    candidates, completeness = [], []
    for r in kept:
        out = ig(params, cfg, jnp.asarray(r["ids"]), r["target"], steps=args.ig_steps)
        candidates.append(kn.candidate_neurons(out["attr_LF"], args.kn_threshold))
        completeness.append(float(out["completeness_error"]))
    neurons, generic = kn.split_generic(candidates, [r["relation"] for r in kept], max_neurons=args.kn_max)
    k_tokens, k_lengths, k_targets = _padded(kept)
    scaled = jax.jit(lambda p, s: jax.lax.map(lambda x: kn.scaled_probs(p, cfg, k_tokens, k_lengths, k_targets, x),
                                              s, batch_size=2))
    base = np.asarray(kn.scaled_probs(params, cfg, k_tokens, k_lengths, k_targets, jnp.ones((cfg.n_layers, cfg.width))))
    effects = {}
    for name, factor in (("suppress", 0.0), ("amplify", 2.0)):
        p_FN = np.asarray(scaled(params, jnp.stack([kn.neuron_scale(cfg, n, factor) for n in neurons])))
        rel_FN = (p_FN - base[None]) / base[None]
        own = np.diag(rel_FN)
        others = (rel_FN.sum(1) - own) / (len(kept) - 1)
        effects[name] = {"own_mean": float(own.mean()), "unrelated_mean": float(others.mean()),
                         "own_per_fact": own.tolist()}
    kn_layers = [l for ns in neurons for l, _ in ns]

    # value -> vocabulary projection
    decode = lambda ids: [tokenizer.decode([int(t)]) for t in ids]  # noqa: E731
    rng = np.random.default_rng(args.seed)
    kn_values, gold_ranks, random_ranks = [], [], []
    for r, ns in zip(kept, neurons):
        for layer, i in ns:
            rank = int(vocab.token_rank(params, cfg, layer, [i], r["target"])[0])
            rand = rng.integers(0, cfg.width, 20)
            random_ranks.extend(np.asarray(vocab.token_rank(params, cfg, layer, rand, r["target"])).tolist())
            gold_ranks.append(rank)
            kn_values.append({"fact": r["prompt"], "answer": r["answer"], "layer": layer, "neuron": i,
                              "gold_rank": rank, "top_tokens": decode(vocab.top_tokens(params, cfg, layer, [i])[0])})
    generic_values = [{"layer": l, "neuron": i, "top_tokens": decode(vocab.top_tokens(params, cfg, l, [i])[0])}
                      for l, i in generic]
    sample_layers = sorted({0, cfg.n_layers // 3, 2 * cfg.n_layers // 3, cfg.n_layers - 1})
    samples = {}
    for layer in sample_layers:
        idx = rng.integers(0, cfg.width, args.vocab_neurons)
        samples[str(layer)] = [{"neuron": int(i), "top_tokens": decode(t)}
                               for i, t in zip(idx, np.asarray(vocab.top_tokens(params, cfg, layer, idx)))]

    return {
        "model": {"n_layers": cfg.n_layers, "d_ff": cfg.d_ff, "vocab_size": cfg.vocab_size},
        "facts": {"probed": len(rows), "correct": len(correct), "analysed": len(kept), "screening": screening},
        "tracing": {"samples": args.samples, "sigma": sigma, "window": args.window, "layers": layers.tolist(),
                    "summary": traced, "per_fact": per_fact},
        "knowledge_neurons": {"ig_steps": args.ig_steps, "threshold": args.kn_threshold,
                              "completeness_error_mean": float(np.mean(completeness)),
                              "completeness_error_max": float(np.max(completeness)),
                              "per_fact": [{"prompt": r["prompt"], "answer": r["answer"], "neurons": ns,
                                            "candidates": c} for r, ns, c in zip(kept, neurons, candidates)],
                              "generic_neurons": generic_values,
                              "layer_histogram": np.bincount(kn_layers, minlength=cfg.n_layers).tolist(),
                              "effects": effects},
        "value_projection": {"knowledge_neurons": kn_values,
                             "gold_rank_median": float(np.median(gold_ranks)) if gold_ranks else None,
                             "random_neuron_gold_rank_median": float(np.median(random_ranks)) if random_ranks else None,
                             "random_samples": samples},
    }


def plot_smollm2(result: dict, out_dir) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    summary = result["tracing"]["summary"]
    fig, axes = plt.subplots(1, len(summary) + 1, figsize=(6 * (len(summary) + 1), 4))
    for ax, (kind, table) in zip(axes, summary.items()):
        grid = np.array([[np.nan if v is None else v for v in row] for row in table["mean"]])
        im = ax.imshow(grid, aspect="auto", cmap="Purples" if kind == "hidden" else "Greens")
        ax.set_yticks(range(len(table["categories"])), table["categories"])
        ax.set_xticks(range(len(table["layers"])), table["layers"])
        ax.set(xlabel="layer", title=f"indirect effect, restoring {kind} (n={result['facts']['analysed']})")
        fig.colorbar(im, ax=ax)
    hist = result["knowledge_neurons"]["layer_histogram"]
    axes[-1].bar(range(len(hist)), hist)
    axes[-1].set(xlabel="layer", ylabel="knowledge neurons", title="where knowledge neurons sit")
    fig.tight_layout()
    path = out_dir / "smollm2_localisation.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(str(path))
    return files
