"""Seeds as a batch axis: S seeds in one jitted program equal S separate runs (float32 rounding), resume after
SIGTERM is bitwise, the NaN stop names the seed, ``load_model(run_dir, seed=i)`` gives seed i, and the S seeds
are one compiled step program. (The tests that train the S-seed config come first, so they share its compiled
programs; the separate one-seed runs come last.)"""
import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from _train_helpers import ROOT, assert_trees_equal, tiny_config, write_config

import train.loop as loop
from cli.main import main
from ffnkv import forward
from ffnkv.data import register_task
from ffnkv.data.condcomp import CondComp
from ffnkv.errors import ConfigError, FfnkvError
from ffnkv.io.load import load_model
from ffnkv.io.run import Run, checkpoint_steps, load_metrics
from train.config import DataConfig, apply_overrides
from train.loop import TrainingDiverged, TrainingInterrupted, train

BASE, S = 3, 2
TASK = {"n_operands": 3, "modulus": 7, "n_eval": 64}
EPS32 = float(np.finfo(np.float32).eps)


def config(**changes):
    """Six steps, a checkpoint and an eval every three; seeds BASE, BASE + 1."""
    return tiny_config(**(dict(seed=BASE, seeds=S, steps=6, ckpt_every=3, eval_every=3) | changes))


def assert_f32_close(actual, desired):
    """Equal up to float32 rounding: 64 ulps at the largest magnitude (at least 1) of the two."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    scale = max(1.0, float(np.abs(actual).max()), float(np.abs(desired).max()))
    np.testing.assert_allclose(actual, desired, rtol=0, atol=64 * EPS32 * scale)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """The S-seed run, with every trace of the train step and every call of the compiled step recorded."""
    run_dir = tmp_path_factory.mktemp("multi")
    traced, calls, programs = [], [], {}
    real_step, real_programs = loop.make_train_step, loop.programs

    def counting_step(cfg, *args):
        step = real_step(cfg, *args)

        def traced_step(state, batch):
            traced.append(batch["tokens"].shape)
            return step(state, batch)
        return traced_step

    def counting_programs(cfg, mesh):
        init_fn, step_fn, eval_fn, abstract = real_programs(cfg, mesh)
        programs["step"] = step_fn

        def called(*args):
            calls.append(1)
            return step_fn(*args)
        return init_fn, called, eval_fn, abstract

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "make_train_step", counting_step)
        mp.setattr(loop, "programs", counting_programs)
        loop._PROGRAMS.clear()
        result = train(config(), run_dir)
    return run_dir, result, traced, len(calls), programs["step"]


def test_seeds_are_one_compiled_program(multi):
    run_dir, result, traced, calls, step_fn = multi
    assert result["seeds"] == S and result["step"] == 6
    T = np.shape(CondComp(**TASK).batch(0, 0, 1)["tokens"])[1]
    assert traced == [(S, 16, T)]  # one trace, of all seeds' batches at once
    assert calls == 6 and step_fn._cache_size() == 1  # one dispatch per step, one executable


def test_load_model_seed_and_all_params(multi):
    run_dir, *_ = multi
    run = Run(run_dir)
    stacked = run.all_params(step=3)
    assert jax.tree.leaves(stacked)[0].shape[0] == S
    for i in range(S):
        one = load_model(run_dir, step=3, seed=i).params
        assert_trees_equal(one, jax.tree.map(lambda a: a[i], stacked))
        assert_trees_equal(one, run.params(3, seed=i))
        assert_trees_equal(one, run.for_seed(i).params(3))
        assert jax.tree.structure(one) == jax.tree.structure(run.init_params())
    assert_trees_equal(load_model(run_dir).params, run.params(seed=0))
    assert all(isinstance(r.get("loss", 0.0), float) for r in run.for_seed(1).metrics())
    for bad in (S, -1):
        with pytest.raises(FfnkvError, match=f"seed={bad} is out of range.*trained {S} seed"):
            load_model(run_dir, seed=bad)
    with pytest.raises(FfnkvError, match="seed=1 is out of range.*trained 1 seed"):
        Run(_single_run_dir(run_dir), seed=1)


def _single_run_dir(multi_dir):
    """A copy of the multi-seed run's config.json saying it trained one seed (enough for Run's checks)."""
    single = multi_dir.parent / (multi_dir.name + "-single")
    single.mkdir(exist_ok=True)
    values = json.loads((multi_dir / "config.json").read_text())
    values.pop("seeds")
    (single / "config.json").write_text(json.dumps(values))
    return single


class _SigtermCondComp(CondComp):
    """condcomp that sends this process SIGTERM while drawing step 4's batch of the base seed, once."""

    sent = False

    def batch(self, seed, step, batch_size):
        if step == 4 and seed == BASE and not _SigtermCondComp.sent:
            _SigtermCondComp.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
        return super().batch(seed, step, batch_size)


