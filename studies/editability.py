"""Which FFN kind stores facts most editably? Per FFN kind: train a facts LM, trace it, count knowledge
neurons, edit it (``studies.editing``) — one row each.

Facts LMs are ``configs/facts_lm.py`` with the study's size, world and steps: loss on every token
(``loss="all"``), so subject representations carry the facts (issue 12); widths are matched to the ReLU FFN's
parameter count; runs resume when their dir exists. Facts, prompts and the known mask come from the one seam
(``studies.facts``); tracing and knowledge neurons are ``studies.knowledge.run`` on the known facts, editing is
``studies.editing.run``. The edit layer is the editing study's rule (editability per layer on calibration
facts); causal tracing (Meng et al. 2022 §2.1, the layer of peak MLP indirect effect at the subject's last
token) is reported beside it. With
``seeds`` S > 1 each kind trains S seeds (``seed``, ``seed`` + 1, …; same facts world) in one program and every
seed is analysed; the kind's entry is seed 0's, with every seed's under ``per_seed``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ffnkv.progress import SILENT, Progress
from studies import editing, knowledge
from studies import facts as FS

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
    """The facts LM of ``configs/facts_lm.py`` with this study's changes: the FFN kind at a matched width, the
    model size, the world (entities, names, loss, seed), the steps (warmup a fifth of them at most, one eval
    and checkpoint at the end) and the seeds."""
    import dataclasses as dc

    from configs.facts_lm import get_config
    from ffnkv.config import matched_d_ff

    base = get_config()
    return base.replace(
        model=dc.replace(base.model, d_model=s.d_model, n_layers=s.n_layers, d_ff=matched_d_ff(kind, s.d_model, s.d_ff),
                         ffn=kind),
        data=dc.replace(base.data, kwargs=base.data.kwargs | {"n_entities": s.n_entities, "seed": s.seed,
                                                               "loss": s.loss, "names": s.names}),
        optim=dc.replace(base.optim, warmup_steps=min(base.optim.warmup_steps, s.steps // 5)),
        steps=s.steps, eval_every=s.steps, ckpt_every=s.steps, seed=s.seed, seeds=s.seeds, progress=progress)


def knowledge_settings(s: EditabilitySettings, what: str):
    """The knowledge study (``studies.knowledge``) on the known facts: ``tracing`` with single-layer MLP
    restores (window 1: Meng et al.'s 10 of 48 layers is ≈ 1 of 4) over ``trace_facts`` facts, or
    ``attribution`` (Dai et al.'s knowledge neurons over every prompt of a fact) over ``neuron_facts``."""
    from studies.knowledge import KnowledgeSettings

    if what == "tracing":
        return KnowledgeSettings(what="tracing", n_facts=s.trace_facts, seed=s.seed, known_only=True, samples=5,
                                 window=1, kinds=("mlp",), single_layer=False, whole_subject=False, examples=0)
    return KnowledgeSettings(what="attribution", n_facts=s.neuron_facts, seed=s.seed, known_only=True)


def peak_mlp_layer(tracing: dict) -> tuple[int, list[float]]:
    """The layer of peak average MLP indirect effect at the subject's last token over the known facts, and the
    effects by layer (a ``studies.knowledge`` tracing result)."""
    ie_L = tracing["known_facts"]["mlp"]["last_subject"]["mean"]
    return tracing["config"]["layers"][int(np.argmax(ie_L))], [float(x) for x in ie_L]


def one_kind(kind: str, run_dir, s: EditabilitySettings, progress: Progress = SILENT) -> dict:
    from train.loop import train

    trained = train(train_config(kind, s, progress.requested is not False), Path(run_dir))
    per_seed = [one_seed(kind, run_dir, s, trained, i, progress) for i in range(s.seeds)]
    return per_seed[0] | ({"per_seed": per_seed} if s.seeds > 1 else {})


def one_seed(kind: str, run_dir, s: EditabilitySettings, trained: dict, seed: int,
             progress: Progress = SILENT) -> dict:
    """The row of seed index ``seed`` of the trained run dir: the knowledge and editing studies on its facts."""
    from ffnkv.io.load import load_model

    model = load_model(run_dir, seed=seed)
    fact_acc = trained.get("eval/train_fact_acc", float("nan"))
    fact_acc = fact_acc[seed] if isinstance(fact_acc, list) else fact_acc
    progress.write(f"{kind}: tracing {s.trace_facts} known facts, knowledge neurons of {s.neuron_facts}…")
    tracing = knowledge.run(model, FS.model_facts(model), knowledge_settings(s, "tracing"), progress)["tracing"]
    peak, ie_L = peak_mlp_layer(tracing)
    attribution = knowledge.run(model, FS.model_facts(model), knowledge_settings(s, "attribution"),
                                progress)["attribution"]
    res = editing.run(model, FS.model_facts(model, training_paraphrases=False),
                      editing.EditSettings(n_edits=s.n_edits, n_unrelated=s.n_unrelated, seed=s.seed, token=s.token),
                      progress)
    row = {"ffn": kind, "d_ff": model.cfg.d_ff, "train_fact_acc": float(fact_acc),
           "peak_mlp_layer": peak, "edit_layer": res["layer"],
           "neurons_per_fact": attribution["summary"]["mean_neurons_per_fact"]}
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
