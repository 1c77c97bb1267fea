"""Which FFN kind stores facts most editably? Per FFN kind: train a facts LM, trace it, count knowledge
neurons, edit it (``studies.editing``) — one row each.

Facts LMs are trained with loss on every token (``loss="all"``), so subject representations carry the facts
(issue 12); widths are matched to the ReLU FFN's parameter count; runs resume when their dir exists. The edit
layer is the editing study's rule (editability per layer on calibration facts); causal tracing (Meng et al.
2022 §2.1, the layer of peak MLP indirect effect at the subject's last token) is reported beside it. With
``seeds`` S > 1 each kind trains S seeds (``seed``, ``seed`` + 1, …; same facts world) in one program and every
seed is analysed; the kind's entry is seed 0's, with every seed's under ``per_seed``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ffnkv.progress import SILENT, Progress
from studies import editing

KINDS = ("relu", "gelu", "swiglu", "softmax")


@dataclasses.dataclass(frozen=True)
class EditabilitySettings:
    kinds: tuple = KINDS
    steps: int = 500
    d_model: int = 64
    n_layers: int = 4
    d_ff: int = 256
    n_entities: int = 64
    loss: str = "all"
    names: str = "families"  # the facts world's names (ffnkv.data.facts): "families" or "random"
    n_edits: int = 100
    n_unrelated: int = 100
    neuron_facts: int = 10
    trace_facts: int = 20
    token: str = "subject_last"
    seed: int = 0
    seeds: int = 1


def train_config(kind: str, s: EditabilitySettings, progress: bool = False):
    from ffnkv.config import ModelConfig, matched_d_ff
    from train.config import DataConfig, OptimConfig, TrainConfig

    d_ff = matched_d_ff(kind, s.d_model, s.d_ff)
    return TrainConfig(model=ModelConfig(d_model=s.d_model, n_layers=s.n_layers, n_heads=4, d_ff=d_ff, ffn=kind),
                       data=DataConfig("facts", {"n_entities": s.n_entities, "n_relations": 6, "n_attributes": 12,
                                                 "seed": s.seed, "loss": s.loss, "names": s.names}),
                       optim=OptimConfig(lr=3e-3, warmup_steps=min(100, s.steps // 5), weight_decay=0.01),
                       steps=s.steps, batch_size=64, eval_every=s.steps, ckpt_every=s.steps, keep=1,
                       log_every=50, seed=s.seed, seeds=s.seeds, progress=progress)


def _facts_enc(task, facts, all_templates: bool):
    prompts, targets, fact_ids = [], [], []
    for i, fact in enumerate(facts):
        for prompt in task.prompts(fact, "train")[: None if all_templates else 1]:
            prompts.append(prompt)
            targets.append(task.attribute_id(fact.attribute))
            fact_ids.append(i)
    enc = task.encode_prompts(prompts)
    return enc | {"target": np.asarray(targets, np.int32), "fact": np.asarray(fact_ids, np.int32)}


def peak_mlp_layer(params, cfg, task, facts, samples: int = 5, seed: int = 0, window: int = 1):
    """Causal tracing: the layer of peak average MLP indirect effect at the subject's last token and the
    effects by layer (window 1: Meng et al.'s 10 of 48 layers is ≈ 1 of 4)."""
    from analysis.tracing import average_by_category, causal_trace

    enc = _facts_enc(task, facts, all_templates=False)
    avg = average_by_category(causal_trace(params, cfg, enc, samples=samples, kinds=("mlp",), seed=seed, window=window), enc)
    ie_L = avg["mlp"]["last_subject"]["mean"]
    return int(np.argmax(ie_L)), [float(x) for x in ie_L]


def neurons_per_fact(params, cfg, task, facts, steps: int = 20) -> float:
    """Mean number of knowledge neurons per fact (Dai et al. 2022: IG over every training template)."""
    from analysis.integrated_gradients import integrated_gradients
    from analysis.knowledge_neurons import knowledge_neurons

    enc = _facts_enc(task, facts, all_templates=True)
    found = knowledge_neurons(integrated_gradients(params, cfg, enc, steps=steps)["attr"], enc["fact"])
    return float(np.mean([len(f["neurons"]) for f in found]))


def one_kind(kind: str, run_dir, s: EditabilitySettings, progress: Progress = SILENT) -> dict:
    from train.loop import train

    trained = train(train_config(kind, s, progress.requested is not False), Path(run_dir))
    per_seed = [one_seed(kind, run_dir, s, trained, i, progress) for i in range(s.seeds)]
    return per_seed[0] | ({"per_seed": per_seed} if s.seeds > 1 else {})


def one_seed(kind: str, run_dir, s: EditabilitySettings, trained: dict, seed: int,
             progress: Progress = SILENT) -> dict:
    """The row of seed index ``seed`` of the trained run dir."""
    from ffnkv.data.counterfact import world_fact_records
    from ffnkv.io.load import load_model

    model = load_model(run_dir, seed=seed)
    fact_acc = trained.get("eval/train_fact_acc", float("nan"))
    fact_acc = fact_acc[seed] if isinstance(fact_acc, list) else fact_acc
    task = model.run.task
    records = world_fact_records(task, None, s.seed)
    known = set(r.case_id for r, k in zip(records, editing.known_mask(model.params, model.cfg, model.tokenizer, records)) if k)
    traced = [task.facts[i] for i in sorted(known)][: s.trace_facts]
    progress.write(f"{kind}: tracing {len(traced)} facts, knowledge neurons of {min(len(traced), s.neuron_facts)}…")
    peak, ie_L = peak_mlp_layer(model.params, model.cfg, task, traced, seed=s.seed)
    neurons = neurons_per_fact(model.params, model.cfg, task, traced[: s.neuron_facts])
    res = editing.run(model, records, editing.EditSettings(n_edits=s.n_edits, n_unrelated=s.n_unrelated, seed=s.seed,
                                                           token=s.token), progress)
    row = {"ffn": kind, "d_ff": model.cfg.d_ff, "train_fact_acc": float(fact_acc),
           "peak_mlp_layer": peak, "edit_layer": res["layer"], "neurons_per_fact": neurons}
    for key, name in (("rome_single", "ROME"), ("memit", "MEMIT")):
        row |= {f"{name} {m}": res[key][m] for m in ("ES", "PS", "NS", "S")}
    row |= {"ROME seq S": res["rome_sequential"]["S"], "ROME seq unrelated": res["rome_sequential"]["unrelated_acc"],
            "MEMIT unrelated": res["memit"]["unrelated_acc"]}
    return {"row": row, "mlp_indirect_effect_by_layer": ie_L, "edit": res}


def run(out_dir, settings: EditabilitySettings = EditabilitySettings(), progress: Progress | None = None) -> dict:
    """Every kind of ``settings.kinds`` trained under ``out_dir/<kind>``; ``{"settings", "kinds"}``. ``progress``:
    where training and the sweeps report (default: bars when stderr is a terminal)."""
    progress = Progress() if progress is None else progress
    from ffnkv.config import FFN_KINDS
    from ffnkv.errors import FfnkvError

    bad = [k for k in settings.kinds if k not in FFN_KINDS or k == "none"]
    if bad or not settings.kinds:
        raise FfnkvError(f"kinds {','.join(settings.kinds)!r} are not allowed; use FFN kinds with keys and values: "
                         f"{', '.join(KINDS)}.")
    kinds = {}
    for kind in settings.kinds:
        progress.write(f"editability: FFN kind {kind} ({len(kinds) + 1} of {len(settings.kinds)})")
        kinds[kind] = one_kind(kind, Path(out_dir) / kind, settings, progress)
    return {"settings": dataclasses.asdict(settings), "kinds": kinds}
