"""The editing study: ROME one edit at a time, ROME sequentially and MEMIT in one batch, on any model and any
CounterFact-format fact set, scored as CounterFact does (Meng et al. 2022 §3.3; 2023 §5).

``run(model, facts, settings)`` takes a ``ffnkv.io.load.Model`` (a facts run, a Hugging Face directory, a GGUF
file, a packaged name) and ``FactRecord``s, and returns a JSON-able dict. The documented rules:

* **facts**: the records the unedited model knows (``studies.facts.known_mask``) whose two answers start with
  different tokens (else ES/PS cannot tell them apart), seeded shuffle,
  split into calibration facts (layer rule), facts to edit — one rewrite per subject, as in CounterFact: two
  rewrites of one subject in one MEMIT batch would ask the same key (the subject's last token, when the
  relation follows the subject) for two different values; the last subject in the order is never edited —
  and unrelated facts of other subjects (top-1 accuracy after editing).
* **layer** (unless ``settings.layer``): *editability per layer* — ROME single edits of the calibration facts
  (disjoint from the scored ones) at every candidate layer; the layer of highest S, the earliest on a tie.
  ``out["layer_rule"]`` keeps the calibration facts' case ids and, per candidate layer, S, ES and each edit's
  ES/PS/NS (``per_edit_by_layer``, in the order of ``calibration``; ``studies.atlas_pretrained`` reads them).
  MEMIT edits ``memit_width`` layers ending there (the paper's band ends at the critical layer), shifted up
  when fewer layers lie below it.
* **λ** (unless ``settings.memit_lambda``): λ = ratio · mean kᵀC⁻¹k over the edit keys of the MEMIT layers,
  the ratio chosen so that the band realises the share of a fact's residual that GPT-J's six layers realise at
  λ = 15000 (``analysis.memit.band_lambda_ratio``, 79%; ``settings.lambda_ratio`` overrides it). The rule
  assumes E[kᵀC⁻¹k] = d_ff for GPT-J's keys; SmolLM2's give 4.7·d_ff, which reads the same rule as a ratio
  about 6× smaller. So MEMIT S is reported over r, not at one point: ``lambda_sweep`` (default: ``sweep_points``
  ratios from the 4.7·d_ff reading to the d_ff one, ``analysis.memit.ratio_grid``; 0.078 … 0.461 for two
  layers) plus the paper's absolute λ = 15000, all in one compiled program (``memit_sweep``).
* **C** = E[kkᵀ] over the non-padding positions of the run's own training batches (a facts run), or of local
  text tokenised by the model's tokenizer (``cov_text``; default the Debian licence texts) for a pretrained
  model. Nothing is downloaded.
* **testbed check**: an unconstrained δ (no clamp, KL or decay) at the edit site must flip the facts
  (P(o*) > P(o)) before a method is judged there (``delta_flip_rate``).
"""
from __future__ import annotations

import dataclasses
import glob
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from analysis.covariance import key_second_moment, task_batches
from analysis.edit_eval import score_edited, summarise
from analysis.edit_requests import TOKENS, answer_tokens, build_edits, context_prefixes, fact_set
from analysis.memit import (
    GPTJ_LAYERS,
    MEMIT_HPARAMS,
    MEMIT_LAMBDA,
    PAPER_LAMBDA_RATIO,
    band_lambda_ratio,
    band_realised,
    memit_spread,
    memit_targets,
    ratio_grid,
    ratio_readings,
    relative_lambda,
)
from analysis.plan import announce, edit_plan
from analysis.rome import (
    CONSTRAINTS,
    ROME_HPARAMS,
    DeltaHParams,
    keys_at,
    optimise_delta,
    rome_sequential,
    rome_single_scores,
    site_hooks,
)
from ffnkv import sharding
from ffnkv.errors import FfnkvError
from ffnkv.model import forward
from ffnkv.progress import SILENT, Progress, map_chunks
from ffnkv.sharding import make_mesh
from studies import facts as FS

PROTOCOLS = ("single", "sequential", "memit")
LICENCE_TEXTS = "/usr/share/common-licenses/*"


