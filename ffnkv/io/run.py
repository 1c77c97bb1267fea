"""A trained run, read back: ``Run(path)`` (no dependency on train/).

A run dir (written by ``ffnkv train``) holds ``config.json`` (the resolved training config), ``metrics.jsonl``
and ``checkpoints/<step>/{params,opt,meta}`` (orbax). ``Run`` gives the typed view of the config that analyses
need (``RunConfig``), the parameters at any checkpoint, the initial parameters (recomputed from the seed, so a
baseline needs no checkpoint), the task the model was trained on, and the metrics.

Reading falls back the way training does: when the newest checkpoint cannot be restored, one line on stderr
names it and the previous checkpoint is used (the run dir is left as it is).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import sys
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from ffnkv.config import ModelConfig
from ffnkv.errors import FfnkvError
from ffnkv.model import init_params


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The task of a run: ``ffnkv.data.make_task(kind, **kwargs)``."""

    kind: str
    kwargs: dict


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What a run's ``config.json`` says about the model and its training (the fields analyses read).

    ``raw`` is the whole resolved config as written by training (optimiser, mesh, schedule …).
    """

    model: ModelConfig
    data: DataSpec
    seed: int
    steps: int
    batch_size: int
    raw: dict = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        try:
            return cls(ModelConfig.from_dict(values["model"]),
                       DataSpec(values["data"]["kind"], dict(values["data"].get("kwargs", {}))),
                       int(values["seed"]), int(values["steps"]), int(values["batch_size"]), values)
        except (KeyError, TypeError) as missing:
            raise FfnkvError(f"config.json lacks the field {missing}; it was not written by `ffnkv train`.") from None


def _short(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:160]}"


class Run:
    """A run dir. ``Run(path).params()`` are the newest readable checkpoint's parameters."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        file = self.path / "config.json"
        if not file.is_file():
            raise FfnkvError(f"{str(path)!r} is not a run dir (no config.json); train one with `ffnkv train`.")
        try:
            values = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise FfnkvError(f"{file} is not valid JSON ({error}); restore it or train the run again.") from None
        self.config = RunConfig.from_dict(values)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, steps={self.steps})"

    @property
    def model_cfg(self) -> ModelConfig:
        return self.config.model

    @property
    def steps(self) -> list[int]:
        """The steps that have a checkpoint, oldest first."""
        return checkpoint_steps(self.path)

    @property
    def finished(self) -> bool:
        """True when the newest checkpoint is the configured last step (training completed)."""
        return bool(self.steps) and self.steps[-1] == self.config.steps

    @functools.cached_property
    def task(self):
        """The dataset object (``ffnkv.data``) the run was trained on, with its vocabulary."""
        from ffnkv.data import make_task

        return make_task(self.config.data.kind, **self.config.data.kwargs)

    def _restore(self, step: int) -> dict:
        abstract = jax.eval_shape(lambda: init_params(jax.random.key(0), self.model_cfg))
        here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # every process reads the whole tree
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=here), abstract)
        with ocp.CheckpointManager(self.path.absolute() / "checkpoints", item_names=("params",),
                                   options=ocp.CheckpointManagerOptions(create=False)) as manager:
            out = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)))
        return out["params"]

    def params(self, step: int | None = None) -> dict:
        """Parameters of checkpoint ``step``; by default the newest one that restores (see the module docstring)."""
        steps = self.steps
        if not steps:
            raise FfnkvError(f"run dir {str(self.path)!r} has no checkpoint yet; train it first.")
        if step is not None:
            if step not in steps:
                raise FfnkvError(f"run dir {str(self.path)!r} has no checkpoint of step {step}; it has {steps}.")
            try:
                return self._restore(step)
            except Exception as error:  # orbax/tensorstore raise many types for a damaged checkpoint
                raise FfnkvError(f"checkpoint {step} of {self.path} is unreadable ({_short(error)}); "
                                 f"pick another step of {steps}.") from None
        for i in range(len(steps) - 1, -1, -1):
            try:
                return self._restore(steps[i])
            except Exception as error:  # as above
                if i == 0:
                    raise FfnkvError(f"no checkpoint of {self.path} is readable (the oldest, {steps[0]}: "
                                     f"{_short(error)}); train the run again.") from None
                print(f"checkpoint {steps[i]} of {self.path} is unreadable ({_short(error)}); "
                      f"using checkpoint {steps[i - 1]}", file=sys.stderr)

    def init_params(self) -> dict:
        """The parameters before training (step 0), recomputed from the run's seed."""
        return jax.jit(init_params, static_argnums=1)(jax.random.key(self.config.seed), self.model_cfg)

    def metrics(self) -> list[dict]:
        """The records of metrics.jsonl (train records have ``loss``; eval records ``eval/...`` keys)."""
        return load_metrics(self.path)


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    """The checkpoint steps of a run dir, oldest first (none before the first checkpoint is committed)."""
    ckpt = Path(run_dir) / "checkpoints"
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) if ckpt.is_dir() else []


def load_metrics(run_dir: str | Path) -> list[dict]:
    """The records of a run dir's metrics.jsonl ([] before the first is written)."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# ---- the old tuple interface: thin wrappers until the study code uses Run (then delete) ------------------
def load_config(run_dir: str | Path) -> tuple[dict, ModelConfig]:
    run = Run(run_dir)
    return run.config.raw, run.model_cfg


def load_params(run_dir: str | Path, model_cfg: ModelConfig, step: int | None = None) -> dict:
    return Run(run_dir).params(step)


def load_init_params(run_dir: str | Path) -> dict:
    return Run(run_dir).init_params()


def load_run(run_dir: str | Path, step: int | None = None) -> tuple[dict, ModelConfig, dict]:
    run = Run(run_dir)
    return run.config.raw, run.model_cfg, run.params(step)
