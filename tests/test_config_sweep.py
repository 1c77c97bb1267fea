"""The sweep of docs/reliability.md: every ``--set`` key of every preset (enumerated from the config dataclasses,
so a field added later is swept too) with a wrong-typed, empty, NaN, negative and huge value gives one line on
stderr, exit 2 and no new file, and is refused before any training (``train.loop.train`` is never reached)."""
import dataclasses
import functools
import importlib
import os
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

import train.loop
from ffnkv.config import ModelConfig
from ffnkv.data import TASKS
from train.config import PRESETS, OptimConfig, TrainConfig, load_config_file

cli_main = importlib.import_module("cli.main")  # the module (``cli.main`` the attribute is the function)
SECTIONS = {"model": ModelConfig, "optim": OptimConfig}
# free-form text fields: any non-empty string (also "nan") is a legal value, so they have no NaN case
FREE_TEXT = {"data.cache_dir", "data.tfds_split", "data.tfds_data_dir", "data.text_key"}


class _Reached(Exception):
    """Raised by the stand-in for train.loop.train: a config passed validation."""


def _fields(cls) -> list[tuple[str, object]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def swept_keys(preset: str) -> list[tuple[str, object]]:
    """Every ``--set`` key of ``preset`` and its annotation ("section" for a whole config section)."""
    cfg = load_config_file(preset)
    keys = []
    for name, hint in _fields(TrainConfig):
        if name in SECTIONS or name == "data":
            keys.append((name, "section"))
        else:
            keys.append((name, hint))
    for section, cls in SECTIONS.items():
        keys += [(f"{section}.{name}", hint) for name, hint in _fields(cls)]
    module, cls_name = TASKS[cfg.data.kind]
    task_cls = getattr(importlib.import_module(module), cls_name)
    keys += [("data.kind", str)] + [(f"data.{name}", hint) for name, hint in _fields(task_cls)]
    return keys


def _admits(hint, kind) -> bool:
    return hint is kind or kind in typing.get_args(hint) or \
        any(kind in typing.get_args(arm) for arm in typing.get_args(hint))


def bad_values(key: str, hint) -> dict[str, str]:
    """The five bad values of the sweep, as ``--set`` text."""
    textual = hint != "section" and (_admits(hint, str))
    values = {"wrong-typed": "5" if textual else "abc", "empty": "", "NaN": "nan", "negative": "-1",
              "huge": "1e300" if hint != "section" and _admits(hint, float) else "1" + "0" * 30}
    if key in FREE_TEXT:
        del values["NaN"]
    return values


def _snapshot(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """cwd, FFNKV_DATA and the text preset's corpus inside tmp_path; train() replaced by a tripwire; the
    parser built once (argparse parsers are reusable)."""
    words = "the cat dog sat on a mat and ran to house garden tree river stone bird".split()
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choice(words, 12)) for _ in range(400)) + "\n")
    monkeypatch.setenv("FFNKV_TEXT_FILES", str(corpus))
    monkeypatch.setenv("FFNKV_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)

    def tripwire(cfg, run_dir):
        raise _Reached(run_dir)

    monkeypatch.setattr(train.loop, "train", tripwire)
    monkeypatch.setattr(cli_main, "build_parser", functools.cache(cli_main.build_parser))
    return tmp_path


def _run(argv, capsys):
    try:
        code = cli_main.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_set_key_of_every_preset_refuses_bad_values_before_training(sandbox, capsys, preset):
    run_dir = str(sandbox / "run")
    if preset != "text":  # the control: the preset itself passes validation and reaches train()
        with pytest.raises(_Reached):
            cli_main.main(["train", preset, "--out", run_dir])
    keys = swept_keys(preset)
    assert {"model.norm_eps", "model.rope_theta", "model.causal", "optim.lr", "seed", "mesh"} <= {k for k, _ in keys}
    failures = []
    for key, hint in keys:
        for case, value in bad_values(key, hint).items():
            before = _snapshot(sandbox)
            try:
                code, err = _run(["train", preset, "--out", run_dir, "--set", f"{key}={value}"], capsys)
            except _Reached:
                code, err = "reached train()", capsys.readouterr().err
            new = _snapshot(sandbox) - before
            if code != 2 or len(err.splitlines()) != 1 or not err.startswith("ffnkv train: error: ") or new:
                failures.append(f"--set {key}={value!r} ({case}): exit {code}, new files {sorted(new)}, stderr {err!r}")
    assert not failures, "\n".join(failures)


def test_text_preset_control_builds_only_after_validation(sandbox, capsys):
    """The text preset's own config passes (its corpus cache is then built) and reaches train()."""
    with pytest.raises(_Reached):
        cli_main.main(["train", "text", "--out", str(sandbox / "run")])
    assert any((sandbox / "data" / "text").glob("*/meta.json")) and not (sandbox / "run").exists()


def test_the_real_entry_point_gives_one_line_exit_2_and_no_run_dir(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = os.environ | {"PYTHONPATH": str(root)}
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "cli", "train", "condcomp", "--out", str(run_dir), "--set",
                           "model.norm_eps=nan"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "ffnkv train: error: ModelConfig.norm_eps='nan' is not allowed; use a number in (0, 1]."]
    assert not run_dir.exists()
    proc = subprocess.run([sys.executable, "-m", "cli", "train", "condcomp", "--out", ""], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "ffnkv train: error: argument --out: '' is an empty path; pass a directory (it is created if absent)"]
    assert list(tmp_path.iterdir()) == []