@pytest.mark.slow
def test_sigterm_then_resume_is_bitwise(multi, tmp_path):
    run_dir, *_ = multi
    register_task("sigterm_condcomp", _SigtermCondComp)
    cfg = config(data=DataConfig("sigterm_condcomp", TASK))
    with pytest.raises(TrainingInterrupted) as stopped:
        train(cfg, tmp_path)
    assert stopped.value.step == 5 and checkpoint_steps(tmp_path) == [3, 5]
    train(cfg, tmp_path)
    assert_trees_equal(Run(tmp_path).all_params(), Run(run_dir).all_params())
    assert load_metrics(tmp_path) == load_metrics(run_dir)


class _OneSeedNaN(CondComp):
    """condcomp whose batches for seed BASE + 1 from step 4 on have NaN weights."""

    def batch(self, seed, step, batch_size):
        b = super().batch(seed, step, batch_size)
        return b | {"weights": b["weights"] * np.float32("nan")} if seed == BASE + 1 and step >= 4 else b


def test_nan_in_one_seed_stops_all_and_names_it(tmp_path):
    register_task("one_seed_nan", _OneSeedNaN)
    named = rf"seed {BASE + 1} \(of seeds {BASE}..{BASE + S - 1}\): loss=nan .*step 5.*checkpoint is step 3"
    with pytest.raises(TrainingDiverged, match=named):
        train(config(data=DataConfig("one_seed_nan", TASK)), tmp_path)
    assert checkpoint_steps(tmp_path) == [3]
    assert all(np.isfinite(np.asarray(w)).all() for w in jax.tree.leaves(Run(tmp_path).all_params()))


