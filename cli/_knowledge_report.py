"""The work behind ``ffnkv knowledge``: facts -> encoded prompts -> analyses -> JSON + PNG."""
from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from analysis import attribution as attr_lib
from analysis import tracing as trace_lib
from ffnkv.data import make_task
from ffnkv.errors import FfnkvError
from ffnkv.io.run import load_config, load_params
from ffnkv.model import forward


def load_facts_run(run_dir, step=None):
    train_cfg, model_cfg = load_config(run_dir)
    if train_cfg["data"]["kind"] != "facts":
        raise FfnkvError(f"run {str(run_dir)!r} was trained on {train_cfg['data']['kind']!r}; knowledge needs a facts run.")
    task = make_task("facts", **train_cfg["data"]["kwargs"])
    return task, model_cfg, load_params(run_dir, model_cfg, step)


def select_facts(task, n: int, seed: int) -> np.ndarray:
    if n < 2:
        raise FfnkvError("--facts must be at least 2.")
    order = np.random.default_rng([seed, 0xFAC7]).permutation(len(task.facts))
    return np.sort(order[: min(n, len(task.facts))])


def encode(task, prompts, attributes) -> dict:
    enc = task.encode_prompts(prompts)
    enc["target"] = np.array([task.attribute_id(a) for a in attributes], np.int32)
    return enc


def predictions(params, cfg, enc, chunk: int = 256) -> np.ndarray:
    """Top-1 next token at each prompt's prediction position."""
    fn = jax.jit(lambda p, t, pos: jnp.argmax(forward(p, t, cfg).logits[jnp.arange(t.shape[0]), pos], -1))
    out = [fn(params, jnp.asarray(enc["tokens"][i:i + chunk]), jnp.asarray(enc["predict_pos"][i:i + chunk]))
           for i in range(0, len(enc["tokens"]), chunk)]
    return np.concatenate([np.asarray(o) for o in out])


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def attribution_report(task, cfg, params, args, out: Path) -> dict:
    from analysis.plots_attribution import plot_all

    facts_idx = select_facts(task, args.facts, args.seed)
    facts = [task.facts[i] for i in facts_idx]
    prompts, attrs, fact_N = [], [], []
    for k, fact in enumerate(facts):
        texts = task.prompts(fact, "train") + task.prompts(fact, "paraphrase")
        prompts += texts
        attrs += [fact.attribute] * len(texts)
        fact_N += [k] * len(texts)
    enc, fact_N = encode(task, prompts, attrs), np.array(fact_N)
    start = time.perf_counter()
    ig = attr_lib.integrated_gradients(params, cfg, enc, args.steps, args.rule, args.batch_size)
    ig_seconds = time.perf_counter() - start
    correct_N = predictions(params, cfg, enc) == enc["target"]
    kn = attr_lib.knowledge_neurons(ig["attr"], fact_N, args.threshold, args.share)
    neurons = [f["neurons"] for f in kn]
    relation_K = np.array([f.relation for f in facts])
    sharing = attr_lib.relation_sharing(neurons, relation_K)

    rng = np.random.default_rng([args.seed, 0x0C7])
    own = [np.flatnonzero(fact_N == k) for k in range(len(facts))]
    unrelated = []
    for k in range(len(facts)):
        pool = np.flatnonzero(relation_K[fact_N] != relation_K[k])
        pool = pool if pool.size else np.flatnonzero(fact_N != k)
        unrelated.append(rng.choice(pool, min(args.unrelated, pool.size), replace=False))
    effects = attr_lib.suppression_amplification(params, cfg, enc, neurons, own, unrelated, ig["prob"])
    effects["by_relation"] = {}
    for rel in np.unique(relation_K):
        rows = [effects["per_fact"][k] for k in np.flatnonzero(relation_K == rel) if neurons[k]]
        effects["by_relation"][str(rel)] = {key: float(np.mean([r[key] for r in rows])) if rows else None
                                            for key in effects["mean"]}

    layer_counts = np.bincount([layer for ns in neurons for layer, _ in ns], minlength=cfg.n_layers)
    n_neurons = np.array([len(ns) for ns in neurons])
    summary = {
        "n_facts": len(facts), "n_prompts": len(prompts), "prompt_top1_accuracy": float(correct_N.mean()),
        "mean_p_correct": float(ig["prob"].mean()), "completeness": ig["completeness"],
        "facts_with_neurons": int((n_neurons > 0).sum()), "mean_neurons_per_fact": float(n_neurons.mean()),
        "neurons_per_fact_hist": np.bincount(n_neurons).tolist(), "layer_counts": layer_counts.tolist(),
        "effects_mean": effects["mean"], "effects_median": effects["median"], "intra_relation_overlap": sharing["intra_relation_overlap"],
        "inter_relation_overlap": sharing["inter_relation_overlap"], "ig_seconds": ig_seconds,
        "ig_seconds_per_prompt": ig_seconds / len(prompts)}
    per_fact = []
    for k, (fact, entry) in enumerate(zip(facts, kn)):
        per_fact.append({"index": int(facts_idx[k]), "subject": fact.subject, "relation": fact.relation,
                         "attribute": fact.attribute, "neurons": entry["neurons"], "share": entry["share"],
                         "threshold": entry["threshold"],
                         "n_coarse_mean": entry["n_coarse_mean"], "p_correct": float(ig["prob"][own[k]].mean()),
                         "effects": effects["per_fact"][k]})
    result = {"config": {k: getattr(args, k) for k in ("steps", "rule", "threshold", "share", "unrelated", "seed")},
              "summary": summary, "relation_sharing": sharing,
              "effects": {k: effects[k] for k in ("factors", "mean", "median", "n_facts", "by_relation")}, "facts": per_fact}
    first = own[0][0]
    result["plots"] = plot_all(result, ig["attr"][first], f"{prompts[first]} → {facts[0].attribute}", cfg.n_layers, out)
    _write_json(out / "attribution.json", result)
    return summary


