"""Reliability promises (docs/reliability.md): every bad input is one line and touches nothing; an interrupted
training is saved, reported as unfinished and resumes bitwise; one writer per run dir; the text cache follows
file contents."""
import hashlib
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from _train_helpers import tiny_config, write_config

from cli import main
from ffnkv.data import register_task
from ffnkv.data.condcomp import CondComp
from ffnkv.io.run import checkpoint_steps, load_metrics
from train.config import DataConfig
from train.lock import RunDirBusy, RunLock
from train.loop import TrainingDiverged, TrainingInterrupted, train


def _snapshot(root: Path) -> dict:
    """Every path under ``root`` with a digest of its bytes (directories as None)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def _world(tmp: Path) -> dict:
    """The files the bad-input table refers to as {name}."""
    (tmp / "syntax.py").write_text("def get_config(:\n    pass\n")
    (tmp / "imports.py").write_text("import no_such_module_ffnkv\n")
    (tmp / "a_file").write_text("not a directory\n")
    orphan = tmp / "orphan"
    (orphan / "checkpoints" / "5").mkdir(parents=True)
    (orphan / "checkpoints" / "5" / "params").write_bytes(b"weights")
    (orphan / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n')
    from gguf_fixture import llama_weights, write_gguf

    write_gguf(tmp / "m.gguf", llama_weights())
    (tmp / "cut.gguf").write_bytes((tmp / "m.gguf").read_bytes()[:200])
    (tmp / "m.gguf").unlink()
    damaged = tmp / "damaged"  # run dirs with a damaged config.json (not directly under tmp: see `analyze {tmp}`)
    (damaged / "listcfg").mkdir(parents=True)
    (damaged / "listcfg" / "config.json").write_text("[]")
    bad = tiny_config().to_dict()
    bad["model"]["d_model"] = "x"
    (damaged / "badcfg").mkdir()
    (damaged / "badcfg" / "config.json").write_text(json.dumps(bad))
    words = "the cat dog sat on a mat and ran to house garden tree river stone bird".split()
    rng = np.random.default_rng(0)
    (tmp / "small.txt").write_text("\n\n".join(" ".join(rng.choice(words, 12)) for _ in range(30)) + "\n")
    (tmp / "empty.txt").write_text("")
    return {"cfg": write_config(tmp), "run": str(tmp / "run"), "syntax": str(tmp / "syntax.py"),
            "imports": str(tmp / "imports.py"), "file": str(tmp / "a_file"), "orphan": str(orphan),
            "cut_gguf": str(tmp / "cut.gguf"), "tmp": str(tmp), "listcfg": str(damaged / "listcfg"),
            "badcfg": str(damaged / "badcfg"), "small": str(tmp / "small.txt"), "empty": str(tmp / "empty.txt")}


T = ["train", "{cfg}", "--out", "{run}"]
TEXT = {"FFNKV_TEXT_FILES": "{small}", "FFNKV_DATA": "{tmp}/data"}  # the corpus cache would land in tmp
TT = ["train", "text", "--out", "{run}", "--set"]
BAD_INPUT = [  # (argv, env, exit code, the one line on stderr)
    (T + ["--set", "model.norm_eps=nan"], {}, 2, "ffnkv train: error: ModelConfig.norm_eps='nan' is not allowed"),
    (T + ["--set", "model.rope_theta=-1"], {}, 2, "ffnkv train: error: ModelConfig.rope_theta=-1 is not allowed"),
    (T + ["--set", "model.causal=5"], {}, 2, "ffnkv train: error: ModelConfig.causal=5 is not allowed"),
    (T + ["--set", "model.ffn_layers=abc"], {}, 2, "ffnkv train: error: ModelConfig.ffn_layers='abc' is not allowed"),
    (T + ["--set", "data.n_operands=50"], {}, 2,
     "ffnkv train: error: data.n_operands=50 with data.modulus=7 gives more sequences than int64 ids can number"),
    (T + ["--set", "data.n_operands=x"], {}, 2, "ffnkv train: error: data.n_operands='x' is not allowed"),
    (T + ["--set", "data.ops=5"], {}, 2, "ffnkv train: error: data.ops=5 is not allowed"),
    (T + ["--set", "model=5"], {}, 2, "ffnkv train: error: --set 'model=5': 'model' is a config section, not a value"),
    (T + ["--set", "optim=5"], {}, 2, "ffnkv train: error: --set 'optim=5': 'optim' is a config section, not a value"),
    (T + ["--set", "data=5"], {}, 2, "ffnkv train: error: --set 'data=5': 'data' is a config section, not a value"),
    (T + ["--set", "mesh=5"], {}, 2, "ffnkv train: error: TrainConfig.mesh=5 is not allowed"),
    (["train", "{cfg}", "--out", ""], {}, 2, "ffnkv train: error: argument --out: '' is an empty path"),
    (["train", "{cfg}", "--out", "{file}/sub"], {}, 2,
     "ffnkv train: error: argument --out: '{file}/sub' cannot be created: '{file}' is a file"),
    (["train", "{cfg}", "--out", "/proc/ffnkv-x"], {}, 2,
     "ffnkv train: error: argument --out: '/proc/ffnkv-x' cannot be created in '/proc'"),
    (["compare", "--out", ""], {}, 2, "ffnkv compare: error: argument --out: '' is an empty path"),
    (["compare", "--out", "{file}/sub"], {}, 2,
     "ffnkv compare: error: argument --out: '{file}/sub' cannot be created: '{file}' is a file"),
    (["reproduce", "--out", ""], {}, 2, "ffnkv reproduce: error: argument --out: '' is an empty path"),
    (["reproduce", "--out", "{file}/sub"], {}, 2,
     "ffnkv reproduce: error: argument --out: '{file}/sub' cannot be created: '{file}' is a file"),
    (["train", "{cfg}", "--out", "{listcfg}"], {}, 2,
     "ffnkv train: error: '{listcfg}/config.json' holds no valid training config (a training config must be a dict"),
    (["train", "{cfg}", "--out", "{badcfg}"], {}, 2,
     "ffnkv train: error: '{badcfg}/config.json' holds no valid training config (ModelConfig.d_model='x' "
     "is not allowed"),
    (["analyze", "{listcfg}"], {}, 2, "ffnkv analyze: error: {listcfg}/config.json is not a JSON object"),
    (["analyze", "{badcfg}"], {}, 2,
     "ffnkv analyze: error: {badcfg}/config.json has a bad model section (ModelConfig.d_model='x' is not allowed"),
    (TT + ["data.eval_fraction=0.9"], TEXT, 2, "ffnkv train: error: data.eval_fraction=0.9 is not allowed"),
    (TT + ["data.seq_len=10000000"], TEXT, 2, "ffnkv train: error: data.seq_len=10000000 is not allowed"),
    (TT + ["data.seq_len=100000"], TEXT, 2, "ffnkv train: error: the corpus ({small}) has at most "),
    (TT + ["data.seq_len=200"], TEXT, 2, "ffnkv train: error: the corpus ({small}) has "),  # after tokenising
    (TT + ["data.files=[]"], TEXT, 2, "ffnkv train: error: give exactly one text source"),
    (TT + ["data.vocab_size_target=-1"], TEXT, 2, "ffnkv train: error: data.vocab_size_target=-1 is not allowed"),
    (["train", "text", "--out", "{run}"], TEXT | {"FFNKV_TEXT_FILES": "{empty}"}, 2,
     "ffnkv train: error: the corpus ({empty}) has at most 0 tokens"),
    (T + ["--set", "optim.lr=nan"], {}, 2, "ffnkv train: error: optim.lr='nan' is not allowed"),
    (T + ["--set", "optim.lr=inf"], {}, 2, "ffnkv train: error: optim.lr='inf' is not allowed"),
    (T + ["--set", "optim.lr=1e999"], {}, 2, "ffnkv train: error: optim.lr=inf is not allowed"),
    (T + ["--set", "optim.lr=abc"], {}, 2, "ffnkv train: error: optim.lr='abc' is not allowed"),
    (T + ["--set", "optim.lr=-1"], {}, 2, "ffnkv train: error: optim.lr=-1 is not allowed"),
    (T + ["--set", "optim.end_lr_frac=nan"], {}, 2, "ffnkv train: error: optim.end_lr_frac='nan' is not allowed"),
    (T + ["--set", "optim.b1=2"], {}, 2, "ffnkv train: error: optim.b1=2 is not allowed"),
    (T + ["--set", "optim.warmup_steps=-10"], {}, 2, "ffnkv train: error: optim.warmup_steps=-10 is not allowed"),
    (T + ["--set", "seed=-1"], {}, 2, "ffnkv train: error: TrainConfig.seed=-1 is not allowed"),
    (T + ["--set", "data.n_eval=0"], {}, 2, "ffnkv train: error: data.n_eval=0 is not allowed"),
    (T + ["--set", "mesh=(3,1)"], {}, 2, "ffnkv train: error: mesh=(3, 1) does not fit 1 devices"),
    (["train", "{syntax}", "--out", "{run}"], {}, 2,
     "ffnkv train: error: config file '{syntax}' failed to load: SyntaxError at line 1"),
    (["train", "{imports}", "--out", "{run}"], {}, 2,
     "ffnkv train: error: config file '{imports}' failed to load: ModuleNotFoundError: No module named"),
    (["train", "{cfg}", "--out", "{file}"], {}, 2, "ffnkv train: error: argument --out: '{file}' is a file"),
    (["train", "{cfg}", "--out", "{orphan}"], {}, 2,
     "ffnkv train: error: run dir '{orphan}' has checkpoints but no config.json"),
    (T + ["--num-processes", "2"], {}, 2, "ffnkv train: error: --num-processes=2 needs --coordinator"),
    (["train", "text", "--out", "{run}"], {"FFNKV_TEXT_FILES": "{tmp}/missing.txt"}, 2,
     "ffnkv train: error: FFNKV_TEXT_FILES='{tmp}/missing.txt' matches no regular file"),
    (["train", "text", "--out", "{run}", "--set", "data.files=['{tmp}/gone.txt']"], {}, 2,
     "ffnkv train: error: text source '{tmp}/gone.txt' does not exist"),
    (["pretrained", "smollm2", "--path", "{cut_gguf}", "--out", "{run}"], {}, 2,
     "ffnkv pretrained: error: {cut_gguf} is truncated or damaged"),
    (["analyze", "{tmp}", "--n-random", "5"], {}, 2, "ffnkv analyze: error: n_random=5 is too few"),
    (["analyze", "{tmp}", "--seed", "-1"], {}, 2, "ffnkv analyze: error: argument --seed: -1 must be at least 0"),
    (["analyze", "{tmp}"], {}, 2, "ffnkv analyze: error: '{tmp}' is neither a run dir nor a dir of runs"),
    (["compare", "--accuracy-threshold", "2", "--out", "{run}"], {}, 2,
     "ffnkv compare: error: argument --accuracy-threshold: 2 must be a number between 0 and 1"),
    (["compare", "--threshold", "2", "--out", "{run}"], {}, 2,  # the old spelling, still checked
     "ffnkv compare: error: argument --threshold: 2 must be a number between 0 and 1"),
    (["train", "{cfg}"], {}, 2, "ffnkv train: error: no run dir given; pass --out DIR."),
    (["compare", "--kinds", "relu,maxout", "--out", "{run}"], {}, 2,
     "ffnkv compare: error: kinds 'relu,maxout' is not allowed"),
    (["compare", "--out", "{file}"], {}, 2, "ffnkv compare: error: argument --out: '{file}' is a file"),
    (["reproduce", "--stages", "nope", "--out", "{run}"], {}, 2, "ffnkv reproduce: error: unknown stage 'nope'"),
    (["reproduce", "--quick", "--profile", "full", "--out", "{run}"], {}, 2,
     "ffnkv reproduce: error: --quick contradicts --profile full"),
    (["reproduce", "--out", "{file}"], {}, 2, "ffnkv reproduce: error: argument --out: '{file}' is a file"),
    (["memories", "{tmp}", "--k", "0"], {}, 2, "ffnkv memories: error: argument --k: 0 must be at least 1"),
    (["memories", "{tmp}", "--k", "-1"], {}, 2, "ffnkv memories: error: argument --k: -1 must be at least 1"),
    (["memories", "{tmp}", "--sample-keys", "-1"], {}, 2,
     "ffnkv memories: error: argument --sample-keys: -1 must be at least 0"),
    (["memories", "{tmp}", "--clusters", "0"], {}, 2,
     "ffnkv memories: error: argument --clusters: 0 must be at least 1"),
    (["memories", "{tmp}", "--top-n", "0"], {}, 2, "ffnkv memories: error: argument --top-n: 0 must be at least 1"),
    (["memories", "{tmp}", "--max-tokens", "0"], {}, 2,
     "ffnkv memories: error: argument --max-tokens: 0 must be at least 1"),
    (["memories", "{tmp}", "--max-tokens", "-5"], {}, 2,
     "ffnkv memories: error: argument --max-tokens: -5 must be at least 1"),
    (["memories", "{tmp}", "--out", "{file}"], {}, 2, "ffnkv memories: error: argument --out: '{file}' is a file"),
    (["knowledge", "{tmp}", "--kn-threshold", "2"], {}, 2,
     "ffnkv knowledge: error: argument --kn-threshold: 2 must be a number between 0 and 1"),
    (["knowledge", "{tmp}", "--facts", "40"], {}, 2, "ffnkv knowledge: error: argument --facts: '40' is not a file; "
     "--facts takes a fact file (for a number of facts use --n-facts 40)"),
    (["edit", "{tmp}", "--facts", "{tmp}/none.json"], {}, 2, "ffnkv edit: error: argument --facts: "),
    (["knowledge", "{tmp}", "--samples", "0"], {}, 2,
     "ffnkv knowledge: error: argument --samples: 0 must be at least 1"),
    (["knowledge", "{tmp}", "--mesh", "(0,1)"], {}, 2, "ffnkv knowledge: error: argument --mesh: (0,1) must have"),
    (["edit", "{tmp}", "--n-edits", "0"], {}, 2, "ffnkv edit: error: argument --n-edits: 0 must be at least 1"),
    (["edit", "{tmp}", "--n-edits", "-1"], {}, 2, "ffnkv edit: error: argument --n-edits: -1 must be at least 1"),
    (["edit", "{tmp}", "--memit-width", "0"], {}, 2,
     "ffnkv edit: error: argument --memit-width: 0 must be at least 1"),
    (["edit", "{tmp}", "--memit-lambda", "-1"], {}, 2,
     "ffnkv edit: error: argument --memit-lambda: -1 must be a finite number greater than 0"),
    (["edit", "{tmp}", "--memit-lambda", "nan"], {}, 2,
     "ffnkv edit: error: argument --memit-lambda: nan must be a finite number greater than 0"),
    (["edit", "{file}"], {}, 2, "ffnkv edit: error: "),
    (["atlas", "--out", "{file}"], {}, 2, "ffnkv atlas: error: argument --out: '{file}' is a file"),
]


@pytest.mark.parametrize("argv, env, code, line", BAD_INPUT, ids=lambda v: None)
def test_bad_input_is_one_line_and_touches_nothing(tmp_path, capsys, monkeypatch, argv, env, code, line):
    names = _world(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(**names))
    before = _snapshot(tmp_path)
    try:
        returned = main([a.format(**names) for a in argv])
    except SystemExit as exit_:  # argparse's usage errors
        returned = exit_.code
    assert returned == code
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(line.format(**names)), err
    assert _snapshot(tmp_path) == before


class _SignalsItself(CondComp):
    """condcomp that sends this process SIGINT while building the batch of step 7 (after step 7's update
    the loop sees it: the state saved is that of step 8)."""

    def batch(self, seed, step, batch_size):
        if step == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return super().batch(seed, step, batch_size)


def test_interrupted_training_is_saved_unfinished_and_resumes(tmp_path):
    register_task("signals_itself", _SignalsItself)
    data = DataConfig("signals_itself", {"n_operands": 3, "modulus": 7, "n_eval": 64})
    before = signal.getsignal(signal.SIGINT)  # Python's default handler, or SIG_IGN under nohup / a background job
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_config(data=data), tmp_path / "run")
    assert (info.value.step, info.value.steps, info.value.exit_code) == (8, 20, 130)
    assert str(info.value) == "interrupted at step 8 of 20; re-run the same command to resume."
    assert checkpoint_steps(tmp_path / "run")[-1] == 8
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    register_task("signals_itself", CondComp)  # the same batches, no signal: the re-run resumes at 8
    assert train(tiny_config(data=data), tmp_path / "run")["status"] == "done"
    steps = [r["step"] for r in load_metrics(tmp_path / "run") if "loss" in r]
    assert steps == list(range(1, 21))  # each step logged once (bitwise resume: tests/test_train_kill.py)


class _NanFromStart(CondComp):
    def batch(self, seed, step, batch_size):
        b = super().batch(seed, step, batch_size)
        return b | {"weights": b["weights"] * np.float32("nan")}


def test_divergence_before_any_checkpoint_names_no_step_none(tmp_path):
    register_task("nan_from_start", _NanFromStart)
    data = DataConfig("nan_from_start", {"n_operands": 3, "modulus": 7, "n_eval": 64})
    with pytest.raises(TrainingDiverged) as info:
        train(tiny_config(data=data), tmp_path / "run")
    assert str(info.value).startswith("loss=nan grad_norm=nan at step 1 (learning rate 0); stopped, no checkpoint "
                                      "was saved before it (lower optim.lr or raise optim.warmup_steps).")


def test_second_writer_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    cfg = write_config(tmp_path)
    with RunLock(run):
        before = _snapshot(tmp_path)  # .lock holds this process's pid: the refused trainer must not rewrite it
        assert main(["train", cfg, "--out", str(run)]) == 2
        assert _snapshot(tmp_path) == before
    err = capsys.readouterr().err
    assert err.startswith(f"ffnkv train: error: run dir '{run}' is in use by another process (pid {os.getpid()})")
    assert len(err.splitlines()) == 1
    with RunLock(run), pytest.raises(RunDirBusy):
        RunLock(run).__enter__()
    with RunLock(run):  # released on exit
        pass


def test_text_cache_follows_file_contents(tmp_path, monkeypatch):
    from ffnkv.data import make_task

    monkeypatch.setenv("FFNKV_DATA", str(tmp_path / "data"))
    corpus = tmp_path / "c.txt"
    words = "the cat dog sat on a mat and ran to house garden tree river stone bird".split()
    rng = np.random.default_rng(0)
    corpus.write_text("\n\n".join(" ".join(rng.choice(words, 12)) for _ in range(200)) + "\n")
    kwargs = dict(files=[str(corpus)], vocab_size_target=300, seq_len=16, eval_fraction=0.1, n_eval=4)
    first = make_task("text", **kwargs)
    with open(corpus, "a") as handle:  # grown
        handle.write("\n\n".join(" ".join(rng.choice(words, 12)) for _ in range(200)) + "\n")
    grown = make_task("text", **kwargs)
    assert grown.cache_dir != first.cache_dir and grown.meta["n_tokens"] > 1.8 * first.meta["n_tokens"]
    replaced = tmp_path / "new.txt"
    replaced.write_text(corpus.read_text().replace("cat", "zebra"))
    os.replace(replaced, corpus)  # same name, same size class, other contents
    again = make_task("text", **kwargs)
    assert again.cache_dir not in (first.cache_dir, grown.cache_dir)
    assert "zebra" in again.tokenizer.decode(again.tokens[:4000])


def test_an_interrupted_study_stage_stays_unfinished_and_the_command_exits_128_plus_signum(tmp_path, monkeypatch,
                                                                                             capsys):
    from studies import reproduce, reproduce_stages

    register_task("signals_itself", _SignalsItself)
    config = tmp_path / "signals.py"
    config.write_text("import sys\nsys.path.insert(0, %r)\nfrom _train_helpers import tiny_config\n"
                      "from train.config import DataConfig\n\ndef get_config():\n"
                      "    return tiny_config(data=DataConfig("
                      "'signals_itself', {'n_operands': 3, 'modulus': 7, 'n_eval': 64}))\n"
                      % str(Path(__file__).parent))
    from train.config import load_config_file

    stage = reproduce_stages.Stage("train", "a training",
                                   lambda ctx: train(load_config_file(config), ctx.out / "run") and {})
    monkeypatch.setattr(reproduce, "STAGES", {"train": stage})
    out = tmp_path / "repro"
    assert main(["reproduce", "--profile", "smoke", "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("ffnkv reproduce: error: stage 'train' was interrupted and stays unfinished; re-run the same "
                       "command to resume it.")
    assert not (out / "stages" / "train.json").exists() and not (out / "report.md").exists()
    assert checkpoint_steps(out / "run")[-1] == 8
    register_task("signals_itself", CondComp)
    assert main(["reproduce", "--profile", "smoke", "--out", str(out)]) == 0
    assert (out / "stages" / "train.json").exists() and checkpoint_steps(out / "run")[-1] == 20


@pytest.mark.slow
def test_tracing_when_no_sampled_fact_is_known_writes_its_results(tmp_path, capsys):
    """Issue #13: `knowledge RUN tracing --facts 2 --samples 1` on a model that knows none of them."""
    import ffnkv
    from train.config import TrainConfig

    cfg = TrainConfig(model=ffnkv.ModelConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32),
                      data=DataConfig("facts", {"n_entities": 6, "n_relations": 2, "n_attributes": 3}),
                      steps=2, batch_size=8, eval_every=2, ckpt_every=2, keep=1, progress=False)
    train(cfg, tmp_path / "run")
    out = tmp_path / "k"
    argv = ["knowledge", str(tmp_path / "run"), "tracing", "--n-facts", "2", "--samples", "1", "--out", str(out)]
    assert main(argv) == 0
    assert "Traceback" not in capsys.readouterr().err and (out / "tracing.json").is_file()


