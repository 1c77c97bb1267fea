"""``ffnkv pretrained smollm2``: the knowledge study (``studies.knowledge``) on SmolLM2-135M (or ``--path``) and
the shipped well-known facts, the known ones only, with the settings a CPU affords (joint IG path, every
``--layer-stride``-th layer traced, neurons scaled at every position, generic neurons set aside). Writes the
study's files plus ``results.json`` (the summary ``ffnkv reproduce`` reads)."""
from __future__ import annotations

def settings(args):
    from studies.knowledge import KnowledgeSettings

    return KnowledgeSettings(n_facts=args.n_facts, seed=args.seed, known_only=True, steps=args.ig_steps, path="joint",
                             threshold=args.kn_threshold, generic_relations=3, all_positions=True,
                             samples=args.samples, window=args.window, layer_stride=args.layer_stride,
                             kinds=tuple(args.trace_kinds), examples=2,
                             mesh=args.mesh)


def run_smollm2(model, args) -> dict:
    """The study on ``model`` (a ``load_model`` Model: the packaged SmolLM2 or ``--path``)."""
    from cli.args import progress_of
    from studies import facts, knowledge

    return knowledge.run(model, facts.model_facts(model, args.facts), settings(args),
                         progress_of(args))


def plot_smollm2(result: dict, out_dir) -> list[str]:
    """The study's files, and the summary in ``result`` the way ``results.json`` has always held it."""
    from studies.report import knowledge as report

    files = [f for f in report.write(result, out_dir) if f.endswith(".png")]
    attr, screen = result["attribution"], result["screening"]
    eff, vp = attr["summary"]["effects_mean"], attr["value_projection"]
    result.update({
        "facts": {"probed": screen["n_records"], "correct": screen["n_known"], "analysed": len(screen["chosen"])},
        "knowledge_neurons": {"layer_histogram": attr["summary"]["layer_counts"],
                              "layer_baselines": attr["summary"]["layer_baselines"],
                              "completeness_error_mean": attr["summary"]["completeness"]["mean_pair_relative_error"],
                              "effects": {name: {"own_mean": eff[f"x{f}_own"], "unrelated_mean": eff[f"x{f}_unrelated"],
                                                 "random_mean": eff[f"x{f}_random"]}
                                          for name, f in (("suppress", 0), ("amplify", 2))},
                              "per_fact_effects": [f["effects"] for f in attr["facts"] if f["neurons"]]},
        "value_projection": {"gold_rank_median": vp["answer_rank_median"],
                             "random_neuron_gold_rank_median": vp["random_answer_rank_median"],
                             "gold_ranks": [n["answer_rank"] for n in vp["neurons"]],
                             "random_neuron_gold_ranks": vp["random_answer_ranks"]},
        "tracing_sites": result["tracing"]["sites"]})
    for key in ("attribution", "tracing"):
        result.pop(key)
    return files
