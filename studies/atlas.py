"""The FFN-variant atlas (issue 23): where each kind of FFN keeps facts, how sparsely, how editably, and whether
localisation finds it. ``run(settings, out, progress) -> dict`` (JSON-able; ``studies.report.atlas`` renders it).

* **Kinds**: facts LMs with each FFN kind of ``settings.kinds`` at matched FFN parameters — kind k's width is
  ``ffnkv.config.matched_d_ff(k, d_model, d_ff)``, the width whose FFN parameter count is closest to a relu FFN
  of width ``d_ff`` (relu, gelu, linear: d_ff; swiglu: three matrices, ≈ 2/3 of it; softmax: no biases,
  slightly wider) — plus ``none`` (attention only), at each depth of ``settings.depths``.
* **Placement** (``settings.placement``): a relu FFN of width ``d_ff`` in layer k only, each k, at the first
  depth; the attention-only model is ``none``. **Capacity**: attention-only models over the number of facts
  (``settings.capacity`` entities × the world's relations).
* Every config trains its seeds as one program (``TrainConfig.seeds``: seed ``settings.seed`` + i) until the
  **plateau rule** (:class:`FactsPlateau`) stops it, ``max_steps`` the cap. A seed is analysed only when its
  train-fact accuracy (top-1 over every fact × training template) is ≥ ``TARGET`` (0.95); the others are
  reported as capacity results (``below_target``), never as edit rows.
* **Per model, per layer** (``studies.atlas_layers``): fact and paraphrase accuracy, token Gini trained vs init,
  Geva agreement and zero agreement vs chance, knowledge-neuron count and mass, causal-tracing MLP effect at
  the last subject token, necessity (mean ablation), ROME and MEMIT S at that layer.
* **Does localisation predict editing?** Per model, Spearman's ρ between each localisation measure (tracing
  effect, KN mass, necessity) and edit success, across layers (per-layer means vs ROME S) and across facts
  (per layer, the facts' measure vs their edit success); intervals by ``analysis.stats.interval`` over seeds
  (and layers within a seed for the across-facts ρ).
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import jax
import numpy as np

from ffnkv.errors import FfnkvError
from ffnkv.progress import Progress

KINDS = ("relu", "gelu", "swiglu", "softmax", "linear", "none")
PROFILES = ("smoke", "quick", "full")
TARGET = 0.95  # the train-fact accuracy every analysed model reaches (issue 23)

# Everything a profile fixes; the quick one is sized for ≤ 10 min on 2 idle cores (docs/atlas.md).
PROFILE_VALUES = {
    "smoke": dict(seeds=1, depths=(2,), kinds=("relu", "none"), placement=False, capacity=(), d_model=32, d_ff=64,
                  n_entities=8, n_relations=2, max_steps=400, min_steps=100, eval_every=50, lr=1e-2, n_edits=3,
                  n_unrelated=4, cov_batches=2, trace_samples=2, ig_steps=4, probe_tokens=600, geva_k=3,
                  geva_shuffles=5),
    "quick": dict(seeds=3, depths=(4,), kinds=KINDS, placement=True, capacity=(8, 48), d_model=32, d_ff=128,
                  n_entities=24, n_relations=4, max_steps=1000, min_steps=150, eval_every=50, lr=5e-3, n_edits=8,
                  n_unrelated=16, cov_batches=4, trace_samples=4, ig_steps=6, probe_tokens=3000, geva_k=5,
                  geva_shuffles=20),
    "full": dict(seeds=5, depths=(4, 8), kinds=KINDS, placement=True, capacity=(8, 24, 48, 96), d_model=64,
                 d_ff=256, n_entities=48, n_relations=6, max_steps=3000, min_steps=400, eval_every=100, lr=3e-3,
                 n_edits=32, n_unrelated=48, cov_batches=16, trace_samples=10, ig_steps=20, probe_tokens=20000,
                 geva_k=10, geva_shuffles=100),
}


@dataclasses.dataclass(frozen=True)
class AtlasSettings:
    """``profile`` (smoke, quick, full) fixes every other field left None (``PROFILE_VALUES``); ``seed`` is the
    first seed (models, facts world and edit choices)."""

    profile: str = "quick"
    seed: int = 0
    seeds: int | None = None
    depths: tuple | None = None
    kinds: tuple | None = None
    placement: bool | None = None
    capacity: tuple | None = None
    d_model: int | None = None
    d_ff: int | None = None
    n_entities: int | None = None
    n_relations: int | None = None
    max_steps: int | None = None
    min_steps: int | None = None
    eval_every: int | None = None
    lr: float | None = None
    n_edits: int | None = None
    n_unrelated: int | None = None
    cov_batches: int | None = None
    trace_samples: int | None = None
    ig_steps: int | None = None
    probe_tokens: int | None = None
    geva_k: int | None = None
    geva_shuffles: int | None = None

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise FfnkvError(f"profile {self.profile!r} is not an atlas profile; use one of {', '.join(PROFILES)}.")
        for name, value in PROFILE_VALUES[self.profile].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise FfnkvError(f"kinds {','.join(self.kinds)!r} are not allowed; use FFN kinds from {', '.join(KINDS)}.")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 31:
            raise FfnkvError(f"seed {self.seed!r} is not allowed; use an integer in [0, 2**31).")


@dataclasses.dataclass(frozen=True)
class FactsPlateau:
    """The stopping rule: stop at an eval step ≥ ``min_steps`` when every seed's train-fact accuracy is 1, or
    when no seed's best accuracy of the last ``window`` evals beats its best before them by ``delta`` or more."""

    min_steps: int = 200
    window: int = 3
    delta: float = 0.01
    key: str = "eval/train_fact_acc"

    def __call__(self, evals: list[dict]) -> bool:
        if not evals or evals[-1]["step"] < self.min_steps:
            return False
        if np.all(np.atleast_1d(evals[-1][self.key]) >= 1.0):
            return True
        if len(evals) <= self.window:
            return False
        best = lambda rows: np.max([np.atleast_1d(r[self.key]) for r in rows], 0)
        return bool(np.all(best(evals[-self.window:]) - best(evals[:-self.window]) < self.delta))