# ---- text corpora: unusual files build a cache or fail in one line; a rejected corpus leaves nothing -------
def _unusual_corpora(tmp: Path) -> dict:
    rng = np.random.default_rng(0)
    words = "the cat dog sat on a mat and ran to house garden tree river stone bird".split()
    (tmp / "binary.bin").write_bytes(rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    (tmp / "one_line.txt").write_text(" ".join(rng.choice(words, 40_000)))  # ~170 kB, no newline at all
    (tmp / "nul.txt").write_bytes(b"\n\n".join(b"\0".join(" ".join(rng.choice(words, 12)).encode().split(b" "))
                                               for _ in range(300)))
    return {name: tmp / name for name in ("binary.bin", "one_line.txt", "nul.txt")}


@pytest.mark.parametrize("name", ["binary.bin", "one_line.txt", "nul.txt"])
def test_binary_one_line_and_nul_corpora_build_a_working_cache(tmp_path, monkeypatch, name):
    from ffnkv.data import make_task

    monkeypatch.setenv("FFNKV_DATA", str(tmp_path / "data"))
    path = _unusual_corpora(tmp_path)[name]
    task = make_task("text", files=[str(path)], vocab_size_target=300, seq_len=16, eval_fraction=0.1, n_eval=4)
    batch = task.batch(0, 0, 4)
    assert batch["tokens"].shape == (4, 16) and int(batch["tokens"].max()) < task.vocab_size
    text = task.tokenizer.decode(task.tokens[:2000])
    expected = {"binary.bin": "\ufffd", "one_line.txt": "garden", "nul.txt": "\0"}[name]
    assert expected in text  # undecodable bytes read as U+FFFD; NUL is an ordinary byte


def test_a_corpus_too_small_after_tokenising_leaves_no_cache(tmp_path, monkeypatch):
    """It passes the byte bound (4 tokens per byte at most), is tokenised in a temporary dir, then refused:
    neither the cache nor $FFNKV_DATA is left behind."""
    from ffnkv.data import make_task
    from ffnkv.errors import FfnkvError

    monkeypatch.setenv("FFNKV_DATA", str(tmp_path / "data"))
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join("the cat sat on the mat and ran" for _ in range(40)))
    before = _snapshot(tmp_path)
    with pytest.raises(FfnkvError) as info:
        make_task("text", files=[str(corpus)], vocab_size_target=300, seq_len=200, eval_fraction=0.1)
    assert "has at most" not in str(info.value) and "too few for seq_len=200" in str(info.value)
    assert _snapshot(tmp_path) == before