def tracing_report(task, cfg, params, args, out: Path) -> dict:
    from analysis.plots_tracing import plot_all

    facts_idx = select_facts(task, args.facts, args.seed)
    facts = [task.facts[i] for i in facts_idx]
    prompts = []
    for k, fact in enumerate(facts):
        templates = task.prompts(fact, "train")
        prompts.append(templates[k % len(templates)])
    enc = encode(task, prompts, [f.attribute for f in facts])
    start = time.perf_counter()
    noise = trace_lib.embedding_noise(params, args.noise_factor)
    window = min(args.window, cfg.n_layers)
    trace = trace_lib.causal_trace(params, cfg, enc, noise, args.samples, window, seed=args.seed,
                                   cell_batch=args.cell_batch)
    seconds = time.perf_counter() - start
    known = predictions(params, cfg, enc) == enc["target"]
    average = trace_lib.average_by_category(trace, enc, known)
    average_all = trace_lib.average_by_category(trace, enc)
    names = task.tokenizer.token_names() if hasattr(task.tokenizer, "token_names") else None
    label = (lambda t: names[t]) if names else (lambda t: task.tokenizer.decode([t]))
    examples = []
    for n in np.flatnonzero(known)[: args.examples]:
        last = int(enc["predict_pos"][n]) + 1
        examples.append({"restored": trace["restored"][n], "labels": [label(int(t)) for t in enc["tokens"][n, :last]],
                         "subject_span": (int(enc["subject_start"][n]), int(enc["subject_end"][n])),
                         "p_corrupt": float(trace["p_corrupt"][n]),
                         "title": f"{prompts[n]} → {facts[n].attribute}  (p clean {trace['p_clean'][n]:.3f}, "
                                  f"corrupted {trace['p_corrupt'][n]:.3f})"})
    per_fact = [{"index": int(facts_idx[k]), "prompt": prompts[k], "attribute": facts[k].attribute,
                 "relation": facts[k].relation, "known": bool(known[k]), "p_clean": float(trace["p_clean"][k]),
                 "p_corrupt": float(trace["p_corrupt"][k])} for k in range(len(facts))]
    result = {"config": {"noise": noise, "noise_factor": args.noise_factor, "samples": args.samples,
                         "window": window, "seed": args.seed, "kinds": trace["kinds"]},
              "seconds": seconds, "known_facts": average, "all_facts": average_all, "facts": per_fact}
    result["plots"] = plot_all(trace, average, examples, out)
    _write_json(out / "tracing.json", result)
    return {"n_facts": len(facts), "n_known": int(known.sum()), "seconds": seconds,
            "total_effect": average["total_effect"], "p_clean": average["p_clean"], "p_corrupt": average["p_corrupt"],
            "table": category_table(average, trace["kinds"])}


def category_table(average: dict, kinds) -> dict:
    """``{kind: {category: "mean±ci per layer"}}`` — the compact form printed and put in the README."""
    return {kind: {c: " ".join(f"{m:+.3f}±{e:.3f}" for m, e in zip(v["mean"], v["ci"]))
                   for c, v in average[kind].items()} for kind in kinds}
