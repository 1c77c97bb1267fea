"""ffnkv reproduce: the smoke profile end to end, resuming, bad input, and the claim rules on known numbers."""
import json

import pytest

from cli import main
from studies import verdicts as C
from studies.reproduce_stages import STAGES as STAGE_DEFS
from studies.reproduce_stages import Stage
from studies.reproduce import run_stage

STAGES = "condcomp,specialise,facts,memories,knowledge,edit"


@pytest.mark.slow
def test_smoke_profile_writes_a_report_from_its_outputs_and_resumes(tmp_path, capsys):
    out = tmp_path / "repro"
    assert main(["reproduce", "--profile", "smoke", "--out", str(out), "--stages", STAGES]) == 0
    report = (out / "report.md").read_text()
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    for name in STAGES.split(","):
        assert json.loads((out / "stages" / f"{name}.json").read_text())["status"] == "done"
        assert f"| {name} | {STAGE_DEFS[name].title} | done |" in report
    assert "| not run |" in report.split("| editability |")[1].split("\n")[0]
    compare = json.loads((out / "condcomp" / "compare.json").read_text())
    sum_relu = compare["kinds"]["relu"]["accuracy"]["SUM"]
    claims = json.loads((out / "claims.json").read_text())["claims"]
    first = claims[0]
    assert first["source"] == "Rahman et al. 2026" and f"relu {sum_relu:.2f}" in first["ours"]
    assert {c["source"] for c in claims} >= {"Rahman et al. 2026", "Geva et al. 2021", "Geva et al. 2022",
                                             "Dai et al. 2022", "Meng et al. 2022", "Meng et al. 2023"}
    assert all(c["rule"] and c["ours"] and c["paper"] for c in claims)  # each verdict states its rule and numbers
    assert all(c["tests"] and c["n_seeds"] >= 1 for c in claims if c["verdict"] != "not applicable")
    assert "![eval accuracy per op vs step](condcomp/compare.png)" in report and (out / "condcomp/compare.png").is_file()

    stamp = (out / "stages" / "facts.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["reproduce", "--profile", "smoke", "--out", str(out), "--stages", STAGES]) == 0
    assert capsys.readouterr().out.count("done earlier, skipping") == len(STAGES.split(","))
    assert (out / "stages" / "facts.json").stat().st_mtime_ns == stamp

    report = (out / "report.md").read_text()
    assert main(["reproduce", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a 'smoke' reproduction" in err and len(err.splitlines()) == 1
    assert (out / "report.md").read_text() == report


def test_bad_stage_and_contradicting_profile_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["reproduce", "--profile", "smoke", "--out", str(out), "--stages", "condcomp,nope"]) == 2
    assert "unknown stage 'nope'" in capsys.readouterr().err
    assert main(["reproduce", "--quick", "--profile", "full", "--out", str(out)]) == 2
    assert "contradicts" in capsys.readouterr().err
    assert not (out / "stages").exists()


def test_a_stage_whose_requirements_are_missing_is_skipped_with_the_reason(tmp_path):
    stage = Stage("x", "X", lambda out, p: [["nonexistent"]], lambda: "not installed: y")
    assert run_stage(stage, tmp_path, "quick", main) == {"status": "skipped", "why": "not installed: y"}


# the rules themselves (condcomp, edits, knowledge neurons) are tested in tests/test_verdicts*.py


def test_value_projection_claim_without_knowledge_neurons():
    # with knowledge neurons the rule is an interval over neurons (tests/test_verdicts.py); the knowledge study's
    # attribution.json is what the smollm2 stage writes
    effects = {"x0_own": -0.3, "x0_unrelated": 0.0, "x2_own": 0.2, "x2_unrelated": 0.0}
    facts = [{"neurons": [[0, 1]], "effects": {"x0_own": -0.3 - 0.01 * k, "x2_own": 0.2 + 0.01 * k}} for k in range(12)]
    vp = {"answer_rank_median": None, "random_answer_rank_median": 500.0, "neurons": [], "random_answer_ranks": []}
    rows = C.smollm2({"summary": {"effects_mean": effects}, "facts": facts, "value_projection": vp})
    assert [c["verdict"] for c in rows] == ["holds", "not applicable"]