# ---- fact files: directories, lone surrogates and unknown-token text are one clear error -------------------
def _facts_file(tmp: Path, change=None) -> Path:
    from ffnkv.data.counterfact import record_json, world_fact_records
    from ffnkv.data.facts import FactsTask

    records = [record_json(r) for r in world_fact_records(FactsTask(n_entities=8, n_relations=2, n_attributes=3), 3)]
    if change:
        change(records[1])
    path = tmp / "facts.json"
    path.write_text(json.dumps(records))
    return path


def _facts_tokenizer():
    from ffnkv.data.facts import FactsTask
    from ffnkv.io.tokenizer import task_tokenizer

    return task_tokenizer(FactsTask(n_entities=8, n_relations=2, n_attributes=3))


def _set_subject(value):
    def change(record):
        record["requested_rewrite"]["subject"] = value  # the prompt holds "{}": the subject is filled in
    return change


@pytest.mark.parametrize("case, expected", [
    ("directory", "fact file '{path}' cannot be read (Is a directory); pass a JSON file."),
    ("surrogate", "record 1 (case_id {case_id}): field 'requested_rewrite.subject' must be a non-empty string of "
                  "valid Unicode (no lone surrogates)."),
    ("emoji", "record 1 (case_id {case_id}): field 'requested_rewrite.subject' ('🙂') holds text the model's "
              "tokenizer does not know (it reads as its unknown token); rephrase it in the model's vocabulary."),
])
def test_fact_file_problems_are_one_sentence(tmp_path, case, expected):
    from ffnkv.data.counterfact import load_fact_file
    from ffnkv.errors import FfnkvError

    tokenizer = _facts_tokenizer()
    assert len(load_fact_file(_facts_file(tmp_path), tokenizer)) == 3  # the control loads
    if case == "directory":
        path = tmp_path / "a_dir"
        path.mkdir()
    else:
        path = _facts_file(tmp_path, _set_subject("\ud800" if case == "surrogate" else "🙂"))
        assert ("\\ud800" in path.read_text()) == (case == "surrogate")  # JSON's escape, as a user would write it
    case_id = json.loads(path.read_text())[1]["case_id"] if path.is_file() else None
    with pytest.raises(FfnkvError) as info:
        load_fact_file(path, tokenizer)
    assert str(info.value) == expected.format(path=path, case_id=case_id)


