"""`ffnkv train`: one-line config errors (exit 2), --help, a real run, SIGTERM saves and exits 0."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ffnkv.cli import main
from ffnkv.io.run import checkpoint_steps, load_metrics
from tests._train_helpers import tiny_config  # noqa: F401  (enables the shared compilation cache)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """from tests._train_helpers import tiny_config
def get_config():
    return tiny_config({changes})
"""


def write_config(tmp_path, changes="") -> str:
    path = tmp_path / "cfg.py"
    path.write_text(CONFIG.format(changes=changes))
    return str(path)


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
    assert main(["train", write_config(tmp_path), "--set", override, "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("ffnkv train: error:")
    assert not run_dir.exists()


def test_missing_config_file(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.py"), "--run-dir", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0 and "--run-dir" in capsys.readouterr().out


def test_train_command_and_resume(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", write_config(tmp_path), "--set", "steps=6", "--set", "optim.lr=1e-3", "--run-dir", str(run_dir)]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 6
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["optim"]["lr"] == 1e-3 and saved["steps"] == 6
    assert main(args) == 0
    assert "resuming" in capsys.readouterr().err
    assert main(["train", write_config(tmp_path), "--set", "steps=7", "--run-dir", str(run_dir)]) == 2
    assert "different config" in capsys.readouterr().err


def _start(tmp_path, run_dir, changes):
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "ffnkv", "train", write_config(tmp_path, changes), "--run-dir",
                             str(run_dir)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_step(proc, run_dir, step, timeout=240):
    """Poll metrics.jsonl until a train record of ``step`` (or later) appears."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        path = run_dir / "metrics.jsonl"
        if path.exists() and any(json.loads(line).get("step", 0) >= step and "loss" in line
                                 for line in path.read_text().splitlines() if line.endswith("}")):
            return
        time.sleep(0.01)
    raise TimeoutError(f"training did not reach step {step}")


@pytest.mark.slow
def test_sigterm_saves_and_exits_zero(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(tmp_path, run_dir, "steps=100000, ckpt_every=100000, eval_every=100000")
    wait_for_step(proc, run_dir, 5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["status"] == "interrupted"
    assert checkpoint_steps(run_dir) == [result["step"]] and result["step"] >= 5
    assert max(r["step"] for r in load_metrics(run_dir)) == result["step"]
