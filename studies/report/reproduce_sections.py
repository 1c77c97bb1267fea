"""The sections of the reproduce report: each reads its stage's outputs and returns (markdown, claims).

A trained model's per-seed analyses sit in ``<analysis dir>/seed<i>/`` (``studies.reproduce_stages``); every
verdict is judged over all of them: its rule in ``studies.verdicts`` gets the list of per-seed results and its
interval resamples seeds, then items within each seed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from studies import verdicts as C


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _fig(out: Path, path: Path, caption: str) -> str:
    return f"![{caption}]({path.relative_to(out).as_posix()})" if path.is_file() else f"*({caption}: missing)*"


def _missing(title: str, stage: str) -> tuple[str, list]:
    return f"## {title}\n\nNot run: stage `{stage}` has not finished (see the stage table).\n", []


def _run(run: Path, seed: int = 0):
    """A run dir's ModelConfig and the metrics records of seed index ``seed``."""
    from ffnkv.io.run import Run

    r = Run(run, seed)
    return r.model_cfg, r.metrics()


def _finished(out: Path, stage: str) -> bool:
    """Whether ``stage`` finished: its ``stages/<stage>.json`` says done (a dir without stage records, laid out
    by the commands, counts as finished): an interrupted stage's partial outputs are not judged."""
    marker = out / "stages" / f"{stage}.json"
    return not (out / "stages").is_dir() or (marker.is_file() and _load(marker)["status"] == "done")


def seed_dirs(d: Path, name: str) -> list[Path]:
    """The per-seed dirs ``d/seed<i>`` that hold ``name``, in seed order; ``[d]`` for one seed's outputs laid
    out as the commands lay them out (``d/name``); ``[]`` when there are none."""
    found, i = [], 0
    while (d / f"seed{i}" / name).is_file():
        found.append(d / f"seed{i}")
        i += 1
    return found or ([d] if (d / name).is_file() else [])


def rahman_inputs(kind_dirs) -> dict:
    """``{kind: (sparsity, specialisation, ablation, hierarchy, ops)}``, each of the four a list of one result per
    seed, read from ``kind_dirs[kind]`` (the kind's analysis dir of each seed); a kind missing any file (e.g.
    ``none``: no FFN) is left out."""
    out = {}
    for kind, dirs in kind_dirs.items():
        parts = [[_load(p / f"{name}.json") for p in dirs]
                 for name in ("sparsity", "specialisation", "ablation", "hierarchy")]
        if dirs and all(all(x) for x in parts) and parts[2][0].get("ops"):
            out[kind] = (*parts, parts[2][0]["ops"])
    return out


def _rahman(seeds: list[Path]) -> list[dict]:
    """Rahman et al.'s claims over the kinds of the comparison, each kind judged on every seed's analysis outputs
    together (``verdicts.rahman_claims`` on per-seed lists; its intervals resample seeds, then items)."""
    kinds = rahman_inputs({k: [p / k for p in seeds] for k in _load(seeds[0] / "rahman_comparison.json")})
    return C.rahman({k: {"claims": C.rahman_claims(*args)} for k, args in kinds.items()})


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _stop_cells(row: dict, ops: list[str]) -> list[str]:
    """Where and why a kind stopped, and its accuracy slope per op at the end (issue 20)."""
    if "end_slope_per_1000_steps" not in row:
        return ["—"] + ["—" for op in ops if op != "all"]
    return [f"{row['steps']} ({row['stopped']})"] + [f"{row['end_slope_per_1000_steps'][op]:+.3f}"
                                                     for op in ops if op != "all"]


def condcomp(out: Path):
    title = "Conditional computation: which FFN kinds learn SUM, MAX and MIN"
    d = out / "condcomp"
    compare = _load(d / "compare.json")
    seeds = seed_dirs(d / "analysis", "rahman_comparison.json") if _finished(out, "specialise") else []
    if compare is None:
        return _missing(title, "condcomp")
    kinds = compare["kinds"]
    ops = list(next(iter(kinds.values()))["accuracy"])
    rows = [[k, r["d_ff"], f"{r['params']:,}", f"{r['final_eval_loss']:.3f}"]
            + [f"{r['accuracy'][op]:.3f}" for op in ops] + [r["steps_to_95"]["all"] or "—"]
            + _stop_cells(r, ops) for k, r in kinds.items()]
    stopping = compare.get("stopping")
    rule = ("until the eval accuracy stopped rising (`studies.condcomp.Plateau`: " + stopping["rule"] +
            f"; delta {stopping['delta']}, window {stopping['window']} evals, min_steps {stopping['min_steps']}, "
            f"cap {stopping['cap']})") if isinstance(stopping, dict) else "a fixed number of steps"
    text = [f"## {title}", "", f"Each kind trained {rule}, FFN parameters matched to relu's (`matched_d_ff`); "
            "accuracy on the held-out set; the slope is accuracy per 1000 steps over the last evals.", "",
            *_md_table(["kind", "d_ff", "params", "eval loss"] + [f"acc {op}" for op in ops] + ["steps to 95%"]
                       + ["stopped at", *[f"slope {op}" for op in ops if op != "all"]], rows),
            "", _fig(out, d / "compare.png", "eval accuracy per op vs step"), ""]
    n = next(iter(kinds.values())).get("seeds", 1)
    runs = [compare
            | {"kinds": {k: r["per_seed"][i] for k, r in kinds.items()}} for i in range(n)] if n > 1 else [compare]
    if n > 1:
        text[2] += f" {n} seeds per kind, trained as one program; the table shows seed 0, the verdicts use every seed."
    claims = C.condcomp(runs)
    if seeds:
        summary = (seeds[0] / "rahman_summary.md").read_text().split("\n", 2)[2]
        text += ["### Functional specialisation (Rahman et al. 2026)", "",
                 f"Seed 0 of {len(seeds)} (the claims below are judged on every seed):", "", summary, "",
                 _fig(out, seeds[0] / "gini_by_kind.png", "token Gini per layer, trained vs initial"), "",
                 _fig(out, next((p for p in (seeds[0] / "relu", d / "relu" / "analysis")
                                 if (p / "dissociation.png").is_file()), seeds[0] / "relu") / "dissociation.png",
                      "relu: targeted vs random ablation"), ""]
        claims += _rahman(seeds)
    return "\n".join(text), claims