@pytest.mark.slow
def test_knowledge_with_a_bad_facts_file_is_one_line(tmp_path, capsys):
    """Through the command line, on a trained facts run: a directory, a lone surrogate, an emoji subject."""
    import ffnkv
    from train.config import TrainConfig

    cfg = TrainConfig(model=ffnkv.ModelConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32),
                      data=DataConfig("facts", {"n_entities": 8, "n_relations": 2, "n_attributes": 3}),
                      steps=2, batch_size=8, eval_every=2, ckpt_every=2, keep=1, progress=False)
    train(cfg, tmp_path / "run")
    (tmp_path / "a_dir").mkdir()
    files = {"directory": tmp_path / "a_dir"}
    for case, subject in (("surrogate", "\ud800"), ("emoji", "🙂")):
        (tmp_path / case).mkdir()
        files[case] = _facts_file(tmp_path / case, _set_subject(subject))
    for case, path in files.items():
        before = _snapshot(tmp_path)
        try:
            returned = main(["knowledge", str(tmp_path / "run"), "tracing", "--facts", str(path), "--n-facts", "2"])
        except SystemExit as exit_:  # a directory is argparse's usage error
            returned = exit_.code
        assert returned == 2, case
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("ffnkv knowledge: error: "), (case, err)
        assert _snapshot(tmp_path) == before