@dataclasses.dataclass(frozen=True)
class EditSettings:
    """What ``run`` does; every default is the documented rule (module docstring)."""

    n_edits: int = 100
    n_unrelated: int = 100
    seed: int = 0
    protocols: tuple = PROTOCOLS
    token: str = "subject_last"
    constraint: str = "bare"
    layer: int | None = None
    layer_candidates: tuple | None = None
    n_calibration: int = 10
    memit_width: int = 2
    memit_lambda: float | None = None
    lambda_ratio: float | None = None  # None: band_lambda_ratio(band width)
    lambda_sweep: tuple | None = None  # ratios; None: ratio_grid(band width, sweep_points); (): no sweep
    sweep_points: int = 6
    rome: DeltaHParams = ROME_HPARAMS
    memit: DeltaHParams = MEMIT_HPARAMS
    cov_batches: int = 40
    cov_batch_size: int = 64
    cov_text: str = LICENCE_TEXTS
    cov_tokens: int = 20000
    cov_window: int = 64
    delta_check: int = 20
    mesh: tuple | None = None  # (data, model) device counts of the sweeps' mesh; None: one device
    memory_gb: float | None = None  # the edit sweeps' memory budget (analysis.plan); None: half the available memory
    clear_caches: bool = True  # drop every compiled program at the end (a big model's); False keeps them for reuse


def memit_layers(layer: int, width: int, n_layers: int | None = None) -> tuple[int, ...]:
    """``width`` consecutive layers holding ``layer``: ending there (MEMIT's band ends at the critical layer),
    shifted up where the model has too few layers below it (layer 0 and width 2: layers 0 and 1)."""
    n_layers = layer + width if n_layers is None else n_layers
    start = min(max(0, layer - width + 1), max(0, n_layers - width))
    return tuple(range(start, min(start + width, n_layers)))


def text_batches(tokenizer, pattern: str, n_tokens: int, window: int, batch_size: int = 8):
    """``(tokens, mask)`` windows of ``window`` tokens of the files matching ``pattern`` (about ``n_tokens`` in
    all), for the key second moment of a pretrained model; the last window's tail is masked."""
    files = sorted(p for p in glob.glob(pattern) if not p.endswith((".gz", ".bz2")))
    head = [tokenizer.bos_id] if tokenizer.add_bos else []
    ids = []
    for path in files:
        try:
            text = open(path, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError):
            continue
        ids.extend(tokenizer.encode(text))
        if len(ids) >= n_tokens:
            break
    if not ids:
        raise FfnkvError(f"no readable text matches {pattern!r} for the key second moment; pass another --cov-text.")
    body = window - len(head)
    rows = [head + ids[i: i + body] for i in range(0, min(len(ids), n_tokens), body)]
    for b in range(0, len(rows), batch_size):
        chunk = rows[b: b + batch_size]
        tokens = np.zeros((len(chunk), window), np.int32)
        mask = np.zeros((len(chunk), window), np.float32)
        for i, row in enumerate(chunk):
            tokens[i, : len(row)], mask[i, : len(row)] = row, 1.0
        yield tokens, mask


COV_GROUP = 4  # batches per call of key_second_moment: the bar advances (and the host waits) once per group


def second_moments(model, layers, s: EditSettings, progress: Progress = SILENT) -> tuple[dict, dict]:
    """C per layer and where it came from: the batches in groups of ``COV_GROUP``, each group's mean weighted
    by its positions (the bar counts the positions, the first group's call is the compile)."""
    task = model.run.task if model.run is not None else None
    if task is not None and hasattr(task, "batch"):
        batches = task_batches(task, s.seed + 1000, s.cov_batches, s.cov_batch_size, pad_id=0)
        source = f"{s.cov_batches} training batches of {s.cov_batch_size} (padding masked)"
    else:
        batches = text_batches(model.tokenizer, s.cov_text, s.cov_tokens, min(s.cov_window, model.cfg.max_len))
        source = f"{s.cov_text} tokenised by the model's tokenizer, up to {s.cov_tokens} tokens"
    mesh = None if s.mesh is None else make_mesh(s.mesh)
    batches = list(batches)
    groups = [g for g in (batches[i: i + COV_GROUP] for i in range(0, len(batches), COV_GROUP))
              if any(np.asarray(m).any() for _, m in g)]
    total, n = None, 0
    positions = lambda group: sum(int(np.asarray(m).sum()) for _, m in group)
    for group in progress.chunks(groups, "covariance", "tokens", positions):
        C_LFF, n_g = key_second_moment(model.params, model.cfg, layers, group, mesh=mesh)
        total = C_LFF * n_g if total is None else total + C_LFF * n_g
        n += n_g
    if total is None:
        raise FfnkvError("the corpus for the key second moment has no unmasked positions; give it real tokens.")
    return {l: total[i] / n for i, l in enumerate(layers)}, {"source": source, "n_positions": n}


