"""``train(cfg, run_dir)``: the whole run — resume, jitted donated step, step-late metrics, eval, checkpoints.

Re-running on the same run dir resumes from the newest good checkpoint; batches are a pure function of
(seed, step), so a resumed run replays exactly what an uninterrupted one would (bitwise). SIGTERM or SIGINT
saves the current step and raises ``TrainingInterrupted`` (so no caller mistakes a half-trained model for a
finished one); a NaN/inf loss or gradient norm raises ``TrainingDiverged`` before anything non-finite is saved.
One process writes a run dir at a time (``train.lock``); checkpoints without a config.json are refused.

Seeds (``cfg.seeds = S > 1``): S models train as one jitted program (``train.step``: ``vmap`` over a state
stacked on a leading seed axis). Seed i uses ``cfg.seed + i`` for its initialisation, its batches and its eval
set, so it is the run ``cfg.replace(seed=cfg.seed + i, seeds=1)`` would be, up to float32 rounding. Checkpoints
hold the stacked leaves; every metrics.jsonl value is a list indexed by seed; a non-finite loss in any seed
stops all of them (naming the seeds) before anything is saved.
"""
from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from pathlib import Path

import jax
import numpy as np

from ffnkv.errors import ConfigError, FfnkvError, Interrupted
from ffnkv.io.run import load_metrics
from ffnkv.progress import Progress
from train import sharding
from train.checkpoints import Checkpoints, log_stderr
from train.config import TrainConfig, resolve
from train.lock import RunLock
from train.metrics import MetricsLog, write_summaries
from train.state import init_state, make_optimizer, schedule, seed_values
from train.step import make_eval_step, make_train_step

DEVICE_FIELDS = ("tokens", "targets", "weights")


class TrainingDiverged(FfnkvError):
    """The loss or gradient norm became NaN or infinite."""


class TrainingInterrupted(Interrupted):
    """SIGTERM/SIGINT stopped training after step ``step`` of ``steps`` was saved; re-running resumes."""

    def __init__(self, step: int | None, steps: int, signum: int):
        where = "before training started" if step is None else f"at step {step} of {steps}"
        super().__init__(f"interrupted {where}; re-run the same command to resume.", signum)
        self.step, self.steps = step, steps


def _check_run_dir(run_dir: Path) -> None:
    """A file is not a run dir; checkpoints without the config.json that made them are never resumed; a
    config.json must hold a valid training config (checked before the run dir is locked or written)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run dir {str(run_dir)!r} is a file, not a directory; pass a directory path.")
    if (run_dir / "config.json").exists():
        _read_config(run_dir / "config.json")
    ckpt = run_dir / "checkpoints"
    if not (run_dir / "config.json").exists() and ckpt.is_dir() and any(ckpt.iterdir()):
        raise ConfigError(f"run dir {str(run_dir)!r} has checkpoints but no config.json, so its config is unknown; "
                          "restore its config.json or use another run dir (--out).")


def _read_config(path: Path) -> dict:
    """The training config a run dir's config.json holds, checked field by field."""
    try:
        old = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{str(path)!r} is not valid JSON; restore it or use another run dir (--out).") from None
    try:
        TrainConfig.from_dict(old)
    except ConfigError as error:
        raise ConfigError(f"{str(path)!r} holds no valid training config ({error}); restore it or use another "
                          "run dir (--out).") from None
    return old


def _write_config(run_dir: Path, cfg: TrainConfig) -> None:
    """Save the resolved config; a run dir holding a different one is refused (nothing is overwritten)."""
    path = run_dir / "config.json"
    new = cfg.to_dict()
    if path.exists():
        old = _read_config(path)
        old["progress"] = new["progress"]  # display only
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ConfigError(f"run dir {str(run_dir)!r} holds a run with a different config (fields: "
                              f"{', '.join(diff)}); "
                              "use another run dir (--out) or the same config to resume.")
        return
    if jax.process_index() == 0:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(new, indent=2) + "\n")
        tmp.replace(path)