def train_config(s: AtlasSettings, kind: str, depth: int, n_entities: int | None = None, ffn_layers=None,
                 progress: bool = False):
    """The facts LM of one atlas cell (module docstring); S seeds in one program."""
    from ffnkv.config import ModelConfig, matched_d_ff
    from train.config import DataConfig, OptimConfig, TrainConfig

    d_ff = s.d_ff if ffn_layers is not None else matched_d_ff(kind, s.d_model, s.d_ff)
    return TrainConfig(
        model=ModelConfig(d_model=s.d_model, n_layers=depth, n_heads=4, d_ff=d_ff, ffn=kind, ffn_layers=ffn_layers),
        data=DataConfig("facts", {"n_entities": n_entities or s.n_entities, "n_relations": s.n_relations,
                                  "n_attributes": 8, "seed": s.seed, "facts_per_seq": 4, "loss": "all",
                                  "names": "families", "family_size": 4}),
        optim=OptimConfig(lr=s.lr, warmup_steps=min(100, s.min_steps // 2), weight_decay=0.01),
        steps=s.max_steps, batch_size=32, eval_every=s.eval_every, ckpt_every=s.max_steps, keep=1,
        log_every=s.eval_every, seed=s.seed, seeds=s.seeds, progress=progress)


def _per_seed(value, seeds: int) -> list[float]:
    return [float(v) for v in np.broadcast_to(np.atleast_1d(value), (seeds,))]


def train_cell(s: AtlasSettings, run_dir: Path, progress: Progress, **cell) -> dict:
    """Train (or resume) one cell; its per-seed accuracies, steps and seconds."""
    from train.loop import TrainingDiverged, train

    cfg = train_config(s, progress=progress.requested is not False, **cell)
    start = time.perf_counter()
    try:
        res = train(cfg, run_dir, stop_rule=FactsPlateau(min_steps=s.min_steps))
    except TrainingDiverged as error:  # a capacity result too: reported, never analysed
        progress.write(f"  diverged: {error}")
        res = {"step": None, "stopped_by_rule": False, "diverged": str(error)}
    acc, para = (_per_seed(res.get(f"eval/{k}", np.nan), s.seeds) for k in ("train_fact_acc", "paraphrase_acc"))
    row = {"run_dir": str(run_dir), "d_ff": cfg.model.d_ff, "ffn_layers": cfg.model.ffn_layers, "steps": res["step"],
            "stopped": "plateau" if res["stopped_by_rule"] else "cap", "seconds": time.perf_counter() - start,
            "train_fact_acc": acc, "paraphrase_acc": para, "reached": [a >= TARGET for a in acc]}
    return row | ({"diverged": res["diverged"]} if "diverged" in res else {})


MEASURES_FORMAT = 2  # 2: ROME's per-edit ES/PS/NS at each layer (the most-editable verdict)
MEASURE_FIELDS = ("seed", "n_edits", "n_unrelated", "cov_batches", "trace_samples", "ig_steps", "probe_tokens",
                  "geva_k",
                  "geva_shuffles")


def measured(s: AtlasSettings, cell: dict, i: int, progress: Progress) -> dict:
    """Seed index i's measures (``studies.atlas_layers.measure``), kept in its run dir as ``atlas_seed{i}.json``
    and read back by a re-run with the same measurement settings and training step (the study resumes by model)."""
    import json

    from ffnkv.io.load import load_model
    from studies.atlas_layers import measure
    from studies.report.write import write_json

    key = {k: getattr(s, k) for k in MEASURE_FIELDS} | {"step": cell["steps"], "format": MEASURES_FORMAT}
    path = Path(cell["run_dir"]) / f"atlas_seed{i}.json"
    if path.is_file():
        kept = json.loads(path.read_text())
        if kept.get("key") == key:
            return kept["measures"]
    progress.write(f"atlas: {Path(cell['run_dir']).name}, seed {s.seed + i}: measuring layer by layer…")
    measures = {"seed": s.seed + i, "index": i} | measure(load_model(cell["run_dir"], seed=i), i, s, progress)
    write_json(path, {"key": key, "measures": measures})
    return measures


def commit() -> str:
    """The source commit of this checkout (``+dirty`` with uncommitted changes), or ``unknown``."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def run(settings: AtlasSettings = AtlasSettings(), out=None, progress: Progress | None = None) -> dict:
    """Train every cell of ``settings`` under ``out`` (resumable), measure the kinds' models, summarise."""
    from studies import atlas_summary

    if out is None:
        raise FfnkvError("the atlas needs an output directory; pass --out DIR.")
    s, out = settings, Path(out)
    progress = Progress() if progress is None else progress
    start, load_start = time.perf_counter(), os.getloadavg()
    result = {"meta": {"commit": commit()}, "settings": dataclasses.asdict(s), "target": TARGET, "kinds": {},
              "placement": {}, "capacity": {}}
    for depth in s.depths:
        for kind in s.kinds:
            progress.write(f"atlas: depth {depth}, FFN kind {kind}: training {s.seeds} seeds in one program…")
            cell = train_cell(s, out / f"depth{depth}" / kind, progress, kind=kind, depth=depth)
            cell["seeds"] = [measured(s, cell, i, progress) for i in range(s.seeds)
                             if kind != "none" and cell["reached"][i]]
            result["kinds"][f"{kind}@{depth}"] = cell | {"kind": kind, "depth": depth}
            jax.clear_caches()  # the next config compiles its own programs; these are not needed again
    if s.placement:
        depth = s.depths[0]
        for k in range(depth):
            progress.write(f"atlas: placement, a relu FFN in layer {k} only (depth {depth})…")
            result["placement"][str(k)] = train_cell(s, out / f"placement{depth}" / f"layer{k}", progress,
                                                     kind="relu", depth=depth, ffn_layers=(k,))
    for n in s.capacity:
        progress.write(f"atlas: capacity of attention alone, {n} entities…")
        result["capacity"][str(n * s.n_relations)] = train_cell(s, out / "capacity" / f"entities{n}", progress,
                                                                 kind="none", depth=s.depths[0], n_entities=n)
    result["summary"] = atlas_summary.summarise(result, s)
    result["machine"] = {"cpus": os.cpu_count(), "loadavg_start": list(load_start),
                         "loadavg_end": list(os.getloadavg()),
                         "seconds": time.perf_counter() - start}
    return result
