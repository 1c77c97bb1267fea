"""The specialisation study of Rahman et al. (2026) on one model: ``run(model, probe, settings)``.

Runs sparsity (trained and initial parameters), specialisation, the double-dissociation sweep and the
hierarchy analysis on a labelled probe set — prompts of equal length whose answer is the next token at the last
position, each labelled with a group (an op of the conditional-computation task, or any labelling a researcher
brings for a pretrained model) — then judges the claims with the rules ``rahman.*`` of ``studies.verdicts``
(ours; the paper gives no thresholds), each by its 95% bootstrap interval over the per-item arrays the analyses
write (``studies.verdicts.rahman_claims``):

1. **Extreme sparsity**: the mean token Gini over FFN layers is ≥ 0.8 *and* higher than at initialisation
   (training made the code sparser), over probe sequences (``token_gini_sequences``; paired for the second).
2. **Distinct, non-overlapping op groups**: every op has at least one specialist and every pair of ops'
   specialist sets (pooled over layers) has Jaccard ≤ 0.1, over the specialists of the pair (``overlap``).
3. **Double dissociation**: under zero- *and* mean-ablation, every ordered pair of ops (a, b) dissociates
   (``analysis.ablation``): the drop on a's probes ≥ 0.2 and beyond random sets of the same sizes, and the drop
   on b's probes ≤ half of it, over probes (per-probe ``correct``, ``control_correct``, ``baseline_correct``).
4. **Generalists route to specialists**: the generalists' median score (``analysis.hierarchy``) exceeds the
   random controls' and is ≥ 0.05, over ablated neurons (``generalist_scores``, ``control_scores``); it fails
   when no generalist precedes a layer with specialists, and is not applicable with < 2 FFN layers.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from analysis import ablation, hierarchy, sparsity, specialisation
from analysis.probe import ffn_coefficients, ffn_layers
from ffnkv.errors import FfnkvError
from ffnkv.model import init_params as init_model_params
from studies.verdicts import rahman_claims

ANALYSES = ("sparsity", "specialisation", "ablation", "hierarchy")
NO_FFN = {"applicable": False}


@dataclasses.dataclass(frozen=True)
class SpecialisationSettings:
    """``analyses``: any of ANALYSES (all four also give the claims); ``n_random`` random control sets per
    ablated set (≥ 20); ``seed`` of the controls and permutations; ``batch_size`` interventions in flight."""

    analyses: tuple = ANALYSES
    seed: int = 0
    n_random: int = ablation.N_RANDOM
    batch_size: int = 8

    def __post_init__(self):
        unknown = [a for a in self.analyses if a not in ANALYSES]
        if unknown:
            raise FfnkvError(f"unknown analysis {unknown[0]!r}; choose from {', '.join(ANALYSES)}.")
        if self.n_random < 20:
            raise FfnkvError(f"n_random={self.n_random} is too few; use at least 20 random control sets.")
        if self.batch_size < 1:
            raise FfnkvError(f"batch_size={self.batch_size} must be at least 1.")


def check_probe(probe: dict, groups) -> None:
    """A probe set is ``tokens`` [N, T] int, ``target`` [N] (the answer at the last position) and ``op`` [N]
    (the group index into ``groups``); each group needs at least two prompts."""
    missing = [k for k in ("tokens", "target", "op") if k not in probe]
    if missing:
        raise FfnkvError(f"the probe set lacks {missing[0]!r}; give tokens [N, T], target [N] and op [N].")
    n_N = np.bincount(np.asarray(probe["op"]), minlength=len(groups))
    if len(n_N) > len(groups) or (n_N[: len(groups)] < 2).any():
        raise FfnkvError(f"every group needs at least two probe prompts (counts {n_N.tolist()} for {list(groups)}).")


def run(model, probe: dict, groups, settings: SpecialisationSettings = SpecialisationSettings(),
        init_params=None) -> dict:
    """The study on ``model`` (a ``ffnkv.io.load.Model``: a trained run or a pretrained checkpoint).

    ``init_params`` is the baseline of the sparsity and specialisation numbers: by default the run's own
    initialisation for a trained run, a random initialisation of the same config (seed ``settings.seed``) for
    a pretrained checkpoint. Returns ``{analysis: result}``, plus ``claims`` and ``accuracy`` when
    all four analyses ran.
    """
    check_probe(probe, groups)
    if init_params is None:
        init_params = (model.run.init_params() if getattr(model, "run", None) is not None
                       else init_model_params(jax.random.key(settings.seed), model.cfg))
    study = Study(model.params, model.cfg, probe, groups, init_params, settings.seed, settings.n_random,
                  settings.batch_size)
    results = {name: getattr(study, name)() for name in settings.analyses}
    if "specialisation" in results:  # the per-neuron arrays [K, L, F] for figures and dumps (not JSON)
        results["specialisation"] = results["specialisation"] | {"arrays": study.specialisation_arrays(),
                                                                 "layers": study.layers}
    if all(name in results for name in ANALYSES):
        results |= {"claims": study.claims(), "accuracy": study.accuracy()}
    return results


class Study:
    """One model on one probe set; each analysis is computed on first use and cached (they build on each other)."""

    def __init__(self, params, cfg, probe: dict, ops, init_params=None, seed: int = 0,
                 n_random: int = ablation.N_RANDOM, batch_size: int = 8):
        self.params, self.cfg, self.probe, self.ops = params, cfg, probe, tuple(ops)
        self.init_params, self.seed, self.n_random, self.batch_size = init_params, seed, n_random, batch_size
        self.layers = ffn_layers(cfg)
        self._cache: dict = {}

    def _once(self, name, fn):
        if name not in self._cache:
            self._cache[name] = fn()
        return self._cache[name]

    @property
    def coefficients(self):
        """(m ``[L, N, T, F]``, answer logits ``[N, V]``) of the trained model on the probe set."""
        return self._once("coefficients", lambda: ffn_coefficients(self.params, jnp.asarray(self.probe["tokens"]),
                                                                   self.cfg))

    def accuracy(self) -> dict:
        _, logits = self.coefficients
        correct = np.asarray(logits).argmax(-1) == self.probe["target"]
        op = self.probe["op"]
        return {o: float(correct[op == k].mean()) for k, o in enumerate(self.ops)} | {"all": float(correct.mean())}

    def sparsity(self) -> dict:
        def compute():
            if not self.layers:
                return {"trained": {}, "initial": {}}
            out = {"trained": sparsity.model_sparsity(self.params, self.cfg, self.probe["tokens"])}
            if self.init_params is not None:
                out["initial"] = sparsity.model_sparsity(self.init_params, self.cfg, self.probe["tokens"])
            out["rel_threshold"] = sparsity.REL_THRESHOLD
            out["active_rule"] = "m > 0" if self.cfg.ffn == "relu" else f"|m| > {sparsity.REL_THRESHOLD} max|m|"
            return out
        return self._once("sparsity", compute)

    def _specialise(self, m_LNTF):
        return specialisation.specialisation(np.asarray(m_LNTF[:, :, -1]), self.probe["op"], self.ops, self.cfg.ffn,
                                             self.layers)

    def specialisation_arrays(self) -> dict | None:
        if not self.layers:
            return None
        return self._once("specialisation_arrays", lambda: self._specialise(self.coefficients[0]))

    def specialisation(self) -> dict:
        """The summary of the trained model, with the same summary of the initial parameters as ``initial``."""
        if not self.layers:
            return NO_FFN

        def compute():
            out = specialisation.summary(self.specialisation_arrays(), self.ops)
            if self.init_params is not None:
                m0_LNTF, _ = ffn_coefficients(self.init_params, jnp.asarray(self.probe["tokens"]), self.cfg)
                initial = specialisation.summary(self._specialise(m0_LNTF), self.ops)
                out["initial"] = {k: initial[k] for k in ("n_specialists", "n_generalists", "jaccard", "max_si_mean")}
            return out | {"q_fdr": specialisation.Q_FDR, "si_min": specialisation.SI_MIN,
                          "generalist_min_active": specialisation.GENERALIST_MIN_ACTIVE,
                          "n_probes": int(len(self.probe["op"]))}
        return self._once("specialisation", compute)

    def ablation(self) -> dict:
        if not self.layers:
            return NO_FFN

        def compute():
            m_LNTF, _ = self.coefficients
            mean_LTF = np.asarray(m_LNTF.mean(1))
            return ablation.dissociation(self.params, self.cfg, self.probe, self.ops,
                                         self.specialisation_arrays()["specialist"], mean_LTF, self.n_random, self.seed,
                                         self.batch_size)
        return self._once("ablation", compute)

    def hierarchy(self) -> dict:
        if not self.layers:
            return NO_FFN | {"reason": "the model has no FFN"}
        return self._once("hierarchy", lambda: hierarchy.hierarchy(
            self.params, self.cfg, self.probe, self.ops, self.specialisation_arrays(), self.layers, self.seed,
            batch_size=self.batch_size))

    def claims(self) -> dict:
        return self._once("claims", lambda: rahman_claims(self.sparsity(), self.specialisation(), self.ablation(),
                                                          self.hierarchy(), self.ops))


def find_runs(path) -> list:
    """``[path]`` if it is a run dir, else its sub-dirs that are run dirs (sorted); none raises FfnkvError."""
    from pathlib import Path

    path = Path(path)
    if (path / "config.json").is_file():
        return [path]
    runs = sorted(p for p in path.iterdir() if (p / "config.json").is_file()) if path.is_dir() else []
    if not runs:
        raise FfnkvError(f"{str(path)!r} is neither a run dir nor a dir of runs (no config.json found); "
                         "pass the --out of ffnkv train or of ffnkv compare.")
    return runs


def analyse_run(run_dir, settings: SpecialisationSettings, out, step: int | None = None,
                seed: int | None = None) -> dict:
    """The study on one conditional-computation run dir (seed index ``seed`` of a run that trained several), on
    its own probe set, with its files written to ``out`` (``studies.report.specialisation.write_run``); returns
    the comparison row (label, kind, results, seconds, out)."""
    import time
    from pathlib import Path

    from ffnkv.io.load import load_model
    from ffnkv.io.run import Run
    from studies.report.specialisation import write_run

    start = time.perf_counter()
    Run(run_dir)  # a damaged config.json is named as such, not as "not a model"
    model = load_model(run_dir, step, seed)
    task = model.run.task
    if not hasattr(task, "ops"):
        raise FfnkvError(f"run {str(run_dir)!r} is not a conditional-computation run; the specialisation "
                         "analyses need data.kind=condcomp.")
    results = run(model, task.eval_set(model.run.config.seed), task.ops, settings)
    name = Path(run_dir).name
    label = model.cfg.ffn if name == model.cfg.ffn else f"{model.cfg.ffn} ({name})"
    row = {"label": label, "kind": model.cfg.ffn, "results": results, "seconds": time.perf_counter() - start}
    row["out"] = str(write_run(Path(out), row, task.ops))
    return row
