"""train(): learning, resume, NaN stop, corrupted checkpoint fallback, run loading."""
import csv
import json
import shutil

import jax
import numpy as np
import pytest
from _train_helpers import assert_trees_equal, tiny_config

from ffnkv.data import register_task
from ffnkv.data.condcomp import CondComp
from ffnkv.io.run import Run, checkpoint_steps, load_metrics
from ffnkv.model import init_params
from train.config import DataConfig
from train.loop import TrainingDiverged, train


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full")
    result = train(tiny_config(), run_dir)
    return run_dir, result


def test_run_dir_layout_and_learning(full_run):
    run_dir, result = full_run
    assert result["status"] == "done" and result["step"] == 20
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["model"]["vocab_size"] == 7 + 5 + 1 and cfg["steps"] == 20
    records = load_metrics(run_dir)
    losses = [r["loss"] for r in records if "loss" in r]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 21))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    evals = [r for r in records if "eval/loss" in r]
    assert [r["step"] for r in evals] == [0, 10, 20] and "eval/acc/SUM" in evals[-1]
    assert checkpoint_steps(run_dir) == [10, 15, 20]  # keep=3


def test_run_dir_has_a_loss_curve_and_a_csv(full_run):
    run_dir, _ = full_run
    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    records = load_metrics(run_dir)
    assert [int(r["step"]) for r in rows] == sorted({r["step"] for r in records}) and {r["seed"] for r in rows} == {"0"}
    by_step = {int(r["step"]): r for r in rows}
    for record in records:
        assert all(float(by_step[record["step"]][k]) == v for k, v in record.items() if k != "step")
    assert by_step[5]["eval/loss"] == "" and by_step[10]["eval/loss"] != ""  # blank where nothing was logged
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_params_and_init_params(full_run):
    run_dir, _ = full_run
    run = Run(run_dir)
    model_cfg, params = run.model_cfg, run.params()
    assert run.config.raw["seed"] == 0 and model_cfg.vocab_size == 13
    init = run.init_params()
    assert_trees_equal(init, jax.jit(init_params, static_argnums=1)(jax.random.key(0), model_cfg))
    assert not np.array_equal(init["blocks"]["ffn"]["W_in"], params["blocks"]["ffn"]["W_in"])
    earlier = run.params(10)
    assert not np.array_equal(earlier["blocks"]["ffn"]["W_in"], params["blocks"]["ffn"]["W_in"])


def test_resume_is_bitwise(full_run, tmp_path):
    run_dir, _ = full_run
    assert train(tiny_config(steps=20, ckpt_every=5), tmp_path)["step"] == 20
    # Simulate a stop after step 12: drop later checkpoints and re-run the same config.
    shutil.rmtree(tmp_path / "checkpoints" / "20")
    shutil.rmtree(tmp_path / "checkpoints" / "15")
    train(tiny_config(), tmp_path)
    assert_trees_equal(Run(tmp_path).params(), Run(run_dir).params())
    assert load_metrics(tmp_path) == load_metrics(run_dir)
    assert (tmp_path / "metrics.csv").read_text() == (run_dir / "metrics.csv").read_text()


def test_corrupted_latest_checkpoint_falls_back(full_run, tmp_path, capsys):
    run_dir, _ = full_run
    train(tiny_config(), tmp_path)
    for f in (tmp_path / "checkpoints" / "20" / "params").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
            f.write_bytes(b"garbage")
    train(tiny_config(), tmp_path)
    assert "checkpoint step 20 is corrupted" in capsys.readouterr().err
    assert (tmp_path / "corrupt_checkpoints" / "20").is_dir()
    assert_trees_equal(Run(tmp_path).params(), Run(run_dir).params())


class _PoisonedCondComp(CondComp):
    """condcomp whose batches from step 12 on have NaN weights (so the loss is NaN)."""

    def batch(self, seed, step, batch_size):
        b = super().batch(seed, step, batch_size)
        return b | {"weights": b["weights"] * np.float32("nan")} if step >= 12 else b


def test_nan_stops_with_last_good_checkpoint(tmp_path):
    register_task("poisoned_condcomp", _PoisonedCondComp)
    cfg = tiny_config(data=DataConfig("poisoned_condcomp", {"n_operands": 3, "modulus": 7, "n_eval": 64}))
    with pytest.raises(TrainingDiverged, match="step 13.*last good checkpoint is step 10"):
        train(cfg, tmp_path)
    assert checkpoint_steps(tmp_path) == [5, 10]
    params = Run(tmp_path).params()
    assert all(np.isfinite(np.asarray(w)).all() for w in jax.tree.leaves(params))


def test_killed_before_first_checkpoint_restarts_cleanly(full_run, tmp_path):
    run_dir, _ = full_run
    train(tiny_config(), tmp_path)
    shutil.rmtree(tmp_path / "checkpoints")  # as if killed before the first checkpoint was committed
    train(tiny_config(), tmp_path)
    assert load_metrics(tmp_path) == load_metrics(run_dir)
    assert_trees_equal(Run(tmp_path).params(), Run(run_dir).params())


def test_summaries_split_seeds_and_skip_a_cut_line(tmp_path):
    from train.metrics import write_summaries

    lines = [{"step": 0, "eval/loss": [2.0, 3.0]}, {"step": 1, "loss": [1.5, 2.5], "lr": [0.0, 0.0]}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 2, "lo')
    assert [p.name for p in write_summaries(tmp_path, first_seed=7)] == ["metrics.csv", "loss.png"]
    with open(tmp_path / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["step"], r["seed"], r["eval/loss"], r["loss"]) for r in rows] == [
        ("0", "7", "2.0", ""), ("0", "8", "3.0", ""), ("1", "7", "", "1.5"), ("1", "8", "", "2.5")]
    assert write_summaries(tmp_path / "empty") == [] and not (tmp_path / "empty").exists()
