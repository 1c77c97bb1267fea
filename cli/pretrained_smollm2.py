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

from analysis import attribution
from analysis import pretrained_kn as kn
from analysis import pretrained_vocab as vocab
from analysis import tracing
from ffnkv.data.probes import WORLD_FACTS
from ffnkv.errors import FfnkvError
from ffnkv.model import forward

TRACE_KINDS = {"hidden": "resid", "mlp": "mlp", "attn": "attn"}  # CLI name -> analysis.tracing kind


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


def _encode(rows):
    """Right-padded prompts in the analyses' format: predict at the last token, subject tokens [start, end)."""
    T = max(len(r["ids"]) for r in rows)
    tokens = np.zeros((len(rows), T), np.int32)
    for i, r in enumerate(rows):
        tokens[i, : len(r["ids"])] = r["ids"]
    span = [np.flatnonzero(r["subject_T"]) for r in rows]
    return {"tokens": tokens, "predict_pos": np.array([len(r["ids"]) - 1 for r in rows], np.int32),
            "target": np.array([r["target"] for r in rows], np.int32),
            "subject_start": np.array([s[0] for s in span], np.int32),
            "subject_end": np.array([s[-1] + 1 for s in span], np.int32)}


def _trace_facts(params, cfg, rows, layers, args) -> dict:
    """Causal traces of each fact on its own unpadded prompt with noise key ``key(seed + i)``, restored
    probabilities NaN-padded to a common length so that ``tracing.average_by_category`` can pool them."""
    kinds = tuple(TRACE_KINDS[k] for k in args.trace_kinds)
    nu = tracing.embedding_noise(params)
    traces = [tracing.causal_trace(params, cfg, _encode([r]), nu, args.samples, args.window, kinds, layers=layers,
                                   keys=jax.random.key(args.seed + i)[None]) for i, r in enumerate(rows)]
    T = max(len(r["ids"]) for r in rows)
    pad = lambda x: np.pad(x, [(0, 0), (0, T - x.shape[1]), (0, 0)], constant_values=np.nan)  # noqa: E731
    return traces[0] | {"p_clean": np.concatenate([t["p_clean"] for t in traces]),
                        "p_corrupt": np.concatenate([t["p_corrupt"] for t in traces]),
                        "restored": np.stack([pad(t["restored"][0]) for t in traces])}


def run_smollm2(params, cfg, tokenizer, args) -> dict:
    params = jax.tree.map(jnp.asarray, params)
    rows = encode_facts(tokenizer, WORLD_FACTS)
    enc = _encode(rows)
    logits = forward(params, jnp.asarray(enc["tokens"]), cfg).logits
    last_NV = jnp.take_along_axis(logits, jnp.asarray(enc["predict_pos"])[:, None, None], axis=1)[:, 0]
    probs = np.asarray(jax.nn.softmax(last_NV, -1))[np.arange(len(rows)), enc["target"]]
    top1 = np.asarray(last_NV.argmax(-1))
    correct = [i for i in range(len(rows)) if top1[i] == rows[i]["target"]]
    screening = [{"prompt": r["prompt"], "answer": r["answer"], "p_gold": float(probs[i]),
                  "top1": tokenizer.decode([int(top1[i])]), "correct": i in correct} for i, r in enumerate(rows)]
    kept = _round_robin([rows[i] for i in correct], args.facts)
    if len(kept) < 2:
        raise FfnkvError("the model answers fewer than 2 probe facts correctly; nothing to localise.")
    k_enc = _encode(kept)

    # causal tracing
    layers = np.arange(0, cfg.n_layers, args.layer_stride)
    trace = _trace_facts(params, cfg, kept, tuple(layers.tolist()), args)
    per_fact = []
    for n, r in enumerate(kept):
        entry = {"prompt": r["prompt"], "answer": r["answer"], "p_clean": float(trace["p_clean"][n]),
                 "p_corrupt": float(trace["p_corrupt"][n]),
                 "categories": tracing.token_categories(k_enc["subject_start"][n], k_enc["subject_end"][n],
                                                        k_enc["predict_pos"][n])}
        for c, kind in enumerate(args.trace_kinds):
            ie_TK = trace["restored"][n, c, : len(r["ids"])] - trace["p_corrupt"][n]
            entry[f"{kind}_indirect_KT"] = ie_TK.T.tolist()
        per_fact.append(entry)
    averaged = tracing.average_by_category(trace, k_enc)
    traced = {kind: averaged[TRACE_KINDS[kind]] for kind in args.trace_kinds}

    # knowledge neurons: one joint IG path over all layers, scaling at every position
    ig = attribution.integrated_gradients(params, cfg, k_enc, args.ig_steps, "midpoint", batch_size=1, path="joint")
    candidates = [kn.candidate_neurons(a_LF, args.kn_threshold) for a_LF in ig["attr"]]
    neurons, generic = kn.split_generic(candidates, [r["relation"] for r in kept], max_neurons=args.kn_max)
    others = [np.delete(np.arange(len(kept)), k) for k in range(len(kept))]
    scaled = attribution.suppression_amplification(params, cfg, k_enc, neurons,
                                                   [[k] for k in range(len(kept))], others, ig["prob"],
                                                   all_positions=True)
    effects = {name: {"own_mean": scaled["mean"][f"x{f:g}_own"], "unrelated_mean": scaled["mean"][f"x{f:g}_unrelated"],
                      "own_per_fact": [pf[f"x{f:g}_own"] for pf in scaled["per_fact"]]}
               for name, f in (("suppress", 0.0), ("amplify", 2.0))}
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
        "tracing": {"samples": args.samples, "sigma": trace["noise"], "window": args.window, "layers": layers.tolist(),
                    "summary": traced, "per_fact": per_fact},
        "knowledge_neurons": {"ig_steps": args.ig_steps, "threshold": args.kn_threshold,
                              "completeness_error_mean": ig["completeness"]["mean_pair_relative_error"],
                              "completeness_error_max": ig["completeness"]["max_pair_relative_error"],
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
    layers = result["tracing"]["layers"]
    for ax, (kind, table) in zip(axes, summary.items()):
        grid = np.array([table[c]["mean"] if c in table else [np.nan] * len(layers) for c in tracing.CATEGORIES])
        im = ax.imshow(grid, aspect="auto", cmap="Purples" if kind == "hidden" else "Greens")
        ax.set_yticks(range(len(tracing.CATEGORIES)), [c.replace("_", " ") for c in tracing.CATEGORIES])
        ax.set_xticks(range(len(layers)), layers)
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