@pytest.mark.slow
def test_a_text_run_whose_corpus_changed_is_refused_not_misread(tmp_path, monkeypatch, capsys):
    """The resolved config pins the content-keyed cache_dir: after the corpus file changes, re-running the run is a
    different config (exit 2) and reading the run back is one clear error, never another tokenizer."""
    from ffnkv.errors import FfnkvError
    from ffnkv.io.run import Run

    monkeypatch.setenv("FFNKV_DATA", str(tmp_path / "data"))
    words = "the cat dog sat on a mat and ran to house garden tree river stone bird".split()
    rng = np.random.default_rng(0)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choice(words, 12)) for _ in range(600)) + "\n")
    monkeypatch.setenv("FFNKV_TEXT_FILES", str(corpus))
    run = tmp_path / "run"
    argv = ["train", "text", "--out", str(run), "--no-progress"] + [
        a for kv in ("steps=2", "model.d_model=16", "model.n_layers=1", "model.d_ff=32", "batch_size=4",
                     "data.vocab_size_target=300", "data.seq_len=16", "data.n_eval=4", "eval_every=2", "ckpt_every=2")
        for a in ("--set", kv)]
    assert main(argv) == 0
    cache_dir = json.loads((run / "config.json").read_text())["data"]["kwargs"]["cache_dir"]
    assert Run(run).task.cache_dir == cache_dir and main(argv) == 0  # unchanged: resumes (nothing left to do)
    corpus.write_text(corpus.read_text().replace("cat", "zebra"))
    capsys.readouterr()
    before = (run / "config.json").read_bytes()
    assert main(argv) == 2
    assert "holds a run with a different config (fields: data)" in capsys.readouterr().err
    assert (run / "config.json").read_bytes() == before
    with pytest.raises(FfnkvError, match=f"the contents of {corpus} changed since cache_dir"):
        Run(run).task