class _Stop:
    """Installed for SIGTERM and SIGINT while training; the loop checks ``signum`` between steps. A signal that
    arrives after the last step (during the final eval or save) is not lost: leaving the ``with`` block without
    an exception raises ``TrainingInterrupted`` (the run is saved and complete, but the caller must stop)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum = None
        self.previous = {}

    def __call__(self, signum, frame):
        self.signum = self.signum or signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self) for s in self.SIGNALS}
        return self

    def __exit__(self, exc_type, exc, tb):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        if exc_type is None and self.signum is not None:
            raise _InterruptedAfterLastStep(self.signum)


class _InterruptedAfterLastStep(TrainingInterrupted):
    def __init__(self, signum: int):
        Interrupted.__init__(self, "interrupted after the last step was saved; re-run the same command to finish.",
                             signum)
        self.step = self.steps = None


def _device_batch(batch: dict, mesh, seeds: int = 1) -> dict:
    return sharding.shard_batch({k: batch[k] for k in DEVICE_FIELDS}, mesh, seeds)


def _seeds_batch(task, cfg: TrainConfig, step: int) -> dict:
    """The host batch of ``step``: seed ``cfg.seed``'s, or with S seeds each seed's own stacked to [S, B, T]."""
    if cfg.seeds == 1:
        return task.batch(cfg.seed, step, cfg.batch_size)
    parts = [task.batch(s, step, cfg.batch_size) for s in seed_values(cfg)]
    return {k: np.stack([p[k] for p in parts]) for k in DEVICE_FIELDS}


def _per_seed(values_S, seeds: int):
    """One number per seed as metrics.jsonl holds it: a float for a single-seed run, else a list of S floats."""
    values_S = np.reshape(np.asarray(values_S, np.float64), (-1,))
    return float(values_S[0]) if seeds == 1 else [float(v) for v in values_S]


def _evaluate(eval_fn, params, eval_sets: list[dict], task, mesh, chunk: int) -> dict:
    """Loss, token accuracy (weighted positions) and the task's own metrics on the whole eval set of each seed
    (``eval_sets[i]`` is seed i's; with several, ``params`` are stacked and every value is a list over seeds)."""
    seeds = len(eval_sets)
    n = len(eval_sets[0]["tokens"])
    if any(len(e["tokens"]) != n for e in eval_sets):
        raise ConfigError(f"the task's eval sets differ in size between seeds; train the {seeds} seeds as "
                          "separate runs.")
    pad = -n % chunk
    padded = [{k: np.concatenate([e[k], np.zeros((pad,) + e[k].shape[1:], e[k].dtype)]) for k in DEVICE_FIELDS}
              for e in eval_sets]
    loss_sum = acc_sum = weight_sum = np.zeros(seeds)
    preds = []
    for start in range(0, n + pad, chunk):
        parts = [{k: v[start:start + chunk] for k, v in p.items()} for p in padded]
        part = parts[0] if seeds == 1 else {k: np.stack([p[k] for p in parts]) for k in DEVICE_FIELDS}
        loss, acc, pred = jax.device_get(eval_fn(params, _device_batch(part, mesh, seeds)))
        w = np.asarray([float(p["weights"].sum()) for p in parts])
        loss_sum = loss_sum + np.reshape(loss, -1).astype(np.float64) * w
        acc_sum = acc_sum + np.reshape(acc, -1).astype(np.float64) * w
        weight_sum = weight_sum + w
        preds.append(np.asarray(pred).reshape((seeds, -1) + np.shape(pred)[-1:]))
    out = {"eval/loss": _per_seed(loss_sum / np.maximum(weight_sum, 1.0), seeds),
           "eval/token_acc": _per_seed(acc_sum / np.maximum(weight_sum, 1.0), seeds)}
    if hasattr(task, "eval_metrics"):
        pred_SNT = np.concatenate(preds, axis=1)[:, :n]
        per_seed = [task.eval_metrics(pred_SNT[i], eval_sets[i]) for i in range(seeds)]
        out |= {f"eval/{k}": per_seed[0][k] if seeds == 1 else [float(m[k]) for m in per_seed] for k in per_seed[0]}
    return out


_PROGRAMS: dict = {}


def programs(cfg: TrainConfig, mesh):
    """The jitted init/step/eval functions and the abstract state, shared by runs of the same model, optimizer
    and mesh in one process (so e.g. ``compare`` or a resume in the same process compiles once)."""
    key = (json.dumps([cfg.model.to_dict(), cfg.to_dict()["optim"], cfg.steps, cfg.seed, cfg.seeds, cfg.seed_batch]),
           mesh)
    if key not in _PROGRAMS:
        rep = sharding.replicated(mesh)
        one_seed = jax.eval_shape(lambda: init_state(cfg, cfg.seed))
        state_sharding = sharding.state_shardings(one_seed, mesh, cfg.seeds)
        abstract = jax.eval_shape(lambda: init_state(cfg))
        abstract = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                                abstract, state_sharding)
        init_fn = jax.jit(lambda: init_state(cfg), out_shardings=state_sharding)
        batch_sharding = sharding.batch_sharding(mesh) if cfg.seeds == 1 else sharding.seeds_batch_sharding(mesh)
        step_fn = jax.jit(make_train_step(cfg, make_optimizer(cfg), schedule(cfg)), donate_argnums=0,
                          in_shardings=(state_sharding, batch_sharding), out_shardings=(state_sharding, rep))
        eval_fn = jax.jit(make_eval_step(cfg), out_shardings=rep)
        _PROGRAMS.clear()
        _PROGRAMS[key] = (init_fn, step_fn, eval_fn, abstract)
    return _PROGRAMS[key]


