"""Progress on every long command (issue 21.3): ``ffnkv.progress`` (compile phase, bar, chunked dispatch), the
``--no-progress`` option of every command, and the lines a command on a tiny model prints with progress forced
on (``FFNKV_PROGRESS=1``) and without them under ``--no-progress``."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _train_helpers import train_facts_run

from cli.main import COMMAND_MODULES, build_parser, main
from ffnkv.progress import Progress, chunk_rows, map_chunks


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


@pytest.mark.parametrize("command", COMMAND_MODULES)
def test_every_command_takes_no_progress(command):
    sub = _subparsers()[command]
    assert "--no-progress" in sub.format_help()
    assert any("--no-progress" in a.option_strings for a in sub._actions)


def test_chunks_are_equal_and_cover_every_row():
    for n, size, multiple in ((1, 4, 1), (10, 8, 1), (17, 4, 1), (100, 8, 1), (9, 2, 4)):
        rows = chunk_rows(n, size, multiple)
        assert rows.shape[1] % multiple == 0 and rows.shape[1] <= max(size, multiple) + multiple
        assert sorted(set(rows.ravel().tolist())) == list(range(n))
        assert rows.size - n < rows.shape[0] * multiple  # padding: under one multiple per chunk
        assert (rows[:, 0] == np.arange(len(rows)) * rows.shape[1]).all()  # no chunk is padding alone


def test_map_chunks_equals_one_call_and_compiles_once(capsys):
    traces = []

    @jax.jit
    def f(x_N):
        traces.append(1)
        return {"sq": x_N ** 2, "twice": jnp.stack([x_N, x_N], 1)}

    x = np.arange(23, dtype=np.float32)
    out = map_chunks(lambda rows: f(x[rows]), len(x), 5, Progress(True), "squares", "numbers", per_row=3)
    np.testing.assert_array_equal(out["sq"], x ** 2)
    np.testing.assert_array_equal(out["twice"], np.stack([x, x], 1))
    assert len(traces) == 1  # every chunk has one shape: one program
    err = capsys.readouterr().err
    assert "compiling squares…" in err and "XLA compile" in err and "69/69" in err and "numbers" in err


def test_a_silent_progress_prints_nothing(capsys):
    x = np.arange(7, dtype=np.float32)
    map_chunks(lambda rows: x[rows] + 1, len(x), 2, Progress(False), "quiet")
    for item in Progress(False).chunks(range(3), "quiet"):
        pass
    assert capsys.readouterr().err == ""


def test_the_environment_forces_it(monkeypatch):
    monkeypatch.setenv("FFNKV_PROGRESS", "1")
    assert Progress().on
    monkeypatch.setenv("FFNKV_PROGRESS", "0")
    assert not Progress().on and not Progress(None).on and Progress(True).on


@pytest.fixture(scope="module")
def facts_run(tmp_path_factory):
    return train_facts_run(tmp_path_factory.mktemp("facts"))


KNOWLEDGE = ["knowledge", "{run}", "tracing", "--n-facts", "3", "--samples", "2", "--trace-kinds", "resid",
             "--no-single-layer"]


@pytest.mark.slow  # a facts LM trained and traced twice (a minute on 2 loaded cores); train below is the fast check
def test_knowledge_shows_its_phases_and_bars_on_stderr(facts_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FFNKV_PROGRESS", "1")
    argv = [a.format(run=facts_run) for a in KNOWLEDGE]
    assert main(argv + ["--out", str(tmp_path / "on")]) == 0
    captured = capsys.readouterr()
    for line in ("compiling tracing (window 2)…", "XLA compile", "cells", "compiling tracing (whole subject)…"):
        assert line in captured.err, line
    assert "compiling" not in captured.out
    json.loads(captured.out)  # stdout keeps the summary alone

    assert main(argv + ["--out", str(tmp_path / "off"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "compiling" not in captured.err and "cells" not in captured.err
    a, b = (json.loads((tmp_path / d / "tracing.json").read_text()) for d in ("on", "off"))
    assert a["known_facts"] == b["known_facts"]  # the display changes nothing computed


def test_train_shows_its_compile_and_bar(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FFNKV_PROGRESS", "1")
    argv = ["train", "condcomp", "--set", "steps=3", "--set", "model.d_model=16", "--set", "model.d_ff=32",
            "--set", "model.n_layers=1", "--set", "eval_every=3", "--set", "data.n_eval=32", "--set", "batch_size=8"]
    assert main(argv + ["--out", str(tmp_path / "on")]) == 0
    err = capsys.readouterr().err
    assert "compiling train step…" in err and "3/3" in err and "steps" in err
    assert main(argv + ["--out", str(tmp_path / "off"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "compiling" not in err and "3/3" not in err
