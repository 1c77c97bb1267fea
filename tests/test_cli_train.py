"""`ffnkv train`: one-line config errors (exit 2), --help, a real run, SIGTERM saves and exits 143."""
import json
import re
import signal

import pytest
from _train_helpers import start_training, wait_for_step, write_config

from cli import main
from ffnkv.io.run import checkpoint_steps, load_metrics


@pytest.mark.parametrize("override, message", [
    ("foo=1", "unknown key 'foo'"),
    ("model.ffn=maxout", "ModelConfig.ffn='maxout'"),
    ("model.d_model=33", "divisor of d_model=33"),
    ("steps", "malformed"),
    ("data.nope=3", "data field 'nope'"),
    ("=3", "malformed"),
])
def test_config_errors_are_one_line(tmp_path, capsys, override, message):
    run_dir = tmp_path / "run"
    assert main(["train", write_config(tmp_path), "--set", override, "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("ffnkv train: error:")
    assert not run_dir.exists()


def test_missing_config_file(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.py"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0 and "--out" in capsys.readouterr().out


def test_train_command_and_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    args = ["train", write_config(tmp_path), "--set", "steps=6", "--set", "optim.lr=1e-3", "--out", "run",
            "--seed", "3", "--mesh", "(1,1)"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 6
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["optim"]["lr"] == 1e-3 and saved["steps"] == 6 and saved["seed"] == 3 and saved["mesh"] == [1, 1]
    assert main(args) == 0
    assert "resuming" in capsys.readouterr().err
    assert main(["train", write_config(tmp_path), "--set", "steps=7", "--out", str(run_dir), "--seed", "3",
                 "--mesh", "(1,1)"]) == 2
    assert "different config" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_saves_and_exits_143_unfinished(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_training(tmp_path, run_dir, "steps=100000, ckpt_every=100000, eval_every=100000")
    wait_for_step(proc, run_dir, 5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 143, err.decode()
    step = int(re.search(r"interrupted at step (\d+) of 100000", lines[-1]).group(1))
    assert "Traceback" not in err.decode() and "resume" in lines[-1]
    assert checkpoint_steps(run_dir) == [step] and step >= 5
    assert max(r["step"] for r in load_metrics(run_dir)) == step


@pytest.mark.slow
def test_compare_two_kinds(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--config", write_config(tmp_path), "--kinds", "swiglu,none", "--set", "steps=10",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "compare.json").read_text())
    rows = summary["kinds"]
    assert list(rows) == ["swiglu", "none"] and (out / "compare.png").stat().st_size > 0
    relu_ffn = 2 * (2 * 32 * 64 + 64 + 32)  # the reference: 2 layers of relu d_ff=64 with biases
    assert abs(rows["swiglu"]["ffn_params"] - relu_ffn) <= 3 * 32 * 2 and rows["none"]["ffn_params"] == 0
    assert rows["swiglu"]["d_ff"] == 44 and rows["none"]["params"] < rows["swiglu"]["params"]
    for r in rows.values():
        assert r["steps"] == 10 and set(r["accuracy"]) == {"SUM", "MAX", "MIN", "all"}
        assert r["curve"]["step"] == [0, 10] and "steps_to_95" in r
    assert "swiglu" in printed and "acc SUM" in printed
    assert (out / "swiglu" / "config.json").exists()
    assert main(args) == 0  # resumes: both runs are complete, the summary is rebuilt
    assert json.loads((out / "compare.json").read_text())["kinds"]["none"] == rows["none"]
    assert main(["compare", "--kinds", "relu,maxout", "--out", str(out)]) == 2


def test_presets_by_name_and_a_missing_config_names_them():
    from ffnkv.errors import ConfigError
    from train.config import load_config_file

    assert load_config_file("facts").data.kind == "facts" and load_config_file("condcomp").model.n_layers == 2
    with pytest.raises(ConfigError, match="preset name \\(condcomp, facts, text\\)"):
        load_config_file("no_such_config.py")