def train(cfg: TrainConfig, run_dir: str | Path, stop_rule=None) -> dict:
    """Train (or resume) the run in ``run_dir``; returns ``{"status": "done", "step": steps, ...}``.

    ``stop_rule(evals) -> bool``, if given, is asked after every eval with the run's eval records so far (those
    before a resume read back from metrics.jsonl); True stops the run there (saved; ``cfg.steps`` is the cap),
    and a resumed run whose records already satisfy it trains no further (e.g. ``studies.condcomp.Plateau``).

    Raises ``TrainingInterrupted`` after saving when SIGTERM/SIGINT arrives, ``RunDirBusy`` when another
    process trains in ``run_dir``, ``TrainingDiverged`` on a non-finite loss. Every config mistake is raised
    before ``run_dir`` is created or touched.
    """
    with _Stop() as stop:
        cfg, task = resolve(cfg)
        run_dir = Path(run_dir)
        mesh = sharding.make_mesh(cfg.mesh)
        sharding.check_batch(mesh, cfg.batch_size)
        _check_run_dir(run_dir)
        if stop.signum is not None:
            raise TrainingInterrupted(None, cfg.steps, stop.signum)
        primary = jax.process_index() == 0
        run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(run_dir) if primary else contextlib.nullcontext():
            _check_run_dir(run_dir)
            _write_config(run_dir, cfg)
            return _train(cfg, task, run_dir, mesh, stop, stop_rule)