def facts(out: Path):
    title = "The facts LM: memories, knowledge neurons, tracing, editing"
    run = out / "facts"
    if not (run / "metrics.jsonl").is_file() or not _finished(out, "facts"):
        return _missing(title, "facts")
    from ffnkv.io.run import Run

    n = Run(run).n_seeds
    cfg = Run(run).model_cfg
    last = [[r for r in _run(run, i)[1] if "eval/train_fact_acc" in r][-1] for i in range(n)]
    acc = ", ".join(f"{x['eval/train_fact_acc']:.3f}" for x in last)
    para = ", ".join(f"{x['eval/paraphrase_acc']:.3f}" for x in last)
    text = [f"## {title}", "", f"{cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.ffn} FFN d_ff {cfg.d_ff}, "
            f"{last[0]['step']} steps, {n} seed(s) trained as one program: training-fact accuracy **{acc}**, "
            f"held-out paraphrase accuracy **{para}** (per seed).", ""]
    claims = []
    if _finished(out, "memories"):
        body, found = memories(out, run / "analysis" / "memories", "facts LM", cfg.width)
        text.append(body)
        claims += found
    done = _finished(out, "knowledge")
    k_seeds = seed_dirs(run / "analysis" / "knowledge", "attribution.json") if done else []
    attr = [_load(p / "attribution.json") for p in k_seeds]
    t_seeds = seed_dirs(run / "analysis" / "knowledge", "tracing.json") if done else []
    if attr:
        s = attr[0]["summary"]
        text += ["### Knowledge neurons (Dai et al. 2022)", "",
                 f"Seed 0 of {len(attr)}: {s['n_facts']} facts, {s['n_prompts']} prompts; IG completeness error "
                 f"{_num(s['completeness']['relative_error'], '.2%')}; facts with neurons {s['facts_with_neurons']}, "
                 f"{_num(s['mean_neurons_per_fact'], '.1f')} per fact; per layer {s['layer_counts']}; relation overlap "
                 f"intra {_num(s['intra_relation_overlap'], '.2f')} vs inter "
                 f"{_num(s['inter_relation_overlap'], '.2f')}.",
                 "",
                 _fig(out, k_seeds[0] / "knowledge_neurons_effects.png", "suppress / amplify effects"), ""]
        claims += C.dai(attr, cfg.n_layers)
    if t_seeds:
        traces = [_load(p / "tracing.json") for p in t_seeds]
        kf = traces[0]["known_facts"]
        text += ["### Causal tracing (Meng et al. 2022)", "",
                 f"Seed 0 of {len(traces)}: {kf['n_facts']} known facts, p(clean) {kf['p_clean']['mean']:.3f}, "
                 f"p(corrupted) {kf['p_corrupt']['mean']:.3f}, total effect {kf['total_effect']['mean']:.3f} ± "
                 f"{kf['total_effect']['ci']:.3f}.", "",
                 _fig(out, t_seeds[0] / "tracing_categories.png", "indirect effect by token category and layer"), ""]
        claims.append(C.meng_tracing(traces))
    e_seeds = seed_dirs(run / "analysis" / "edit", "edit.json") if _finished(out, "edit") else []
    if e_seeds:
        table = (e_seeds[0] / "edit.md").read_text().split("\n", 2)[2]
        edits = [_load(p / "edit.json") for p in e_seeds]
        layers = ", ".join(str(e["layer"]) for e in edits)
        text += ["### ROME and MEMIT (Meng et al. 2022, 2023)", "", f"Seed 0 of {len(edits)} (edit layer per seed: "
                 f"{layers}; the verdicts use every seed):", "", table, "",
                 _fig(out, e_seeds[0] / "edit.png", "edit scores"), "",
                 _fig(out, e_seeds[0] / "edit_lambda_sweep.png", "MEMIT S over the λ ratio r"), ""]
        claims += C.meng_edits(edits)
    return "\n".join(text), claims


