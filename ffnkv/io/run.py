"""A trained run, read back: ``Run(path)`` (no dependency on train/).

A run dir (written by ``ffnkv train``) holds ``config.json`` (the resolved training config), ``metrics.jsonl``
and ``checkpoints/<step>/{params,opt,meta}`` (orbax). ``Run`` gives the typed view of the config that analyses
need (``RunConfig``), the parameters at any checkpoint, the initial parameters (recomputed from the seed, so a
baseline needs no checkpoint), the task the model was trained on, and the metrics.

Reading falls back the way training does: when the newest checkpoint cannot be restored, one line on stderr
names it and the previous checkpoint is used (the run dir is left as it is).

A run of S seeds (``seeds`` in config.json, written by ``ffnkv train --seeds S``) stores every leaf with a
leading seed axis. ``Run(path, seed=i)`` is the view of seed i (its parameters as an ordinary pytree, its initial
parameters, its metrics, ``config.seed`` = the base seed + i), so every analysis runs on seed i unchanged;
``Run.n_seeds`` and ``Run.all_params()`` serve studies that want every seed at once.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sys
import threading
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
    seed: int  # the training seed (init and data order); in a view of seed i of a multi-seed run, base seed + i
    steps: int
    batch_size: int
    raw: dict = dataclasses.field(repr=False, compare=False)
    seeds: int = 1  # seeds trained together in this run dir

    @classmethod
    def from_dict(cls, values: dict, where: str = "config.json") -> "RunConfig":
        """Every field read is type-checked: a damaged or foreign ``config.json`` is one FfnkvError naming it."""
        def fail(what: str):
            raise FfnkvError(f"{where} {what}; it was not written by `ffnkv train` (restore it or train "
                             "the run again).")

        if not isinstance(values, dict):
            fail("is not a JSON object")
        for name in ("model", "data", "seed", "steps", "batch_size"):
            if name not in values:
                fail(f"lacks the field {name!r}")
        data = values["data"]
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str) or \
                not isinstance(data.get("kwargs", {}), dict):
            fail(f"has data={data!r}, not {{'kind': str, 'kwargs': dict}}")
        for name in ("seed", "steps", "batch_size"):
            if not isinstance(values[name], int) or isinstance(values[name], bool) or values[name] < 0:
                fail(f"has {name}={values[name]!r}, not a non-negative integer")
        try:
            model = ModelConfig.from_dict(values["model"])
        except FfnkvError as error:
            fail(f"has a bad model section ({error})")
        seeds = values.get("seeds", 1)
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
            fail(f"has seeds={seeds!r}, not a positive integer")
        return cls(model, DataSpec(data["kind"], dict(data.get("kwargs", {}))), values["seed"], values["steps"],
                   values["batch_size"], values, seeds)


def _short(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:160]}"


class _Unreadable(Exception):
    """A checkpoint that does not restore, as one line (orbax's exception is not kept: see ``_collect_quietly``)."""


class _MainThreadOnly:
    """``sys.stderr`` during a restore and after a failed one: writes from threads other than the main one are
    dropped.

    A failed restore leaves tensorstore reads in flight whose callbacks later try to schedule on orbax's closed
    event loop; each prints a traceback ("Event loop is closed") from its own thread, at a time no lock can
    await. ffnkv writes its messages from the main thread, so dropping the others' writes is exact."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        if threading.current_thread() is threading.main_thread():
            return self._stream.write(text)
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _from_restore(error: BaseException | None) -> bool:
    """Whether ``error`` was raised inside orbax or tensorstore (a read of a failed restore)."""
    tb = error.__traceback__ if error is not None else None
    while tb is not None:
        if any(part in tb.tb_frame.f_code.co_filename for part in ("orbax", "tensorstore")):
            return True
        tb = tb.tb_next
    return False


class _DropRestoreErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not _from_restore(error) and "exception was never retrieved" not in record.getMessage()


def _collect_quietly() -> None:
    """Keep what a failed restore leaves behind out of stderr: asyncio futures and coroutines that hold
    tensorstore's errors are collected at some later time (now, or at the interpreter's exit) and would each log
    a traceback ("exception was never retrieved", "Exception ignored in: <coroutine …>"). Only errors raised in
    orbax or tensorstore are dropped."""
    import gc

    previous = sys.unraisablehook
    if not getattr(previous, "_drops_restore_errors", False):
        def hook(unraisable):
            if not _from_restore(unraisable.exc_value):
                previous(unraisable)

        hook._drops_restore_errors = True
        sys.unraisablehook = hook
        logging.getLogger("asyncio").addFilter(_DropRestoreErrors())
    gc.collect()


class Run:
    """A run dir. ``Run(path).params()`` are the newest readable checkpoint's parameters.

    ``seed`` (an index 0 … ``n_seeds`` − 1, default 0) picks one seed of a run that trained several.
    """

    def __init__(self, path: str | Path, seed: int | None = None):
        self.path = Path(path)
        file = self.path / "config.json"
        if not file.is_file():
            raise FfnkvError(f"{str(path)!r} is not a run dir (no config.json); train one with `ffnkv train`.")
        try:
            values = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise FfnkvError(f"{file} is not valid JSON ({error}); restore it or train the run again.") from None
        config = RunConfig.from_dict(values, str(file))
        self.base_seed = config.seed
        self.seed_index = self._check_seed(config.seeds, 0 if seed is None else seed)
        self.config = dataclasses.replace(config, seed=config.seed + self.seed_index)

    def _check_seed(self, n: int, seed) -> int:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < n:
            raise FfnkvError(f"seed={seed!r} is out of range: run dir {str(self.path)!r} trained {n} seed(s); "
                             f"give a seed index from 0 to {n - 1}.")
        return seed

    def __repr__(self) -> str:
        which = f", seed={self.seed_index} of {self.n_seeds}" if self.n_seeds > 1 else ""
        return f"Run({str(self.path)!r}, steps={self.steps}{which})"

    @property
    def n_seeds(self) -> int:
        """How many seeds this run dir trained together (1 for an ordinary run)."""
        return self.config.seeds

    def for_seed(self, seed: int) -> "Run":
        """The view of seed index ``seed`` of this run dir."""
        return Run(self.path, seed)

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
        """Checkpoint ``step``'s parameters as stored (leaves [S, ...] for a run of S > 1 seeds); an unreadable one
        raises ``_Unreadable`` with one line."""
        abstract = jax.eval_shape(lambda: init_params(jax.random.key(0), self.model_cfg))
        lead = (self.n_seeds,) if self.n_seeds > 1 else ()
        here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # every process reads the whole tree
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(lead + a.shape, a.dtype, sharding=here), abstract)
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.ERROR)  # orbax warns of a checkpoint that training is still writing (the newest)
        stderr = sys.stderr
        sys.stderr = stderr if isinstance(stderr, _MainThreadOnly) else _MainThreadOnly(stderr)
        try:
            with ocp.CheckpointManager(self.path.absolute() / "checkpoints", item_names=("params",),
                                       options=ocp.CheckpointManagerOptions(create=False)) as manager:
                out = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)))
            sys.stderr = stderr  # a restore that succeeded leaves nothing in flight
            return out["params"]
        except Exception as error:  # orbax/tensorstore raise many types for a damaged checkpoint
            message = _short(error)
        finally:
            absl.setLevel(level)
        _collect_quietly()
        raise _Unreadable(message)

    def params(self, step: int | None = None, seed: int | None = None) -> dict:
        """Parameters of checkpoint ``step`` (by default the newest one that restores; see the module docstring)
        of seed index ``seed`` (by default this view's), as an ordinary one-model pytree."""
        seed = self.seed_index if seed is None else self._check_seed(self.n_seeds, seed)
        stored = self._stored_params(step)
        return stored if self.n_seeds == 1 else jax.tree.map(lambda a: a[seed], stored)

    def all_params(self, step: int | None = None) -> dict:
        """Every seed's parameters of checkpoint ``step`` at once: each leaf with a leading seed axis [n_seeds, ...]
        (a single-seed run too, with n_seeds = 1)."""
        stored = self._stored_params(step)
        return stored if self.n_seeds > 1 else jax.tree.map(lambda a: a[None], stored)

    def _stored_params(self, step: int | None) -> dict:
        steps = self.steps
        if not steps:
            raise FfnkvError(f"run dir {str(self.path)!r} has no checkpoint yet; train it first.")
        if step is not None:
            if step not in steps:
                raise FfnkvError(f"run dir {str(self.path)!r} has no checkpoint of step {step}; it has {steps}.")
            try:
                return self._restore(step)
            except _Unreadable as error:
                raise FfnkvError(f"checkpoint {step} of {self.path} is unreadable ({error}); "
                                 f"pick another step of {steps}.") from None
        unreadable = []
        for step in reversed(steps):
            try:
                params = self._restore(step)
            except _Unreadable as error:
                unreadable.append((step, error))
                continue
            for bad, error in unreadable:
                print(f"checkpoint {bad} of {self.path} is unreadable ({error}); using checkpoint {step}",
                      file=sys.stderr)
            return params
        raise FfnkvError(f"no checkpoint of {self.path} is readable (steps {', '.join(map(str, steps))}; the oldest, "
                         f"{steps[0]}: {unreadable[-1][1]}); train the run again.")

    def init_params(self, seed: int | None = None) -> dict:
        """The parameters before training (step 0) of seed index ``seed`` (default this view's), recomputed from
        its training seed."""
        seed = self.seed_index if seed is None else self._check_seed(self.n_seeds, seed)
        return jax.jit(init_params, static_argnums=1)(jax.random.key(self.base_seed + seed), self.model_cfg)

    def metrics(self, seed: int | None = None) -> list[dict]:
        """The records of metrics.jsonl (train records have ``loss``; eval records ``eval/...`` keys) of seed index
        ``seed`` (default this view's): one number per key, as a single-seed run writes them."""
        seed = self.seed_index if seed is None else self._check_seed(self.n_seeds, seed)
        return load_metrics(self.path, seed if self.n_seeds > 1 else None)


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    """The checkpoint steps of a run dir, oldest first (none before the first checkpoint is committed)."""
    ckpt = Path(run_dir) / "checkpoints"
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) if ckpt.is_dir() else []


def load_metrics(run_dir: str | Path, seed: int | None = None) -> list[dict]:
    """The records of a run dir's metrics.jsonl ([] before the first is written). A multi-seed run writes a list
    per value (one number per seed); ``seed`` (an index) picks that seed's number from each list."""
    path = Path(run_dir) / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    if seed is None:
        return records
    return [{k: v[seed] if isinstance(v, list) else v for k, v in r.items()} for r in records]