def compact(per_edit: dict, digits: int = 4) -> dict:
    """``summarise``'s per-edit ES/PS/NS rounded to ``digits`` (ES and PS are rates of 0/1 per edit; NS a share),
    so the layer rule's per-layer arrays stay small in the JSON."""
    return {k: [round(float(x), digits) for x in v] for k, v in per_edit.items()}


def _stats(info: dict) -> dict:
    return {k: float(np.mean(np.asarray(v))) for k, v in info.items()
            if k in ("nll", "steps", "delta_norm", "final_gap")}


EDIT_CHUNK = 8  # single edits per dispatched chunk (score_single_edits' batch)


def rome_single(model, layer, C_FF, reqs, probes, others, hp, progress: Progress = SILENT,
                batch_size: int = EDIT_CHUNK, mesh=None) -> dict:
    """ROME edits one by one, each into a fresh model; means over edits and S. The edits are dispatched in
    equal chunks of ``batch_size`` (the memory plan's chunk) through one compiled program whose layer is traced
    (``analysis.rome.rome_single_scores``), so the layer rule compiles once for any depth (the bar counts edits).
    ``mesh``: each chunk's edits split over its "data" axis (devices, or processes)."""
    t = time.time()
    take = lambda tree, rows: jax.tree.map(lambda x: x[rows], tree)
    n = int(jax.tree.leaves(reqs)[0].shape[0])
    params, C_FF, l, others = _placed(mesh, model.params, C_FF, jnp.int32(layer), others)
    run = lambda rows: jax.tree.map(sharding.fetch, rome_single_scores(
        params, model.cfg, l, C_FF, *_placed(mesh, None, take(reqs, rows), take(probes, rows))[1:], others, hp,
        EDIT_CHUNK, mesh))
    d = 1 if mesh is None else mesh.shape["data"]
    scores, info = map_chunks(run, n, batch_size, progress, f"ROME edits at layer {layer}", "edits", multiple=d)
    return summarise(scores) | _stats(info) | {"seconds": time.time() - t}


def _placed(mesh, params, *trees):
    """``params`` on ``mesh`` (``ffnkv.sharding.put_params``) and ``trees`` replicated on it (the sweeps split
    them); as they are without a mesh. ``params`` None stays None."""
    if mesh is None:
        return (params,) + trees
    rep = sharding.replicated(mesh)
    return (None if params is None else sharding.put_params(params, mesh),) + tuple(
        jax.tree.map(lambda x: sharding.put(np.asarray(x), rep), t) for t in trees)


def delta_flip_rate(model, layer, reqs, probes, hp: DeltaHParams) -> dict:
    """The testbed check: δ at the MLP output of ``layer`` at the edit site, with no clamp, KL or decay
    (ROME eq. 4 unconstrained); the rate of P(o*) > P(o) on the bare rewrite prompt afterwards."""
    free = dataclasses.replace(hp, clamp_factor=1e6, kl_factor=0.0, weight_decay=0.0, steps=max(hp.steps, 50),
                               early_stop=1e-3)
    cfg = model.cfg

    def one(params, x):
        req, probe = x
        delta, nll, _ = optimise_delta(params, cfg, "mlp_out", layer, req, jnp.float32(1.0), free)
        T = req.tokens_PT.shape[1]
        hooks = site_hooks(cfg, "mlp_out", layer, req.subject_P[:1], T, delta)
        p_V = jax.nn.softmax(forward(params, req.tokens_PT[:1], cfg, hooks).logits[0, req.predict_P[0]])
        return p_V[probe.new] > p_V[probe.old], nll, jnp.linalg.norm(delta)

    run = jax.jit(lambda p, rs, ps: jax.lax.map(lambda x: one(p, x), (rs, ps), batch_size=4))
    flip, nll, norm = run(model.params, reqs, probes)
    return {"layer": layer, "n": int(flip.shape[0]), "flip_rate": float(jnp.mean(flip)), "nll": float(jnp.mean(nll)),
            "delta_norm": float(jnp.mean(norm))}


