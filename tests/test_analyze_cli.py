"""The specialisation study from Python (a trained run and a pretrained checkpoint through the same function)
and `ffnkv analyze` on a compare-style dir of two tiny trained runs: every output is written and valid."""
import json

import numpy as np
import pytest
from _train_helpers import tiny_config
from pretrained_fixture import write_tiny_llama

from cli import main
from ffnkv.errors import FfnkvError
from ffnkv.io.load import load_model
from studies import specialisation
from train.loop import train

RAHMAN_FILES = ("sparsity.json", "specialisation.json", "ablation.json", "hierarchy.json", "rahman_claims.json",
                "rahman_summary.md", "sparsity.png", "selectivity.png", "dissociation.png", "hierarchy.png")


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    for name, seed in (("relu", 0), ("relu_seed1", 1)):  # one model config: the jit caches serve both runs
        train(tiny_config(steps=4, ckpt_every=4, eval_every=4, seed=seed), root / name)
    return root


@pytest.mark.slow
def test_analyze_compare_dir_writes_everything(compare_dir, capsys):
    assert main(["analyze", str(compare_dir), "--n-random", "20"]) == 0
    for name in ("relu", "relu_seed1"):
        out = compare_dir / name / "analysis"
        for name in RAHMAN_FILES:
            assert (out / name).stat().st_size > 0, name
        claims = json.loads((out / "rahman_claims.json").read_text())["claims"]
        assert set(claims) == {"sparsity", "distinct_groups", "double_dissociation", "hierarchy"}
        assert {t["rule"] for t in claims["sparsity"]["tests"]} == {"rahman.sparsity", "rahman.sparsity_above_initial"}
        assert all(t["lo"] is not None for t in claims["sparsity"]["tests"])  # judged on the written arrays
        sparsity = json.loads((out / "sparsity.json").read_text())
        assert len(sparsity["trained"]["0"]["token_gini_sequences"]) == 64  # one per probe sequence
        assert set(sparsity["trained"]) == set(sparsity["initial"]) == {"0", "1"}
        neurons = np.load(out / "specialisation_neurons.npz")
        assert neurons["si"].shape == neurons["specialist"].shape == (3, 2, 64)
        assert neurons["generalist"].shape == (2, 64)
        ablation = json.loads((out / "ablation.json").read_text())
        assert ablation["n_random"] == 20 and len(ablation["zero"]["accuracy"]) == 3
        assert np.shape(ablation["zero"]["correct"]) == np.shape(ablation["mean"]["control_correct"]) == (3, 64)
    assert json.loads((compare_dir / "relu" / "analysis" / "sparsity.json").read_text())["active_rule"] == "m > 0"
    summary = (compare_dir / "analysis" / "rahman_summary.md").read_text()
    assert "| relu |" in summary and "| relu (relu_seed1) |" in summary
    assert (compare_dir / "analysis" / "gini_by_kind.png").stat().st_size > 0
    comparison = json.loads((compare_dir / "analysis" / "rahman_comparison.json").read_text())
    assert set(comparison) == {"relu", "relu (relu_seed1)"}
    assert "comparison of 2 runs" in capsys.readouterr().out


def test_analyze_one_analysis_of_one_run(compare_dir, tmp_path):
    run = compare_dir / "relu"
    before = (run / "analysis" / "ablation.json").read_text() if (run / "analysis" / "ablation.json").exists() else None
    assert main(["analyze", str(run), "sparsity"]) == 0
    sparsity = json.loads((run / "analysis" / "sparsity.json").read_text())
    assert set(sparsity["trained"]) == {"0", "1"}
    after = (run / "analysis" / "ablation.json").read_text() if (run / "analysis" / "ablation.json").exists() else None
    assert before == after


def test_analyze_out_puts_one_run_in_out_and_each_run_of_a_dir_under_it(compare_dir, tmp_path):
    assert main(["analyze", str(compare_dir / "relu"), "sparsity", "--out", str(tmp_path / "one")]) == 0
    assert json.loads((tmp_path / "one" / "sparsity.json").read_text())["active_rule"] == "m > 0"
    assert main(["analyze", str(compare_dir), "sparsity", "--out", str(tmp_path / "all")]) == 0
    for name in ("relu", "relu_seed1"):
        assert (tmp_path / "all" / name / "sparsity.json").is_file()
    assert set(json.loads((tmp_path / "all" / "rahman_comparison.json").read_text())) == {"relu", "relu (relu_seed1)"}


@pytest.mark.parametrize("argv, message", [
    (["sparsity", "--n-random", "5"], "at least 20"),
    (["nonsense"], "unknown analysis 'nonsense'"),
])
def test_user_errors_are_one_line(compare_dir, capsys, argv, message):
    assert main(["analyze", str(compare_dir / "relu")] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_not_a_run_dir(tmp_path, capsys):
    assert main(["analyze", str(tmp_path)]) == 2
    assert "neither a run dir nor a dir of runs" in capsys.readouterr().err


def _labelled_probe(model, n_per_group=6, length=6, seed=0):
    """Two groups of equal-length prompts of the model's own vocabulary, answered at the last position."""
    rng = np.random.default_rng(seed)
    V = model.cfg.vocab_size
    tokens = rng.integers(3, V, (2 * n_per_group, length)).astype(np.int32)
    return {"tokens": tokens, "target": rng.integers(3, V, 2 * n_per_group).astype(np.int32),
            "op": np.repeat(np.arange(2), n_per_group)}


@pytest.mark.slow
def test_study_runs_on_a_pretrained_checkpoint_and_a_trained_run(compare_dir, tmp_path):
    settings = specialisation.SpecialisationSettings(n_random=20)
    pretrained = load_model(write_tiny_llama(tmp_path / "llama"))
    trained = load_model(compare_dir / "relu")
    for model, probe, groups in ((pretrained, _labelled_probe(pretrained), ("a", "b")),
                                 (trained, trained.run.task.eval_set(0), trained.run.task.ops)):
        result = specialisation.run(model, probe, groups, settings)
        assert set(result["claims"]) == {"sparsity", "distinct_groups", "double_dissociation", "hierarchy"}
        L, F = model.cfg.n_layers, model.cfg.d_ff
        assert result["specialisation"]["arrays"]["si"].shape == (len(groups), L, F)
        assert set(result["sparsity"]["trained"]) == {str(l) for l in range(L)}
        assert result["sparsity"]["trained"] != result["sparsity"]["initial"]


def test_study_refuses_a_bad_probe_and_bad_settings(tmp_path):
    model = load_model(write_tiny_llama(tmp_path / "llama"))
    probe = _labelled_probe(model)
    with pytest.raises(FfnkvError, match="at least two probe prompts"):
        specialisation.run(model, probe | {"op": np.zeros(12, int)}, ("a", "b"))
    with pytest.raises(FfnkvError, match="lacks 'target'"):
        specialisation.run(model, {"tokens": probe["tokens"], "op": probe["op"]}, ("a", "b"))
    with pytest.raises(FfnkvError, match="at least 20"):
        specialisation.SpecialisationSettings(n_random=3)
