"""SIGKILL at an arbitrary step, re-run the same command: parameters bitwise equal to an uninterrupted run."""
import signal

import numpy as np
import pytest
from _train_helpers import assert_trees_equal, start_training, tiny_config, wait_for_step

from ffnkv.io.run import Run, load_metrics
from train.loop import train

CHANGES = dict(steps=120, ckpt_every=7, eval_every=25, log_every=1)


@pytest.mark.slow
def test_sigkill_then_rerun_is_bitwise_identical(tmp_path):
    reference = tmp_path / "reference"
    train(tiny_config(**CHANGES), reference)
    kill_at = int(np.random.default_rng(20261201).integers(10, 100))
    run_dir = tmp_path / "killed"
    proc = start_training(tmp_path, run_dir, ", ".join(f"{k}={v}" for k, v in CHANGES.items()))
    wait_for_step(proc, run_dir, kill_at)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert max(r["step"] for r in load_metrics(run_dir)) < CHANGES["steps"], "killed too late to test anything"
    train(tiny_config(**CHANGES), run_dir)  # the same command again: resumes
    assert_trees_equal(Run(run_dir).params(), Run(reference).params())
    assert load_metrics(run_dir) == load_metrics(reference)
