"""The conditional-computation comparison (Rahman et al. 2026): every FFN kind trained on the same task with
matched FFN parameter counts: ``run(cfg, out, settings) -> dict``.

Each kind trains in its own run dir ``<out>/<kind>/`` (resumable; every analysis runs on it). The FFN width of
kind k is ``matched_d_ff(k, d_model, d_ff)`` with the config's relu ``d_ff`` as the reference, so every FFN has
(nearly) the parameters of the relu FFN; ``none`` has no FFN at all. The result has, per kind: parameters, FFN
parameters, d_ff, steps, final train/eval loss, eval accuracy per op, the first eval step with accuracy ≥ the
threshold per op, and the eval curve. An interrupted training raises ``train.loop.TrainingInterrupted``: no
result is returned for a half-trained comparison. With ``seeds`` S > 1 each kind trains S seeds in one program
(``TrainConfig.seeds``); its row is seed 0's, with every seed's row under ``per_seed``.

Training runs to convergence (issue 20): ``Plateau`` stops a kind once its eval accuracy has stopped rising —
at an eval step ≥ ``min_steps``, every op's (and every seed's) best accuracy of the last ``window`` evals beats
its best before them by less than ``delta`` — and ``cfg.steps`` is the cap. The rule reads only the eval records
(asked at eval time, no host sync per step), which a resumed run reads back from metrics.jsonl, so it decides the
same. Each kind's row reports where and why it stopped and each op's accuracy slope over its last ``window`` evals.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ffnkv.config import FFN_KINDS
from ffnkv.errors import ConfigError

KINDS = ("relu", "gelu", "swiglu", "softmax", "linear", "none")


def _acc_keys(record: dict) -> list[str]:
    return sorted(k for k in record if k.startswith("eval/acc/"))


@dataclasses.dataclass(frozen=True)
class Plateau:
    """The stopping rule (module docstring): ``rule(evals)`` is True when the run should stop at its last eval."""

    delta: float = 0.01  # accuracy gain below which a window counts as flat
    window: int = 5  # evals
    min_steps: int = 1000  # no stop before this step

    def __post_init__(self):
        if not (isinstance(self.delta, (int, float)) and 0 <= self.delta < 1):
            raise ConfigError(f"plateau delta={self.delta!r} is not allowed; use a number in [0, 1).")
        if not isinstance(self.window, int) or self.window < 1:
            raise ConfigError(f"plateau window={self.window!r} is not allowed; use a positive number of evals.")

    def __call__(self, evals: list[dict]) -> bool:
        if len(evals) <= self.window or evals[-1]["step"] < self.min_steps or not _acc_keys(evals[-1]):
            return False
        import numpy as np

        def best(records, k):  # per seed: a record holds one number, or a list of one per seed
            return np.max([np.atleast_1d(r[k]) for r in records], axis=0)

        before, last = evals[: -self.window], evals[-self.window:]
        return all(bool(np.all(best(last, k) - best(before, k) < self.delta)) for k in _acc_keys(evals[-1]))

    def stop_step(self, evals: list[dict]) -> int | None:
        """The step at which the rule stops a run with these eval records (asked eval by eval), or None."""
        return next((evals[i - 1]["step"] for i in range(1, len(evals) + 1) if self(evals[:i])), None)


def end_slope(steps, acc, window: int) -> float:
    """Least-squares slope of accuracy vs step over the last ``window`` + 1 evals, per 1000 steps."""
    import numpy as np

    x, y = np.asarray(steps[-window - 1:], float), np.asarray(acc[-window - 1:], float)
    return float(np.polyfit(x, y, 1)[0] * 1000) if len(x) > 1 else float("nan")


@dataclasses.dataclass(frozen=True)
class CompareSettings:
    """``kinds`` to train; ``threshold``: the accuracy whose first eval step is reported; ``plateau``: the
    stopping rule (None: train ``cfg.steps``); ``seeds`` > 1: seeds per kind (the config's seed, seed + 1, …),
    trained in one program (it replaces the config's ``seeds``)."""

    kinds: tuple = KINDS
    threshold: float = 0.95
    plateau: Plateau | None = Plateau()
    seeds: int = 1

    def __post_init__(self):
        bad = [k for k in self.kinds if k not in FFN_KINDS]
        if bad or not self.kinds:
            raise ConfigError(f"kinds {','.join(self.kinds)!r} is not allowed; use a comma-separated subset of "
                              f"{', '.join(FFN_KINDS)}.")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold={self.threshold} is not allowed; use a number in (0, 1].")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"seeds={self.seeds!r} is not allowed; use a positive integer.")


def kind_config(cfg, kind: str):
    """The config for ``kind``: same everything, FFN width matched to the relu reference ``cfg.model.d_ff``."""
    from ffnkv.config import matched_d_ff

    m = cfg.model
    return cfg.replace(model=m.replace(ffn=kind, d_ff=matched_d_ff(kind, m.d_model, m.d_ff, bias=m.bias)))


def summarise(run_dir: Path, threshold: float, plateau: Plateau | None = None, seed: int | None = None) -> dict:
    """One kind's row of compare.json, from its run dir (of seed index ``seed`` when it trained several)."""
    import numpy as np

    from ffnkv.config import ffn_params_per_layer
    from ffnkv.io.run import Run
    from ffnkv.params import count_params

    run = Run(run_dir, seed)
    model_cfg, params, records = run.model_cfg, run.params(), run.metrics()
    train_recs = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval/loss" in r]
    ops = [k.removeprefix("eval/acc/") for k in evals[-1] if k.startswith("eval/acc/")]
    reached = {op: next((r["step"] for r in evals if r[f"eval/acc/{op}"] >= threshold), None) for op in ops}
    return {
        "ffn": model_cfg.ffn, "d_ff": model_cfg.d_ff, "params": count_params(params, model_cfg),
        "ffn_params": int(model_cfg.has_ffn_L().sum()) * ffn_params_per_layer(model_cfg.ffn, model_cfg.d_model,
                                                                           model_cfg.d_ff, model_cfg.bias),
        "steps": int(evals[-1]["step"]),
        "final_train_loss": float(np.mean([r["loss"] for r in train_recs[-5:]])),
        "final_eval_loss": evals[-1]["eval/loss"],
        "accuracy": {op: evals[-1][f"eval/acc/{op}"] for op in ops},
        f"steps_to_{round(threshold * 100)}": reached,
        "curve": {"step": [r["step"] for r in evals], **{op: [r[f"eval/acc/{op}"] for r in evals] for op in ops}},
        "stopped": "plateau" if evals[-1]["step"] < run.config.steps else "cap",
        "end_slope_per_1000_steps": {op: end_slope([r["step"] for r in evals], [r[f"eval/acc/{op}"] for r in evals],
                                                   (plateau or Plateau()).window) for op in ops},
    }


def run(cfg, out: Path, settings: CompareSettings = CompareSettings(), log=print) -> dict:
    """Train (or resume) each kind under ``out`` and summarise it; every config mistake is raised before any
    training starts."""
    from train.config import resolve
    from train.loop import train

    if cfg.data.kind != "condcomp":
        raise ConfigError(f"compare reports accuracy per op and needs data.kind='condcomp', not {cfg.data.kind!r}.")
    if settings.seeds > 1:
        cfg = cfg.replace(seeds=settings.seeds)
    configs = {kind: kind_config(cfg, kind) for kind in settings.kinds}
    for c in configs.values():
        resolve(c)
    rows = {}
    for kind, c in configs.items():
        result = train(c, Path(out) / kind, stop_rule=settings.plateau)
        log(f"{kind}: {result['status']} at step {result['step']}" +
            (f" in {result['seconds']:.1f} s" if "seconds" in result else ""))
        rows[kind] = summarise(Path(out) / kind, settings.threshold, settings.plateau)
        if c.seeds > 1:
            rows[kind] |= {"seeds": c.seeds, "per_seed": [summarise(Path(out) / kind, settings.threshold,
                                                                   settings.plateau, i) for i in range(c.seeds)]}
    return {"config": cfg.to_dict(), "reference": {"ffn": "relu", "d_ff": cfg.model.d_ff},
            "matching": "d_ff = ffnkv.matched_d_ff(kind, d_model, reference d_ff): FFN parameters closest to relu's",
            "threshold": settings.threshold, "kinds": rows,
            "stopping": "cap only" if settings.plateau is None else dataclasses.asdict(settings.plateau) | {
                "rule": "stop at the first eval step ≥ min_steps where every op's best accuracy over the last window "
                        "evals beats its best before them by < delta; steps is the cap", "cap": cfg.steps}}