def test_config_field_and_cli_option(tmp_path, capsys):
    assert "seeds" not in tiny_config().to_dict()  # a single-seed config.json is as before seeds existed
    assert apply_overrides(tiny_config(), ["seeds=4"]).seeds == 4
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match="TrainConfig.seeds="):
            tiny_config(seeds=bad)
    with pytest.raises(ConfigError, match="seed \\+ seeds <= 2\\*\\*32"):
        tiny_config(seed=2 ** 32 - 1, seeds=2)
    run_dir = tmp_path / "run"
    assert main(["train", write_config(tmp_path), "--seeds", "0", "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "TrainConfig.seeds=0 is not allowed" in err and "Traceback" not in err and not run_dir.exists()


@pytest.mark.slow
def test_compare_study_trains_seeds_in_one_run_dir(tmp_path):
    from studies import condcomp

    settings = condcomp.CompareSettings(kinds=("relu",), seeds=S)
    result = condcomp.run(config(seeds=1), tmp_path, settings, log=lambda _: None)
    row = result["kinds"]["relu"]
    assert Run(tmp_path / "relu").n_seeds == S and row["seeds"] == S and len(row["per_seed"]) == S
    for i, seed_row in enumerate(row["per_seed"]):
        last = [r for r in load_metrics(tmp_path / "relu", seed=i) if "eval/loss" in r][-1]
        assert seed_row["final_eval_loss"] == last["eval/loss"] and seed_row["accuracy"]["SUM"] == last["eval/acc/SUM"]
    assert {k: v for k, v in row.items() if k not in ("seeds", "per_seed")} == row["per_seed"][0]
    with pytest.raises(ConfigError, match="seeds=0 is not allowed"):
        condcomp.CompareSettings(seeds=0)


@pytest.fixture(scope="module")
def separate(tmp_path_factory):
    """Seed BASE + i trained on its own, for each i."""
    dirs = [tmp_path_factory.mktemp(f"seed{BASE + i}") for i in range(S)]
    for i, run_dir in enumerate(dirs):
        train(config(seed=BASE + i, seeds=1), run_dir)
    return dirs


def test_seeds_equal_separate_runs(multi, separate):
    run_dir, *_ = multi
    run = Run(run_dir)
    assert run.n_seeds == S and run.config.seed == BASE
    assert json.loads((run_dir / "config.json").read_text())["seeds"] == S
    for i, alone in enumerate(separate):
        mine, theirs = load_metrics(run_dir, seed=i), load_metrics(alone)
        assert [r["step"] for r in mine] == [r["step"] for r in theirs] and len(mine) == 6 + 3
        for key in ("loss", "grad_norm", "eval/loss"):
            pairs = [(a[key], b[key]) for a, b in zip(mine, theirs) if key in b]
            assert pairs and all(isinstance(a, float) for a, _ in pairs)
            assert_f32_close(*zip(*pairs))
        model, reference = load_model(run_dir, seed=i), load_model(alone)
        assert model.run.config.seed == BASE + i == reference.run.config.seed
        assert_trees_equal(model.run.init_params(), reference.run.init_params())
        tokens_BT = reference.run.task.eval_set(BASE + i)["tokens"]
        assert_f32_close(forward(model.params, tokens_BT, model.cfg).logits,
                         forward(reference.params, tokens_BT, reference.cfg).logits)
    assert not np.allclose(load_metrics(separate[0])[-1]["eval/loss"], load_metrics(separate[1])[-1]["eval/loss"])


@pytest.mark.slow
def test_seed_groups_equal_one_vmapped_step(multi, tmp_path):
    """``seed_batch=1``: the program loops over the seeds (lax.map) and trains the same models."""
    run_dir, *_ = multi
    train(config(seed_batch=1), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["seed_batch"] == 1
    for i in range(S):
        for key in ("loss", "grad_norm", "eval/loss"):
            pairs = [(a[key], b[key]) for a, b in zip(load_metrics(tmp_path, i), load_metrics(run_dir, i)) if key in b]
            assert_f32_close(*zip(*pairs))
    with pytest.raises(ConfigError, match="TrainConfig.seed_batch=0 is not allowed"):
        config(seed_batch=0)


EIGHT = """
import json, sys
sys.path.insert(0, "tests")
from test_train_seeds import config
from train.loop import train
from ffnkv.io.run import load_metrics
result = train(config(mesh=(4, 2)), sys.argv[1])
print(json.dumps([result["devices"], [r["loss"] for r in load_metrics(sys.argv[1]) if "loss" in r]]))
"""


@pytest.mark.slow
def test_seeds_on_an_fsdp_mesh_match_one_device(multi, tmp_path):
    """8 fake CPU devices, mesh (4, 2): rows on "data" and "model", parameters FSDP-split, seed axis replicated."""
    run_dir, *_ = multi
    env = os.environ | {"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "JAX_PLATFORMS": "cpu",
                        "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = subprocess.run([sys.executable, "-c", EIGHT, str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    devices, losses = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert devices == 8
    assert_f32_close(losses, [r["loss"] for r in load_metrics(run_dir) if "loss" in r])


@pytest.mark.slow
def test_seeds_benchmark_runs_end_to_end():
    sys.path.insert(0, str(ROOT))
    from benchmarks import seeds as bench

    result = bench.measure(config(seeds=1), k=S, steps=2, rounds=1)
    rows = result["rows"]
    assert set(rows) == {"1 seed", f"{S} seeds batched", f"{S} seeds sequential"}
    assert rows[f"{S} seeds batched"]["units"] == S * rows["1 seed"]["units"]
    for r in rows.values():
        assert r["throughput"] > 0 and 0 < r["ratio_to_peak"] == r["model_flops_per_s"] / r["peak_flops_per_s"]
    assert result["speedup_batched_vs_sequential"] == (rows[f"{S} seeds sequential"]["seconds"]
                                                       / rows[f"{S} seeds batched"]["seconds"])
