"""The FFN-variant atlas (issue 23): settings and the plateau rule, Spearman's ρ, the necessity sweep against a
direct forward pass, the summary and report on a synthetic raw result, the CLI's bad input; the smoke profile
end to end in the slow tier."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import ffnkv
from analysis.necessity import mean_coefficients, necessity
from analysis.stats import ranks, spearman
from cli.main import main
from ffnkv.errors import FfnkvError
from ffnkv.hooks import Hooks
from ffnkv.model import forward, init_params
from studies import atlas, atlas_summary
from studies.report import atlas as report
from tests.tolerance import assert_f32_close


def test_profiles_fill_every_field_and_bad_settings_are_one_sentence():
    for profile in atlas.PROFILES:
        s = atlas.AtlasSettings(profile=profile)
        assert all(v is not None for v in vars(s).values()), profile
    quick = atlas.AtlasSettings(profile="quick")
    assert quick.seeds >= 3 and quick.depths == (4,) and set(quick.kinds) == set(atlas.KINDS) and quick.placement
    assert atlas.AtlasSettings(profile="full").seeds >= 5 and 8 in atlas.AtlasSettings(profile="full").depths
    assert atlas.AtlasSettings(profile="quick", seeds=2).seeds == 2
    for bad in (dict(profile="huge"), dict(kinds=("relu", "moe")), dict(kinds=()), dict(seed=-1)):
        with pytest.raises(FfnkvError):
            atlas.AtlasSettings(**bad)


def test_matched_widths_and_placement_configs():
    s = atlas.AtlasSettings(profile="quick")
    from ffnkv.config import ffn_params_per_layer

    relu = ffn_params_per_layer("relu", s.d_model, s.d_ff)
    for kind in ("gelu", "swiglu", "softmax", "linear"):
        cfg = atlas.train_config(s, kind, 4).model
        assert abs(ffn_params_per_layer(kind, s.d_model, cfg.d_ff) - relu) <= ffn_params_per_layer(kind, s.d_model, 1)
    placed = atlas.train_config(s, "relu", 4, ffn_layers=(2,)).model
    assert placed.d_ff == s.d_ff and list(placed.has_ffn_L()) == [0, 0, 1, 0]
    assert atlas.train_config(s, "none", 4, n_entities=8).data.kwargs["n_entities"] == 8


def test_plateau_rule():
    rule = atlas.FactsPlateau(min_steps=100, window=2, delta=0.01)
    ev = lambda step, acc: {"step": step, "eval/train_fact_acc": acc}
    assert not rule([ev(50, [1.0, 1.0])])  # before min_steps
    assert rule([ev(100, [1.0, 1.0])])  # every seed perfect
    rising = [ev(100, [0.5, 0.5]), ev(150, [0.6, 0.5]), ev(200, [0.7, 0.5])]
    assert not rule(rising)  # one seed still rising
    flat = [ev(100, [0.5, 0.5]), ev(150, [0.505, 0.5]), ev(200, [0.5, 0.509])]
    assert rule(flat)
    assert not rule(flat[:2])  # too few evals for a window


def test_spearman_matches_scipy_and_handles_ties_and_constants():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.normal(size=12), rng.integers(0, 4, 12).astype(float)  # y has ties
        assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)
    assert ranks([3.0, 1.0, 1.0]).tolist() == [2.0, 0.5, 0.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2, 3], [5, 5, 5])) and np.isnan(spearman([1, 2], [1, 2]))


def _tiny(ffn_layers=None):
    cfg = ffnkv.ModelConfig(vocab_size=24, d_model=16, n_layers=3, n_heads=2, d_ff=32, ffn="gelu", max_len=8,
                            ffn_layers=ffn_layers)
    params = init_params(jax.random.key(1), cfg)
    rng = np.random.default_rng(2)
    enc = {"tokens": rng.integers(1, 24, (5, 8)).astype(np.int32),
           "predict_pos": rng.integers(2, 8, 5).astype(np.int32),
           "target": rng.integers(0, 24, 5).astype(np.int32)}
    return cfg, params, enc


def test_necessity_equals_a_direct_mean_ablation_per_layer():
    cfg, params, enc = _tiny()
    mean_LF = mean_coefficients(params, enc["tokens"], np.ones(enc["tokens"].shape, bool), cfg)
    got = necessity(params, cfg, enc, mean_LF, chunk=2)  # chunks of 2 (the last padded)
    rows = np.arange(5)

    def prob_of(hooks):
        logits = forward(params, enc["tokens"], cfg, hooks).logits[rows, enc["predict_pos"]]
        return jax.nn.softmax(logits)[rows, enc["target"]]
    prob = jax.jit(prob_of)
    for layer in range(cfg.n_layers):
        mask = np.zeros((cfg.n_layers, 1, 1, 1), bool)
        mask[layer] = True
        assert_f32_close(got["p_ablated"][layer],
                         prob(Hooks(ffn_patch_mask=mask, ffn_patch_value=np.asarray(mean_LF)[:, None, None, :])))
    p0 = prob(None)
    assert_f32_close(got["drop"], np.asarray(p0)[None] - got["p_ablated"])
    assert np.abs(got["drop"]).max() > 1e-6  # ablating a real FFN changes something


def test_necessity_is_zero_where_a_layer_has_no_ffn():
    cfg, params, enc = _tiny(ffn_layers=(1,))
    mean_LF = mean_coefficients(params, enc["tokens"], np.ones(enc["tokens"].shape, bool), cfg)
    drop = necessity(params, cfg, enc, mean_LF)["drop"]
    assert np.all(drop[[0, 2]] == 0) and np.abs(drop[1]).max() > 1e-6


def _seed_measures(rng, good: float, layers=(0, 1, 2, 3), n=6):
    """One analysed seed whose edit success rises with its tracing effect (``good`` scales both)."""
    L = len(layers)
    base_LN = rng.uniform(0, 1, (L, n)) * good
    return {"layers": list(layers),
            "edit": {"rome_S": list(base_LN.mean(1)), "memit_S": list(base_LN.mean(1) * 0.9),
                     "edit_score": (base_LN + 0.01 * rng.uniform(size=(L, n))).tolist()},
            "localise": {"tracing": base_LN.tolist(), "kn_mass": rng.uniform(0, 1, (L, n)).tolist(),
                         "kn_count": rng.integers(0, 3, (L, n)).tolist(), "necessity": (base_LN * 2).tolist()},
            "structure": {"gini": list(rng.uniform(0.5, 0.6, L) + good), "gini_init": list(rng.uniform(0.4, 0.5, L)),
                          "agreement": list(rng.uniform(0.2, 0.3, L)), "agreement_chance": list(rng.uniform(0, 0.1, L)),
                          "zero_agreement": list(rng.uniform(0.3, 0.4, L)),
                          "zero_agreement_chance": list(rng.uniform(0.5, 0.6, L))}}


def _raw(seeds=3):
    rng = np.random.default_rng(0)
    s = atlas.AtlasSettings(profile="quick", seeds=seeds, kinds=("relu", "gelu", "none"))
    cell = lambda kind, good, acc: {"run_dir": "x", "d_ff": 8, "ffn_layers": None, "steps": 100,
                                    "stopped": "plateau", "seconds": 1.0, "kind": kind, "depth": 4,
                                    "train_fact_acc": acc, "paraphrase_acc": [0.5] * seeds,
                                    "reached": [a >= atlas.TARGET for a in acc],
                                    "seeds": [] if kind == "none"
                                    else [_seed_measures(rng, good) for a in acc if a >= 0.95]}
    kinds = {"relu@4": cell("relu", 1.0, [1.0] * seeds), "gelu@4": cell("gelu", 0.3, [1.0] * (seeds - 1) + [0.5]),
             "none@4": cell("none", 0, [0.4] * seeds)}
    small = {"d_ff": 8, "steps": 100, "train_fact_acc": [0.9] * seeds}
    raw = {"settings": vars(s) | {"depths": list(s.depths)}, "target": atlas.TARGET, "kinds": kinds,
           "placement": {str(k): small for k in range(4)},
           "capacity": {"32": small | {"train_fact_acc": [1.0] * seeds}}}
    return raw, s


def test_summary_intervals_headlines_and_correlations():
    raw, s = _raw()
    summ = atlas_summary.summarise(raw, s)
    rows = summ["rows"]
    assert rows["gelu@4"]["below_target"] == [2] and rows["gelu@4"]["n_analysed"] == 2
    assert rows["none@4"]["n_analysed"] == 0
    assert rows["none@4"]["metrics"]["train_fact_acc"]["point"] == pytest.approx(0.4)
    for name, iv in rows["relu@4"]["metrics"].items():
        assert iv["lo"] <= iv["point"] <= iv["hi"], name
    assert summ["headline"]["most_editable"]["kind"] == "relu@4" and summ["headline"]["sparsest"]["kind"] == "relu@4"
    # edit success was built to rise with tracing and necessity: the pooled ρ across layers is high
    pred = summ["headline"]["localisation_predicts_editing"]
    assert pred["necessity|layers|rome"]["point"] == pytest.approx(1.0)
    assert pred["tracing|facts|rome"]["verdict"] == "holds"
    assert set(summ["capacity"]) == {"32", str(s.n_entities * s.n_relations)}
    assert len(rows["relu@4"]["curves"]["rome_S"]) == 4


def test_report_writes_markdown_json_and_figures(tmp_path):
    raw, s = _raw()
    raw["summary"] = atlas_summary.summarise(raw, s)
    raw["machine"] = {"cpus": 2, "loadavg_start": [1.0, 1, 1], "loadavg_end": [2.0, 2, 2], "seconds": 12.0}
    paths = report.write(raw, tmp_path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    text = (tmp_path / "atlas.md").read_text()
    assert "relu@4" in text and "## Placement" in text and "Capacity" in text
    assert json.loads((tmp_path / "atlas.json").read_text())["summary"]["headline"]["most_editable"]["kind"] == "relu@4"


@pytest.mark.parametrize("argv", [["--quick", "--profile", "smoke"], ["--profile", "huge"], []])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv):
    out = tmp_path / "atlas"
    with pytest.raises(SystemExit) if "huge" in argv or not argv else _nothing() as raised:
        code = main(["atlas", *argv, *(["--out", str(out)] if argv else []), "--no-progress"])
    code = raised.value.code if raised is not None and hasattr(raised, "value") else code
    assert code == 2 and not out.exists()
    assert len(capsys.readouterr().err.strip().splitlines()) <= 2


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("source, render", [("results/atlas/atlas.json", report.docs_section),
                                            ("results/atlas/smollm2/atlas_pretrained.json",
                                             report.pretrained_docs_section)])
def test_docs_atlas_table_is_generated_from_the_committed_results(source, render):
    text = (ROOT / "docs" / "atlas.md").read_text()
    section = render(json.loads((ROOT / source).read_text()), source)
    assert text == report.replace_in_docs(text, section), f"docs/atlas.md differs: run `ffnkv report --atlas {source}`"


def test_report_atlas_rewrites_only_the_marked_block(tmp_path, capsys):
    raw, s = _raw()
    raw["summary"] = atlas_summary.summarise(raw, s)
    raw["machine"] = {"cpus": 2, "loadavg_start": [1.0, 1, 1], "loadavg_end": [2.0, 2, 2], "seconds": 12.0}
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "atlas.md"
    doc.write_text(f"# atlas\n\nprose\n\n{report.BEGIN}\nstale block\n{report.END}\n\nafter\n")
    (tmp_path / "a.json").write_text(json.dumps(raw))
    assert main(["report", "--atlas", str(tmp_path / "a.json"), "--root", str(tmp_path)]) == 0
    text = doc.read_text()
    assert text.startswith("# atlas\n\nprose\n\n") and text.endswith("\n\nafter\n") and "stale block" not in text
    assert "relu@4" in text
    doc.write_text("no markers")
    assert main(["report", "--atlas", str(tmp_path / "a.json"), "--root", str(tmp_path)]) == 2
    assert doc.read_text() == "no markers"


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@pytest.mark.slow
def test_smoke_profile_end_to_end(tmp_path):
    result = atlas.run(atlas.AtlasSettings(profile="smoke"), tmp_path, progress=None)
    relu = result["kinds"]["relu@2"]
    assert relu["train_fact_acc"][0] >= atlas.TARGET and relu["seeds"], relu["train_fact_acc"]
    m = relu["seeds"][0]
    L = len(m["layers"])
    assert len(m["edit"]["rome_S"]) == L and np.asarray(m["localise"]["necessity"]).shape[0] == 2
    assert result["summary"]["rows"]["relu@2"]["metrics"]["necessity_peak"] is not None
    paths = report.write(result, tmp_path)
    assert (tmp_path / "atlas.md").read_text().startswith("# The FFN-variant atlas (smoke profile)")
    assert len(paths) == 5
    assert (tmp_path / "depth2" / "relu" / "atlas_seed0.json").is_file()
    again = atlas.run(atlas.AtlasSettings(profile="smoke"), tmp_path, progress=None)  # resumes: trained and measured
    assert again["summary"] == result["summary"]
