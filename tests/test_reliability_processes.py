"""Reliability across processes (docs/reliability.md): a second writer is refused while the first runs on
unaffected; a SIGKILLed writer leaves no stale lock."""
import json
import os
import signal

import pytest

from _train_helpers import start_training, wait_for_step, write_config
from cli import main
from train.lock import RunLock


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.endswith("}")]


@pytest.mark.slow
def test_second_process_refused_first_unaffected_and_sigkill_leaves_no_lock(tmp_path, capsys):
    run = tmp_path / "run"
    first = start_training(tmp_path, run, "steps=100000, ckpt_every=100000, eval_every=100000")
    try:
        wait_for_step(first, run, 2)
        config_before = (run / "config.json").read_bytes()
        assert main(["train", write_config(tmp_path), "--run-dir", str(run)]) == 2
        err = capsys.readouterr().err
        assert err == (f"ffnkv train: error: run dir '{run}' is in use by another process (pid {first.pid}); "
                       "wait for it to finish or use another --run-dir.\n")
        step_then = max(r["step"] for r in _records(run))
        wait_for_step(first, run, step_then + 3)  # the first writer goes on
        assert (run / "config.json").read_bytes() == config_before
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    steps = [r["step"] for r in _records(run) if "loss" in r]
    assert steps == sorted(set(steps))  # one writer: no duplicated records
    with RunLock(run) as lock:  # the killed holder left nothing stale
        assert os.pread(lock.fd, 32, 0).decode().strip() == str(os.getpid())
