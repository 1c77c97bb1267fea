"""The sections of the reproduce report: each reads its stage's outputs and returns (markdown, claims)."""
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


def _run(run: Path):
    """A run dir's ModelConfig and metrics records."""
    from ffnkv.io.run import Run, load_metrics

    return Run(run).model_cfg, load_metrics(run)


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _stop_cells(row: dict, ops: list[str]) -> list[str]:
    """Where and why a kind stopped, and its accuracy slope per op at the end (issue 20)."""
    if "end_slope_per_1000_steps" not in row:
        return ["—"] + ["—" for op in ops if op != "all"]
    return [f"{row['steps']} ({row['stopped']})"] + [f"{row['end_slope_per_1000_steps'][op]:+.3f}" for op in ops if op != "all"]


def condcomp(out: Path):
    title = "Conditional computation: which FFN kinds learn SUM, MAX and MIN"
    d = out / "condcomp"
    compare, rahman = _load(d / "compare.json"), _load(d / "analysis" / "rahman_comparison.json")
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
    claims = C.condcomp(compare)
    if rahman is not None:
        summary = (d / "analysis" / "rahman_summary.md").read_text().split("\n", 2)[2]
        text += ["### Functional specialisation (Rahman et al. 2026)", "", summary, "",
                 _fig(out, d / "analysis" / "gini_by_kind.png", "token Gini per layer, trained vs initial"), "",
                 _fig(out, d / "relu" / "analysis" / "dissociation.png", "relu: targeted vs random ablation"), ""]
        claims += C.rahman(rahman)
    return "\n".join(text), claims


def facts(out: Path):
    title = "The facts LM: memories, knowledge neurons, tracing, editing"
    run = out / "facts"
    if not (run / "metrics.jsonl").is_file():
        return _missing(title, "facts")
    cfg, recs = _run(run)
    last = [r for r in recs if "eval/train_fact_acc" in r][-1]
    text = [f"## {title}", "", f"{cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.ffn} FFN d_ff {cfg.d_ff}, "
            f"{last['step']} steps: training-fact accuracy **{last['eval/train_fact_acc']:.3f}**, held-out "
            f"paraphrase accuracy **{last['eval/paraphrase_acc']:.3f}**.", ""]
    claims = []
    body, found = memories(out, run / "analysis" / "memories", "facts LM", cfg.width)
    text.append(body)
    claims += found
    attr, trace = _load(run / "analysis/knowledge/attribution.json"), _load(run / "analysis/knowledge/tracing.json")
    k = run / "analysis" / "knowledge"
    if attr:
        s = attr["summary"]
        text += ["### Knowledge neurons (Dai et al. 2022)", "",
                 f"{s['n_facts']} facts, {s['n_prompts']} prompts; IG completeness error "
                 f"{_num(s['completeness']['relative_error'], '.2%')}; facts with neurons {s['facts_with_neurons']}, "
                 f"{_num(s['mean_neurons_per_fact'], '.1f')} per fact; per layer {s['layer_counts']}; relation overlap "
                 f"intra {_num(s['intra_relation_overlap'], '.2f')} vs inter {_num(s['inter_relation_overlap'], '.2f')}.",
                 "",
                 _fig(out, k / "knowledge_neurons_effects.png", "suppress / amplify effects"), ""]
        claims += C.dai(attr, cfg.n_layers)
    if trace:
        kf = trace["known_facts"]
        text += ["### Causal tracing (Meng et al. 2022)", "",
                 f"{kf['n_facts']} known facts; p(clean) {kf['p_clean']['mean']:.3f}, p(corrupted) "
                 f"{kf['p_corrupt']['mean']:.3f}, total effect {kf['total_effect']['mean']:.3f} ± "
                 f"{kf['total_effect']['ci']:.3f}.", "",
                 _fig(out, k / "tracing_categories.png", "indirect effect by token category and layer"), ""]
        claims.append(C.meng_tracing(trace))
    edit = _load(run / "analysis/edit/edit.json")
    if edit:
        table = (run / "analysis/edit/edit.md").read_text().split("\n", 2)[2]
        text += ["### ROME and MEMIT (Meng et al. 2022, 2023)", "", table, "",
                 _fig(out, run / "analysis/edit/edit.png", "edit scores"), "",
                 _fig(out, run / "analysis/edit/edit_lambda_sweep.png", "MEMIT S over the λ ratio r"), ""]
        claims += C.meng_edits(edit)
    return "\n".join(text), claims


def memories(out: Path, d: Path, label: str, width: int):
    mem, promo = _load(d / "memories.json"), _load(d / "promotion.json")
    if mem is None:
        return f"### Key-value memories ({label})\n\nNot run.\n", []
    a, comp = mem["agreement"], mem["composition"]
    text = [f"### Key-value memories (Geva et al. 2021, 2022), {label}", "",
            f"{mem['n_tokens']:,} tokens streamed. Per layer: value→trigger agreement {C.fmts(a['agreement'])} "
            f"(baseline {C.fmts(a['baseline'])}); active memories {C.fmts(comp['active_fraction'])} of F; zero "
            f"agreement {C.fmts(comp['zero_agreement'])}.", "",
            _fig(out, d / "agreement.png", "agreement by layer"), _fig(out, d / "refinement.png", "refinement"), ""]
    claims = C.geva_memories(mem, label)
    if promo:
        claims.append(C.geva_promotion(promo, width))
    return "\n".join(text), claims


def editability(out: Path):
    title = "Which FFN kind stores facts most editably"
    d = out / "editability"
    if not (d / "editability.md").is_file():
        return _missing(title, "editability")
    table = (d / "editability.md").read_text().split("\n", 2)[2]
    claim = C.editability(_load(d / "editability.json")["kinds"])
    return "\n".join([f"## {title}", "", table, "", _fig(out, d / "editability.png", "edit scores per kind"), ""]), [claim]


def text_lm(out: Path):
    title = "An LM on real text"
    run = out / "text"
    if not (run / "metrics.jsonl").is_file():
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


SECTIONS = (condcomp, facts, editability, text_lm, pretrained)
