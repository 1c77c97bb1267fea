"""Run: the typed view of a run dir, its checkpoints, and the fallback from an unreadable newest checkpoint."""
import jax
import numpy as np
import pytest
from _train_helpers import assert_trees_equal, tiny_config

from ffnkv.data.condcomp import CondComp
from ffnkv.errors import FfnkvError
from ffnkv.io.load import load_model
from ffnkv.io.run import Run, RunConfig
from ffnkv.model import init_params
from train.loop import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    train(tiny_config(steps=10, ckpt_every=5, eval_every=5), path)
    return path


def _corrupt(path, step):
    for f in (path / "checkpoints" / str(step) / "params").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
            f.write_bytes(b"garbage")


def test_run_reads_config_params_task_and_metrics(run_dir):
    run = Run(run_dir)
    assert isinstance(run.config, RunConfig)
    assert (run.config.seed, run.config.steps, run.config.batch_size) == (0, 10, 16)
    assert run.config.data.kind == "condcomp" and run.config.data.kwargs["modulus"] == 7
    assert run.model_cfg.vocab_size == 13 and run.steps == [5, 10] and run.finished
    assert isinstance(run.task, CondComp) and run.task.vocab_size == run.model_cfg.vocab_size
    assert [r["step"] for r in run.metrics() if "loss" in r] == list(range(1, 11))
    init = run.init_params()
    assert_trees_equal(init, jax.jit(init_params, static_argnums=1)(jax.random.key(0), run.model_cfg))
    newest, earlier = run.params(), run.params(step=5)
    assert not np.array_equal(newest["blocks"]["ffn"]["W_in"], earlier["blocks"]["ffn"]["W_in"])
    with pytest.raises(FfnkvError, match="no checkpoint of step 7"):
        run.params(step=7)


def test_load_model_on_a_run_dir_wraps_the_task_vocabulary(run_dir):
    model = load_model(run_dir, step=5)
    assert model.run is not None and model.cfg == Run(run_dir).model_cfg
    assert_trees_equal(model.params, Run(run_dir).params(step=5))
    tok = model.tokenizer
    assert tok.vocab_size == 13 and tok.encode("SUM 3 4 =") == [7, 3, 4, 12]
    assert tok.decode([7, 3]) == "SUM 3" and tok.token_str(12) == "=" and tok.bos_id is None


def test_unreadable_newest_checkpoint_falls_back_with_one_line(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    _corrupt(copy, 10)
    run = Run(copy)
    assert_trees_equal(run.params(), Run(run_dir).params(step=5))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"checkpoint 10 of {copy} is unreadable (")
    assert err[0].endswith("using checkpoint 5")
    assert run.steps == [5, 10] and not (copy / "corrupt_checkpoints").exists()  # reading leaves the dir alone
    with pytest.raises(FfnkvError, match="checkpoint 10 of .* is unreadable"):
        run.params(step=10)
    _corrupt(copy, 5)
    with pytest.raises(FfnkvError, match="no checkpoint of .* is readable"):
        run.params()


def test_unfinished_and_bad_run_dirs(run_dir, tmp_path):
    import shutil

    shutil.copytree(run_dir, tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "10")
    assert not Run(tmp_path / "run").finished
    with pytest.raises(FfnkvError, match="not a run dir"):
        Run(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(FfnkvError, match="not valid JSON"):
        Run(tmp_path)


def test_commands_read_a_run_with_a_corrupt_newest_checkpoint_like_training(run_dir, tmp_path, capsys):
    """`ffnkv analyze` (any command that loads a run) falls back to the previous checkpoint with one line."""
    import shutil

    from cli import main

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    _corrupt(copy, 10)
    assert main(["analyze", str(copy), "sparsity"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "unreadable" in line] == [err[0]] and err[0].endswith("using checkpoint 5")
    assert "Traceback" not in "\n".join(err) and (copy / "analysis" / "sparsity.json").is_file()
    _corrupt(copy, 5)
    assert main(["analyze", str(copy), "sparsity"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("ffnkv analyze: error: no checkpoint of")
