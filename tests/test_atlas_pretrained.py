"""The atlas's question on a pretrained model (``studies.atlas_pretrained``, issue 23 item 4): the bootstrap over
facts of the ρs on a synthetic measure dict, the report and docs block, the CLI's bad input (fast); the study on
tiny random Llama checkpoints of 2 and 4 layers — shapes, ρs, and the same number of compiled programs at both
depths (slow)."""
from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from analysis.rome import ROME_HPARAMS
from cli.main import main
from studies import atlas_summary
from studies.report import atlas as report


def _measure(n_layers=5, n_facts=6, seed=0, aligned=True):
    """A measure dict whose localisers rise with each fact's edit success (``aligned``) or are noise."""
    rng = np.random.default_rng(seed)
    es = rng.uniform(0, 1, (n_layers, n_facts))
    per = [{"ES": (es[l] > 0.3).astype(float).tolist(), "PS": es[l].tolist(), "NS": (1 - 0.5 * es[l]).tolist()}
           for l in range(n_layers)]
    score = [np.mean([p["ES"], p["PS"], p["NS"]], 0) for p in per]
    loc = np.asarray(score) if aligned else rng.normal(size=(n_layers, n_facts))
    from analysis.edit_eval import summarise

    return {"layers": list(range(n_layers)),
            "localise": {"tracing": loc.tolist(), "necessity": (2 * loc + 1).tolist()},
            "edit": {"layers": list(range(n_layers)), "rome_per_edit": per, "edit_score": [s.tolist() for s in score],
                     "rome_S": [summarise({k: np.asarray(p[k]) for k in p})["S"] for p in per]}}


def test_correlations_leave_out_what_the_measure_lacks_and_resampling_all_facts_is_the_identity():
    m = _measure()
    rho = atlas_summary.correlations(m)
    assert set(rho) == {f"{n}|{a}|rome" for n in ("tracing", "necessity") for a in ("layers", "facts")}
    assert len(rho["tracing|facts|rome"]) == 5
    assert np.allclose(rho["tracing|facts|rome"], 1.0)  # the localiser is the edit success itself
    same = atlas_summary.resample_facts(m, np.arange(6))
    assert np.allclose(same["edit"]["rome_S"], m["edit"]["rome_S"])
    assert atlas_summary.correlations(same) == rho


def test_fact_intervals_decide_against_zero():
    key = jax.random.key(0)
    aligned = atlas_summary.fact_intervals(_measure(), key, n_boot=100)
    iv = aligned["tracing|facts|rome"]
    assert iv["point"] == pytest.approx(1.0) and iv["lo"] > 0 and iv["verdict"] == "holds"
    assert iv["n_items"] == 6 and iv["n_boot"] == 100 and 0 <= iv["n_undefined"] < 100
    noise = atlas_summary.fact_intervals(_measure(aligned=False, seed=1), key, n_boot=100)
    assert all(v is None or v["lo"] <= v["point"] <= v["hi"] for v in noise.values())
    assert atlas_summary.fact_intervals(_measure(), key, n_boot=100) == aligned  # a pure function of the key


def _result(m):
    from studies.atlas_pretrained import PretrainedAtlasSettings, curves

    return {"kind": "atlas_pretrained", "meta": {"commit": "abc1234"}, "model": "tiny", "n_layers": 5, "d_ff": 48,
            "settings": dataclasses.asdict(PretrainedAtlasSettings()), "n_facts": 20, "n_known_facts": 18,
            "calibration": list(range(6)), "rule_layer": 2, "measure": m, "command": "ffnkv atlas --model tiny",
            "rho": {k: [float(x) for x in v] for k, v in atlas_summary.correlations(m).items()},
            "intervals": atlas_summary.fact_intervals(m, jax.random.key(0), 100),
            "curves": curves(m, jax.random.key(1)),
            "machine": {"seconds": 3.0, "cpu_seconds": 5.0, "cpus": 2, "loadavg_start": [1.0, 1, 1],
                        "loadavg_end": [1.5, 1, 1]}}