def _train(cfg: TrainConfig, task, run_dir: Path, mesh, stop: _Stop, stop_rule=None) -> dict:
    primary = jax.process_index() == 0
    log = log_stderr if primary else (lambda message: None)
    init_fn, step_fn, eval_fn, abstract = programs(cfg, mesh)

    ckpts = Checkpoints(run_dir, cfg.keep)
    state = ckpts.restore_latest(abstract, log)
    if state is None:
        state = init_fn()
    start = int(jax.device_get(state.step))
    if start > 0:
        log(f"resuming {run_dir} from step {start}")
    metrics = MetricsLog(run_dir / "metrics.jsonl", start, enabled=primary)
    if start > 0 and primary:
        write_summaries(run_dir, cfg.seed)  # the curve so far, as the resumed run found it
    evals = [r for r in load_metrics(run_dir) if "eval/loss" in r] if start > 0 and stop_rule else []

    eval_sets = [task.eval_set(s) for s in seed_values(cfg)]

    def evaluate(state):
        record = {"step": int(jax.device_get(state.step))}
        record |= _evaluate(eval_fn, state.params, eval_sets, task, mesh, cfg.batch_size)
        metrics.write(record)
        evals.append(record)
        return record

    def save(state, force=False):
        ckpts.save(state, {"config": cfg.to_dict()}, force=force)

    progress = Progress(None if cfg.progress else False)  # process 0 only; automatic unless switched off
    bars = []  # the bar starts once the first step has compiled
    pending = None  # (step, device metrics) of the last dispatched update, fetched one step late
    last_eval = {}
    t0 = time.perf_counter()

    def flush(pending):
        """Fetch the metrics of an earlier update, stop on NaN/inf, log them."""
        if pending is None:
            return
        step, values = pending
        values = {k: _per_seed(v, cfg.seeds) for k, v in jax.device_get(values).items()}
        finite_S = np.all([np.isfinite(np.reshape(v, -1)) for v in values.values()], axis=0)
        if not finite_S.all():
            ckpts.wait()
            good = ckpts.manager.latest_step()
            kept = (f"the last good checkpoint is step {good} in {run_dir / 'checkpoints'}" if good is not None
                    else "no checkpoint was saved before it")
            bad = np.flatnonzero(~finite_S)
            which = "" if cfg.seeds == 1 else (f"seed {', '.join(str(cfg.seed + int(i)) for i in bad)} (of seeds "
                                               f"{cfg.seed}..{cfg.seed + cfg.seeds - 1}): ")
            loss, norm = (values[k] if cfg.seeds == 1 else values[k][int(bad[0])] for k in ("loss", "grad_norm"))
            raise TrainingDiverged(
                f"{which}loss={loss} grad_norm={norm} at step {step} "
                f"(learning rate {float(schedule(cfg)(step - 1)):.3g}); stopped, {kept} "
                "(lower optim.lr or raise optim.warmup_steps).")
        if step % cfg.log_every == 0 or step == cfg.steps:
            metrics.write({"step": step, **values})
            for bar in bars:
                bar.set_postfix(loss=f"{np.mean(values['loss']):.4f}", refresh=False)

    halt = start > 0 and stop_rule is not None and stop_rule(evals)
    last_eval = evals[-1] if halt else {}
    try:
        if start == 0:
            last_eval = evaluate(state)
        for k in range(start, start if halt else cfg.steps):
            if stop.signum is not None:
                flush(pending)
                save(state, force=True)
                ckpts.wait()
                raise TrainingInterrupted(k, cfg.steps, stop.signum)
            batch = _device_batch(_seeds_batch(task, cfg, k), mesh, cfg.seeds)
            if k == start:
                with progress.compiling("train step"):
                    state, values = step_fn(state, batch)
                bars.append(progress.bar(cfg.steps, "train", "steps", initial=start))
            else:
                state, values = step_fn(state, batch)
            flush(pending)
            pending = (k + 1, values)
            bars[0].update(1)
            at_end = k + 1 == cfg.steps
            if (k + 1) % cfg.ckpt_every == 0 or (k + 1) % cfg.eval_every == 0 or at_end:
                flush(pending)  # nothing non-finite is ever evaluated as good or saved
                pending = None
            if (k + 1) % cfg.eval_every == 0 or at_end:
                last_eval = evaluate(state)
                halt = stop_rule is not None and stop_rule(evals)
            if (k + 1) % cfg.ckpt_every == 0 or at_end or halt:
                save(state, force=at_end or halt)
            if halt:
                break
        flush(pending)
        ckpts.wait()
    finally:
        for bar in bars:
            bar.close()
        ckpts.wait()
        ckpts.close()
        if primary:  # from metrics.jsonl on the host, once per run: the loop itself never waits for it
            write_summaries(run_dir, cfg.seed)
    seconds = time.perf_counter() - t0
    return {"status": "done", "step": int(jax.device_get(state.step)), "stopped_by_rule": halt,
            "run_dir": str(run_dir), "seconds": seconds, "processes": jax.process_count(), "devices": mesh.size,
            "seeds": cfg.seeds, **last_eval}
