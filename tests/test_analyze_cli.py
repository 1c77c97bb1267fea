"""`ffnkv analyze`: on a compare-style dir of two tiny trained runs, every output is written and valid."""
import json

import numpy as np
import pytest

from cli import main
from cli import analyze
from _train_helpers import tiny_config
from train.loop import train

RAHMAN_FILES = ("sparsity.json", "specialisation.json", "ablation.json", "hierarchy.json", "rahman_claims.json",
                "rahman_summary.md", "sparsity.png", "selectivity.png", "dissociation.png", "hierarchy.png")


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    for name, seed in (("relu", 0), ("relu_seed1", 1)):  # one model config: the jit caches serve both runs
        train(tiny_config(steps=4, ckpt_every=4, eval_every=4, seed=seed), root / name)
    return root


def test_analyze_compare_dir_writes_everything(compare_dir, capsys):
    assert main(["analyze", str(compare_dir), "--n-random", "20"]) == 0
    for name in ("relu", "relu_seed1"):
        out = compare_dir / name / "analysis"
        for name in RAHMAN_FILES:
            assert (out / name).stat().st_size > 0, name
        claims = json.loads((out / "rahman_claims.json").read_text())["claims"]
        assert set(claims) == {"sparsity", "distinct_groups", "double_dissociation", "hierarchy"}
        assert claims["sparsity"]["verdict"] in ("holds", "fails")
        sparsity = json.loads((out / "sparsity.json").read_text())
        assert set(sparsity["trained"]) == set(sparsity["initial"]) == {"0", "1"}
        neurons = np.load(out / "specialisation_neurons.npz")
        assert neurons["si"].shape == neurons["specialist"].shape == (3, 2, 64) and neurons["generalist"].shape == (2, 64)
        ablation = json.loads((out / "ablation.json").read_text())
        assert ablation["n_random"] == 20 and len(ablation["zero"]["accuracy"]) == 3
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
    assert json.loads((run / "analysis" / "sparsity.json").read_text())["trained"]["0"]["token_gini_mean"] >= 0
    after = (run / "analysis" / "ablation.json").read_text() if (run / "analysis" / "ablation.json").exists() else None
    assert before == after


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


def test_analyses_registry_is_extensible():
    assert list(analyze.ANALYSES)[:4] == list(analyze.RAHMAN)
    assert all(callable(f) for f in analyze.ANALYSES.values())