@pytest.mark.slow  # the per-layer intervals compile two bootstrap programs, and the figure: 20 s on a shared machine
def test_report_and_docs_block(tmp_path, capsys):
    result = _result(_measure())
    paths = report.write_pretrained(result, tmp_path / "out")
    assert all(p.is_file() for p in paths)
    md = (tmp_path / "out" / "atlas_pretrained.md").read_text()
    assert "holds" in md and "layer rule picks layer 2" in md and "5 s CPU" in md
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "atlas.md"
    doc.write_text(f"x\n{report.BEGIN}\nA\n{report.END}\n{report.PRETRAINED_BEGIN}\nB\n{report.PRETRAINED_END}\ny\n")
    assert main(["report", "--atlas", str(paths[0]), "--root", str(tmp_path)]) == 0
    text = doc.read_text()
    assert "\nA\n" in text and "\nB\n" not in text and "commit abc1234" in text and text.endswith("\ny\n")


@pytest.mark.parametrize("argv, says", [
    (["atlas", "--model", "no-such-model"], "no-such-model"),
    (["atlas", "--n-facts", "3"], "--model"),
    (["atlas", "--model", "smollm2", "--quick"], "--quick"),
    (["atlas", "--model", "smollm2", "--n-facts", "0"], "at least 1"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, says):
    out = tmp_path / "out"
    try:
        code = main(argv + ["--out", str(out)])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert says in err[-1] and not any("Traceback" in line for line in err)
    assert not out.exists() or not any(out.iterdir())


WORDS_SUBJECTS = "Paris France Rome Italy Berlin Germany Madrid Spain London England Tokyo Japan".split()


def _tiny(tmp_path, n_layers):
    from ffnkv.data.counterfact import FactRecord
    from ffnkv.io.load import load_model
    from ffnkv.prompts import encode_prompts
    from studies import facts as FS
    from tests.pretrained_fixture import WORDS, write_tiny_llama

    model = load_model(write_tiny_llama(tmp_path / f"llama{n_layers}", n_layers=n_layers))
    prompts = [f"{s} is in the" for s in WORDS_SUBJECTS]
    top = FS.top1(model.params, model.cfg, encode_prompts(model.tokenizer, prompts, WORDS_SUBJECTS))
    records = []
    for i, (s, t) in enumerate(zip(WORDS_SUBJECTS, top)):
        if WORDS[t] in ("<unk>", "<s>", "</s>"):
            continue
        new = next(w for w in WORDS[3:] if w != WORDS[t])
        others = [o for o in WORDS_SUBJECTS if o != s][:2]
        records.append(FactRecord(i, "{} is in the", s, "R1", WORDS[t], new, (f"the {s} is in the",),
                                  tuple(f"{o} is in the" for o in others)))
    return model, records


@pytest.mark.slow
def test_study_on_tiny_llamas_shapes_rhos_and_programs_do_not_grow_with_depth(tmp_path):
    from benchmarks import compile_depth as CD
    from studies import atlas_pretrained as AP

    (tmp_path / "text.txt").write_text(" ".join(["the city of Paris is in France ."] * 40))
    s = AP.PretrainedAtlasSettings(n_facts=3, trace_samples=1, mean_batches=1, mean_window=16, n_unrelated=2,
                                   cov_text=str(tmp_path / "text.txt"), cov_tokens=100, n_boot=50,
                                   rome=dataclasses.replace(ROME_HPARAMS, steps=2, prefixes=()))
    counts = []
    for n_layers in (2, 4):
        model, records = _tiny(tmp_path, n_layers)
        assert len(records) >= 9
        jax.clear_caches()
        with CD.compiles() as c:
            result = AP.run(model, records, s)
        counts.append(c["n"])
        m = result["measure"]
        assert m["layers"] == list(range(n_layers)) and len(result["calibration"]) == 3
        for name in ("tracing", "necessity"):
            assert np.asarray(m["localise"][name]).shape == (n_layers, 3)
        assert len(m["edit"]["rome_S"]) == n_layers and np.asarray(m["edit"]["edit_score"]).shape == (n_layers, 3)
        assert set(result["rho"]) == {f"{n}|{a}|rome" for n in ("tracing", "necessity") for a in ("layers", "facts")}
        assert len(result["rho"]["tracing|facts|rome"]) == n_layers
        assert result["machine"]["cpu_seconds"] > 0
        json.dumps(result)
    assert counts[0] == counts[1] and counts[0] > 0, counts