def memories(out: Path, d: Path, label: str, width: int):
    seeds = seed_dirs(d, "memories.json")
    if not seeds:
        return f"### Key-value memories ({label})\n\nNot run.\n", []
    mems = [_load(p / "memories.json") for p in seeds]
    promos = [_load(p / "promotion.json") for p in seeds]
    mem, d = mems[0], seeds[0]
    a, comp = mem["agreement"], mem["composition"]
    text = [f"### Key-value memories (Geva et al. 2021, 2022), {label}", "",
            f"Seed 0 of {len(mems)}: {mem['n_tokens']:,} tokens streamed. Per layer: value→trigger agreement "
            f"{C.fmts(a['agreement'])} (baseline {C.fmts(a['baseline'])}); active memories "
            f"{C.fmts(comp['active_fraction'])} of F; zero agreement {C.fmts(comp['zero_agreement'])}.", "",
            _fig(out, d / "agreement.png", "agreement by layer"), _fig(out, d / "refinement.png", "refinement"), ""]
    claims = C.geva_memories(mems, label)
    if all(promos):
        claims.append(C.geva_promotion(promos, width))
    return "\n".join(text), claims


def atlas(out: Path):
    """The atlas's own atlas.md (``studies.report.atlas``) with its figures, and which kind ROME edits best
    (``verdicts.editability``, on each analysed seed's per-edit scores at its best layer)."""
    title = "The FFN-variant atlas"
    d = out / "atlas"
    if not (d / "atlas.md").is_file() or not _finished(out, "atlas"):
        return _missing(title, "atlas")
    body = (d / "atlas.md").read_text().split("\n", 1)[1]
    figures = [_fig(out, p, p.stem.replace("_", " ")) for p in sorted(d.glob("atlas_*.png"))]
    best = lambda e: e["rome_per_edit"][int(np.argmax(e["rome_S"]))]
    edits = {name: [best(m["edit"]) for m in cell["seeds"]] for name, cell in _load(d / "atlas.json")["kinds"].items()}
    return "\n".join([f"## {title}", "", body, *figures, ""]), [C.editability(edits)]


def text_lm(out: Path):
    title = "An LM on real text"
    run = out / "text"
    if not (run / "metrics.jsonl").is_file() or not _finished(out, "text"):
        return _missing(title, "text")
    cfg, recs = _run(run)
    ev = [r for r in recs if "eval/loss" in r][-1]
    tr = [r["loss"] for r in recs if "loss" in r][-5:]
    body, claims = memories(out, run / "analysis" / "memories", "text LM", cfg.width)
    return "\n".join([f"## {title}", "", f"Vocabulary {cfg.vocab_size} (byte-level BPE), {ev['step']} steps: train "
                      f"loss {np.mean(tr):.2f}, eval loss {ev['eval/loss']:.2f}.", "", body]), claims


def pretrained(out: Path):
    title = "Real pretrained models"
    smol_dir = out / "pretrained" / "smollm2"
    mini, smol = _load(out / "pretrained/minilm/results.json"), _load(smol_dir / "attribution.json")
    if mini is None and smol is None:
        return _missing(title, "minilm/smollm2")
    text, claims = [f"## {title}", ""], []
    if mini:
        g, g0 = mini["sparsity"]["pretrained"]["gini"], mini["sparsity"]["initial"]["gini"]
        sel = mini["selectivity"]
        dd = {m: all(mini["ablation"][m]["double_dissociation"].values()) for m in ("zero", "mean")}
        text += ["### all-MiniLM-L6-v2 (Rahman et al.'s pretrained check)", "",
                 f"Gini per layer {C.fmts(g)} (random init {C.fmts(g0)}); noun specialists "
                 f"{sel['noun_specialists_per_layer']}, verb specialists {sel['verb_specialists_per_layer']}; "
                 f"double dissociation (zero / mean ablation): {dd['zero']} / {dd['mean']}.", "",
                 _fig(out, out / "pretrained/minilm/minilm_rahman.png", "MiniLM sparsity and ablation"), ""]
        claims += C.pos_specialisation(mini)
    if smol:  # the knowledge study's own files (studies.report.knowledge), as `ffnkv knowledge smollm2` writes them
        s, screen = smol["summary"], smol["screening"]
        figures = sorted(smol_dir.glob("knowledge_neurons_*.png")) + sorted(smol_dir.glob("tracing_*.png"))
        text += ["### SmolLM2-135M (GGUF): tracing, knowledge neurons, value projection", "",
                 f"{screen['n_known']}/{screen['n_records']} probe facts answered correctly; "
                 f"{len(screen['chosen'])} analysed. Knowledge neurons per layer {s['layer_counts']}; "
                 f"IG completeness error {_num(s['completeness']['mean_pair_relative_error'], '.2f')}.", "",
                 *[_fig(out, f, "SmolLM2 localisation") for f in figures], ""]
        claims += C.smollm2(smol)
    return "\n".join(text), claims


def _num(x, spec: str) -> str:
    return "—" if x is None else format(x, spec)


SECTIONS = (condcomp, facts, atlas, text_lm, pretrained)