def _split(model, facts, s: EditSettings, calibrate: bool):
    true, new = answer_tokens(model.tokenizer, facts)
    known = FS.known_mask(model, facts) & (true != new)
    order = [facts[i] for i in np.random.default_rng(s.seed).permutation(np.flatnonzero(known))]
    n_cal_asked = s.n_calibration
    n_cal = min(n_cal_asked, len(order) // 3) if calibrate else 0
    rest = order[n_cal:]
    if len(rest) < 2:
        raise FfnkvError(f"the model knows {int(known.sum())} of {len(facts)} facts; editing needs at least "
                         f"{n_cal + 2} known facts (top-1 of target_true after the prompt).")
    n_edit = max(1, min(s.n_edits, len(rest) - min(s.n_unrelated, len(rest) // 2)))
    kept = list(dict.fromkeys(r.subject for r in rest))[-1:]  # one subject stays unedited for the unrelated facts
    if len(set(r.subject for r in rest)) < 2:
        raise FfnkvError(f"the known facts left to edit ({len(rest)}) all share one subject; editing needs known facts "
                         "of at least two subjects (one edited, one unrelated): use more facts or a "
                         "better-trained model.")
    edit, subjects = [], set()
    for record in rest:  # one rewrite per subject, as in CounterFact
        if len(edit) < n_edit and record.subject not in subjects and record.subject not in kept:
            edit.append(record)
            subjects.add(record.subject)
    unrelated = [r for r in rest if r.subject not in subjects][: s.n_unrelated]
    asked = {"calibration": n_cal_asked} if calibrate else {}
    chosen = FS.selection("edit", asked | {"edited": s.n_edits, "unrelated": s.n_unrelated},
                          {"calibration": order[:n_cal], "edited": edit, "unrelated": unrelated},
                          [f for f, k in zip(facts, known) if k], len(facts))
    return order[:n_cal], edit, unrelated, chosen


def _requests(model, records, prefixes, s):
    return build_edits(model.tokenizer, records, prefixes, s.token, max_len=model.cfg.max_len)


def check_protocols(protocols) -> None:
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise FfnkvError(f"protocols {','.join(protocols)!r} are not allowed; use a comma list of single, "
                         "sequential, memit.")


def check(model, s: EditSettings) -> None:
    cfg = model.cfg
    if cfg.ffn == "none":
        raise FfnkvError("this model has no FFN to edit; use one with model.ffn set to relu, gelu, swiglu or softmax.")
    if s.layer is not None and not 0 <= s.layer < cfg.n_layers:
        raise FfnkvError(f"edit layer {s.layer} is outside the model's {cfg.n_layers} layers.")
    if s.token not in TOKENS:
        raise FfnkvError(f"edit token {s.token!r} is not allowed; use 'subject_last' or 'last'.")
    if s.constraint not in CONSTRAINTS:
        raise FfnkvError(f"constraint {s.constraint!r} is not allowed; use 'bare' or 'mean'.")
    check_protocols(s.protocols)
    bad = [l for l in (s.layer_candidates or ()) if not 0 <= l < cfg.n_layers]
    if bad:
        raise FfnkvError(f"candidate layers {bad} are outside the model's {cfg.n_layers} layers.")


def run(model, facts, settings: EditSettings = EditSettings(), progress: Progress | None = None) -> dict:
    """Locate (unless ``settings.layer``), edit and score; a JSON-able dict (see the module docstring).
    ``progress``: where the sweeps report (default: a bar when stderr is a terminal)."""
    s = settings
    progress = Progress() if progress is None else progress
    check(model, s)
    model = dataclasses.replace(model, params=jax.tree.map(jnp.asarray, model.params))  # importers give numpy
    rome_hp = dataclasses.replace(s.rome, constraint=s.constraint)
    memit_hp = dataclasses.replace(s.memit, constraint=s.constraint)
    cfg = model.cfg
    calibrate = s.layer is None
    mesh = None if s.mesh is None else make_mesh(s.mesh)
    cal, edit, unrelated, chosen = _split(model, facts, s, calibrate)
    n_known = len(chosen["known"])
    candidates = tuple(s.layer_candidates or range(cfg.n_layers)) if calibrate else (s.layer,)
    need = sorted(set(candidates) | {l for c in candidates for l in memit_layers(c, s.memit_width, cfg.n_layers)})
    C, cov_info = second_moments(model, need, s, progress)
    prefixes = context_prefixes(model.params, cfg, model.tokenizer, s.seed, rome_hp.prefixes)
    others = fact_set(model.tokenizer, unrelated)
    out = {"model": model.name, "ffn": cfg.ffn, "n_layers": cfg.n_layers, "d_ff": cfg.width, "token": s.token,
           "constraint": s.constraint, "n_facts": len(facts), "n_known_facts": n_known, "n_calibration": len(cal),
           "n_edits": len(edit), "n_unrelated": len(unrelated), "covariance": cov_info, "prefixes": prefixes,
           "edited": [r.case_id for r in edit], "selection": chosen}
    reqs, probes = _requests(model, edit, prefixes, s)
    p = edit_plan(cfg, len(edit), reqs.tokens_PT.shape[1] + reqs.essence_tokens_MT.shape[1], reqs.tokens_PT.shape[2],
                  rome_hp.steps, s.memory_gb, max_chunk=8)
    announce(p)
    if calibrate:
        cal_reqs, cal_probes = _requests(model, cal, prefixes, s)
        per_layer = {}
        with progress.bar(len(candidates), "layer rule (ROME on the calibration facts)", "layers") as bar:
            for l in candidates:
                per_layer[l] = rome_single(model, l, C[l], cal_reqs, cal_probes, others, rome_hp, batch_size=p.chunk,
                                           mesh=mesh)
                bar.update(1)
        layer = max(candidates, key=lambda l: (per_layer[l]["S"], -l))
        out["layer_rule"] = {"rule": "editability per layer: ROME single S on the calibration facts, argmax "
                                     "(earliest on a tie)",
                             "calibration": [r.case_id for r in cal],
                             "S_by_layer": {str(l): per_layer[l]["S"] for l in candidates},
                             "ES_by_layer": {str(l): per_layer[l]["ES"] for l in candidates},
                             "per_edit_by_layer": {str(l): compact(per_layer[l]["per_edit"]) for l in candidates}}
    else:
        layer = s.layer
        out["layer_rule"] = {"rule": "given"}
    mem = memit_layers(layer, s.memit_width, cfg.n_layers)
    out |= {"layer": layer, "memit_layers": list(mem)}
    out["unedited"] = summarise(score_edited(model.params, cfg, probes, others))
    if s.delta_check:
        k = min(s.delta_check, len(edit))
        progress.write(f"testbed check: an unconstrained δ on {k} facts at layer {layer}…")
        out["delta_check"] = delta_flip_rate(model, layer, jax.tree.map(lambda x: x[:k], reqs),
                                             jax.tree.map(lambda x: x[:k], probes), rome_hp)
    if "single" in s.protocols:
        out["rome_single"] = rome_single(model, layer, C[layer], reqs, probes, others, rome_hp, progress, p.chunk, mesh)
    if "sequential" in s.protocols:
        t = time.time()
        progress.write(f"ROME: {len(edit)} edits in sequence at layer {layer}…")
        edited, info = rome_sequential(model.params, cfg, layer, C[layer], reqs, rome_hp)
        out["rome_sequential"] = (summarise(score_edited(edited, cfg, probes, others)) | _stats(info)
                                  | {"seconds": time.time() - t})
    if "memit" in s.protocols:
        out |= memit_protocol(model, edit, mem, C, probes, others, memit_hp, s, progress)
    if s.clear_caches:
        jax.clear_caches()
    return out


@partial(jax.jit, static_argnames=("cfg", "layers", "hp", "mesh"))
def memit_sweep(params, cfg, layers: tuple, C_LFF, reqs, probes, others, lam_R, hp, mesh=None):
    """MEMIT at every λ of ``lam_R``, each into a fresh copy of ``params``, scored: one compiled program over λ.
    The targets z (eq. 16) do not depend on λ and are optimised once; ``lax.map`` runs the spread over the
    layers and the scores per λ; ``mesh``: the targets' optimisations and the scored probes split over its "data"
    axis (devices, or processes). Returns (per-λ scores [R, …], target info [E], per-λ spread info [R, …])."""
    z_ED, info = memit_targets(params, cfg, layers[-1], reqs, hp, mesh=mesh)

    def one(lam):
        edited, spread = memit_spread(params, cfg, layers, C_LFF, reqs, z_ED, lam, hp)
        return score_edited(edited, cfg, probes, others, mesh=mesh), spread

    scores, spread = jax.lax.map(one, lam_R)
    return scores, info, spread


def memit_protocol(model, edit, mem, C, probes, others, hp, s: EditSettings, progress: Progress = SILENT) -> dict:
    """MEMIT at the rule's λ (or ``s.memit_lambda``), the ratio sweep and the paper's absolute λ: one program."""
    cfg = model.cfg
    prefixes = context_prefixes(model.params, cfg, model.tokenizer, s.seed, hp.prefixes)
    reqs, _ = _requests(model, edit, prefixes, s)
    C_mem = np.stack([C[l] for l in mem])
    keys = lambda l: jax.vmap(lambda r: keys_at(model.params, cfg, l, r.tokens_PT, r.subject_P).mean(0))(reqs)
    s_bar = float(np.mean([relative_lambda(keys(l), C[l], 1.0, hp.ridge)[1] for l in mem]))
    ratio = band_lambda_ratio(len(mem)) if s.lambda_ratio is None else s.lambda_ratio
    lam = s.memit_lambda if s.memit_lambda is not None else ratio * s_bar
    ratios = ratio_grid(len(mem), s.sweep_points) if s.lambda_sweep is None else tuple(s.lambda_sweep)
    lams = [lam] + [r * s_bar for r in ratios] + ([MEMIT_LAMBDA] if ratios else [])
    t = time.time()
    progress.write(f"MEMIT: {len(edit)} edits at once in layers {list(mem)}, {len(lams)} values of λ in one "
                   "program…")
    mesh = None if s.mesh is None else make_mesh(s.mesh)
    placed = _placed(mesh, model.params, C_mem, reqs, probes, others, jnp.asarray(lams, jnp.float32))
    scores, info, spread = jax.tree.map(sharding.fetch, memit_sweep(placed[0], cfg, tuple(mem), *placed[1:], hp, mesh))
    seconds = (time.time() - t) / len(lams)
    readings = ratio_readings(len(mem))

    def row(i):
        r = lams[i] / s_bar
        reading = ("E[kᵀC⁻¹k] = d_ff" if np.isclose(r, readings["d_ff"], rtol=1e-6) else
                   f"E[kᵀC⁻¹k] = {readings['key_scale']}·d_ff" if np.isclose(r, readings["measured"], rtol=1e-6) else
                   "paper λ = 15000" if i == len(lams) - 1 and ratios else "")
        stats = _stats(info | {"final_gap": spread["final_gap"][i]})
        return summarise(jax.tree.map(lambda x: x[i], scores)) | stats | {
            "lambda": float(lams[i]), "lambda_ratio": float(r), "band_realised": band_realised(r, len(mem)),
            "reading": reading, "seconds": seconds}

    ratio_rule = ("given" if s.lambda_ratio is not None else
                  f"such that the {len(mem)}-layer band realises what GPT-J’s {len(GPTJ_LAYERS)} layers realise "
                  "at λ = 15000")
    rule = "given" if s.memit_lambda is not None else (
        f"λ = ratio · mean kᵀC⁻¹k over the edit keys of the MEMIT layers; ratio {ratio_rule}")
    return {"memit": row(0), "memit_lambda_rule": {
        "rule": rule, "ratio": lam / s_bar, "paper_ratio": PAPER_LAMBDA_RATIO,
        "band_realised": band_realised(lam / s_bar, len(mem)),
        "paper_band_realised": band_realised(PAPER_LAMBDA_RATIO, len(GPTJ_LAYERS)), "mean_key_mahalanobis": s_bar,
        "d_ff": cfg.width, "lambda": float(lam), "readings": readings, "key_scale_here": s_bar / cfg.width},
        "memit_lambda_sweep": [row(i) for i in range(1, len(lams))]}

