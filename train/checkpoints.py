"""Orbax checkpoints of the train state: keep-k, atomic (orbax writes to a temporary dir, then renames).

A checkpoint of step s holds three items: ``params`` and ``opt`` (StandardSave) and ``meta`` (JsonSave).
A checkpoint that fails to restore is reported, moved aside to ``<run_dir>/corrupt_checkpoints/<step>``
(never deleted) and the previous one is used.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from train.state import TrainState


class Checkpoints:
    def __init__(self, run_dir: Path, keep: int):
        self.run_dir = Path(run_dir).absolute()  # orbax needs absolute paths
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self.manager = ocp.CheckpointManager(self.run_dir / "checkpoints", options=options,
                                             item_names=("params", "opt", "meta"))

    def save(self, state: TrainState, meta: dict, force: bool = False) -> None:
        step = int(jax.device_get(state.step))
        if step in self.manager.all_steps():
            return
        self.manager.save(step, force=force, args=ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            opt=ocp.args.StandardSave({"step": state.step, "opt_state": state.opt_state}),
            meta=ocp.args.JsonSave(meta | {"step": step})))

    def restore_latest(self, abstract: TrainState, log=print) -> TrainState | None:
        """The newest checkpoint that restores, or None when there is none."""
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                out = self.manager.restore(step, args=ocp.args.Composite(
                    params=ocp.args.StandardRestore(abstract.params),
                    opt=ocp.args.StandardRestore({"step": abstract.step, "opt_state": abstract.opt_state})))
            except Exception as error:  # orbax/tensorstore raise many types for a damaged checkpoint
                aside = self.run_dir / "corrupt_checkpoints" / str(step)
                log(f"checkpoint step {step} is corrupted ({type(error).__name__}: "
                    f"{str(error).splitlines()[0][:200]}); "
                    f"moved to {aside} and using the previous one.")
                if jax.process_index() == 0:
                    aside.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(self.manager.directory / str(step)), str(aside))
                self.manager.reload()
                continue
            return TrainState(out["opt"]["step"], out["params"], out["opt"]["opt_state"])
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def log_stderr(message: str) -> None:
    print(f"ffnkv train: {message}", file=sys.stderr)
