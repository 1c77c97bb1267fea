"""The pipeline behind ``ffnkv memories``: run every analysis, then write the readable dumps."""
from __future__ import annotations

import jax
import numpy as np

from analysis import memories as M
from analysis import promotion as P


def analyse(params, cfg, corpus: dict, args, key):
    """(memories results, promotion results, arrays for the dumps) on ``corpus`` (tokens/targets/mask/protect)."""
    tokens, targets, mask = corpus["tokens"], corpus["targets"], corpus.get("mask")
    k_agree, k_cluster = jax.random.split(key)
    triggers = M.trigger_search(params, cfg, tokens, mask, k=args.k, batch_size=args.batch_size)
    ids_LFk, _ = M.value_top_tokens(params, cfg, 10, args.final_norm)
    ids_other, _ = M.value_top_tokens(params, cfg, 10, not args.final_norm)
    ids_LFk, ids_other = np.asarray(ids_LFk), np.asarray(ids_other)
    agree = M.agreement(ids_LFk[..., 0], triggers["index"], targets, k_agree)
    next_LF = agree.pop("next_token_LF")
    agree["uniform"] = 1.0 / cfg.vocab_size
    comp = M.composition(params, cfg, tokens, mask, args.final_norm, args.threshold, args.batch_size)
    removal = M.removal_effect(params, cfg, tokens, triggers, min(5, args.k), corpus.get("protect", 0))
    top1_LF = np.asarray(triggers["coef"])[..., 0]
    fired_LF = np.isfinite(top1_LF)
    n_tokens = int(np.asarray(mask).sum()) if mask is not None else int(np.prod(tokens.shape))
    results = {
        "final_norm": bool(args.final_norm), "n_tokens": n_tokens, "k": args.k, "threshold": args.threshold,
        "agreement": agree, "composition": comp, "removal": removal,
        "top_trigger_coef_mean": (np.where(fired_LF, top1_LF, 0).sum(1) / np.maximum(fired_LF.sum(1), 1)).tolist(),
        "final_norm_changes_value_top1": (ids_LFk[..., 0] != ids_other[..., 0]).mean(1).tolist(),
    }
    dom_LF = P.dominance(params, cfg, tokens, mask, args.top_n, args.batch_size)
    clusters = [P.cluster_values(params, cfg, layer, args.clusters, jax.random.fold_in(k_cluster, layer), args.final_norm)
                for layer in range(cfg.n_layers)]
    sample = jax.device_get(P.top_sub_updates(params, cfg, np.asarray(tokens[:2], np.int32), args.top_n))
    promotion = {
        "top_n": args.top_n,
        "dominant_values": [np.argsort(-d)[:20].tolist() for d in dom_LF],
        "dominant_fraction": [np.sort(d)[::-1][:20].tolist() for d in dom_LF],
        "values_ever_in_top_n": (dom_LF > 0).mean(1).tolist(),
        "clusters": [[{k: v for k, v in c.items() if k != "members"} | {"members": c["members"][:50]} for c in layer]
                     for layer in clusters],
    }
    extras = {"triggers": triggers, "ids_LFk": ids_LFk, "next_LF": next_LF, "sample": sample, "dom_LF": dom_LF,
              "clusters": clusters}
    return results, promotion, extras


def _prefix_text(tokenizer, tokens_NT, index: int, max_tokens: int = 24) -> tuple[str, int]:
    T = tokens_NT.shape[1]
    row, t = divmod(int(index), T)
    ids = np.asarray(tokens_NT[row, max(0, t + 1 - max_tokens): t + 1])
    return ("…" if t + 1 > max_tokens else "") + tokenizer.decode(ids), int(ids[-1])


def _names(tokenizer, ids):
    return ", ".join(repr(tokenizer.decode([int(i)])) for i in ids)


def write_dumps(out, tokenizer, corpus, results, promotion, extras, sample_keys: int, seed: int = 0) -> None:
    """``triggers.txt``: sampled keys' top trigger prefixes with their values' top tokens; ``promotion.txt``."""
    tokens = corpus["tokens"]
    index, coef = extras["triggers"]["index"], extras["triggers"]["coef"]
    ids_LFk, next_LF = extras["ids_LFk"], extras["next_LF"]
    rng = np.random.default_rng(seed)
    lines = [f"Top trigger prefixes per key (Geva et al. 2021); values projected {'through the final norm' if results['final_norm'] else 'raw (x·E)'}.",
             "Each prefix ends at the position where the key fired; → marks the next token.", ""]
    for layer in range(index.shape[0]):
        alive = np.flatnonzero(index[layer, :, 0] >= 0)
        picks = rng.choice(alive, min(sample_keys, len(alive)), replace=False) if len(alive) else []
        lines.append(f"=== layer {layer}: agreement {results['agreement']['agreement'][layer]:.3f} "
                     f"(shuffled baseline {results['agreement']['baseline'][layer]:.3f})")
        for f in sorted(picks):
            agrees = "AGREES" if ids_LFk[layer, f, 0] == next_LF[layer, f] else ""
            lines.append(f"key {layer}.{f}  value top tokens: {_names(tokenizer, ids_LFk[layer, f, :8])}  {agrees}")
            for j in range(min(5, index.shape[2])):
                if index[layer, f, j] < 0:
                    break
                text, _ = _prefix_text(tokenizer, tokens, index[layer, f, j])
                row, t = divmod(int(index[layer, f, j]), tokens.shape[1])
                nxt = corpus["targets"][row, t]
                lines.append(f"    m={coef[layer, f, j]:7.3f}  {text!r} → {tokenizer.decode([int(nxt)])!r}")
        lines.append("")
    (out / "triggers.txt").write_text("\n".join(lines))

    lines = [f"Geva et al. (2022): sub-updates m_i·‖v_i‖; top-{promotion['top_n']} per position.", ""]
    for layer, dom_F in enumerate(extras["dom_LF"]):
        lines.append(f"=== layer {layer}: {promotion['values_ever_in_top_n'][layer]:.2%} of values ever in a top-n")
        for f in np.argsort(-dom_F)[:5]:
            lines.append(f"  value {f} in top-n at {dom_F[f]:.2%} of positions; promotes {_names(tokenizer, ids_LFk[layer, f, :6])}")
        for c, cluster in enumerate(extras["clusters"][layer]):
            if cluster["size"]:
                lines.append(f"  cluster {c} ({cluster['size']} values): centroid promotes "
                             f"{_names(tokenizer, cluster['centroid_top_tokens'][:6])}; members' top-1 "
                             f"{_names(tokenizer, cluster['member_top1'][:4])} ×{cluster['member_top1_counts'][:4]}")
        lines.append("")
    sample = extras["sample"]
    lines.append("=== sample positions (row 0): token → top sub-updates per layer (value: score)")
    row = np.asarray(tokens[0])
    for t in range(min(len(row), 16)):
        parts = [f"L{layer}: " + " ".join(f"{int(sample['index'][layer, 0, t, j])}:{float(sample['score'][layer, 0, t, j]):.2f}"
                                          for j in range(3)) for layer in range(sample["index"].shape[0])]
        lines.append(f"  {tokenizer.decode([int(row[t])])!r:>14}  " + " | ".join(parts))
    (out / "promotion.txt").write_text("\n".join(lines) + "\n")
