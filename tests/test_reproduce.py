"""ffnkv reproduce: the smoke profile end to end, resuming, bad input, seeds, and no command line below it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli import main
from studies import verdicts as C
from studies.report import rule_history
from studies.report.reproduce import RERUN_BEGIN, RERUN_END, rerun_table
from studies.reproduce import run_stage
from studies.reproduce_stages import SEEDS, Context, Stage
from studies.reproduce_stages import STAGES as STAGE_DEFS

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
    assert "| not run |" in report.split("| atlas |")[1].split("\n")[0]
    compare = json.loads((out / "condcomp" / "compare.json").read_text())
    sum_relu = sum(r["accuracy"]["SUM"] for r in compare["kinds"]["relu"]["per_seed"]) / SEEDS["smoke"]  # pooled
    data = json.loads((out / "claims.json").read_text())
    assert list(data["stages"]) == STAGES.split(",") and all(r["cpu_seconds"] > 0 for r in data["stages"].values())
    claims = data["claims"]
    first = claims[0]
    assert first["source"] == "Rahman et al. 2026" and f"relu {sum_relu:.2f}" in first["ours"]
    assert {c["source"] for c in claims} >= {"Rahman et al. 2026", "Geva et al. 2021", "Geva et al. 2022",
                                             "Dai et al. 2022", "Meng et al. 2022", "Meng et al. 2023"}
    assert all(c["rule"] and c["ours"] and c["paper"] for c in claims)  # each verdict states its rule and numbers
    assert all(c["tests"] and c["n_seeds"] >= 1 for c in claims if c["verdict"] != "not applicable")
    trained = [c for c in claims if c["source"] in ("Rahman et al. 2026", "Dai et al. 2022", "Meng et al. 2022",
                                                     "Meng et al. 2023") and c["verdict"] != "not applicable"]
    assert trained and all(c["n_seeds"] == SEEDS["smoke"] for c in trained)  # judged over every seed
    for study, name in (("memories", "memories.json"), ("knowledge", "attribution.json"), ("edit", "edit.json")):
        assert all((out / "facts" / "analysis" / study / f"seed{i}" / name).is_file() for i in range(SEEDS["smoke"]))
    assert json.loads((out / "stages" / "facts.json").read_text())["seeds"] == SEEDS["smoke"]
    data = rule_history.inputs(out / "facts", out / "condcomp")  # the rule history reads reproduce's seed dirs
    assert {"geva_promotion", "meng_tracing", "rahman_kinds", "meng_edits"} <= set(data)
    assert all(len(data[name][2][0]) == SEEDS["smoke"] for name in ("meng_tracing", "geva_promotion"))
    together = [h for h in C.HISTORY if h["id"] == "seeds-together"]
    rows = rule_history.changes(together, data, Path.cwd(), "test")["seeds-together"]["rows"]
    assert {r["after"] for r in rows} <= {"holds", "fails", "inconclusive", "not applicable"} and len(rows) >= 6
    assert "![eval accuracy per op vs step](condcomp/compare.png)" in report
    assert (out / "condcomp/compare.png").is_file()

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
    stage = Stage("x", "X", lambda ctx: 1 / 0, lambda: "not installed: y")
    assert run_stage(stage, Context(tmp_path, "quick")) == {"status": "skipped", "why": "not installed: y"}


def test_another_base_seed_on_the_same_out_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "r"
    (out).mkdir()
    (out / "reproduce.json").write_text(json.dumps({"profile": "smoke", "seed": 0}))
    assert main(["reproduce", "--profile", "smoke", "--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "base seed 0" in err and "--seed 1" in err and len(err.splitlines()) == 1
    assert not (out / "stages").exists()


def test_reproduce_and_the_studies_import_no_command_line():
    """Issue 22: reproduce calls studies with Settings objects; nothing under studies/ imports ``cli``."""
    code = ("import sys, studies.reproduce, studies.reproduce_stages, studies.report.reproduce; "
            "print(sorted(m for m in sys.modules if m == 'cli' or m.startswith('cli.')))")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "[]"
    offenders = [str(p) for p in (root / "studies").rglob("*.py")
                 if any(line.lstrip().startswith(("import cli", "from cli")) for line in p.read_text().splitlines())]
    assert offenders == []


def test_the_old_seed_combination_is_each_seed_alone_then_their_common_verdict():
    """Rule history's 'before' of ``seeds-together``: a disagreement between seeds was 'inconclusive'."""
    from types import SimpleNamespace

    module = SimpleNamespace(f=lambda x, k: {"claim": "c", "verdict": "holds" if x > k else "fails"},
                             rahman_claims=lambda sp, *_: {"verdict": "holds" if sp > 0 else "fails"},
                             rahman=lambda kinds: [{"claim": k, "verdict": c["claims"]["verdict"]}
                                                   for k, c in kinds.items()])
    assert rule_history._each_seed(module, "f", ([1.0, 2.0], 0.0))[0]["verdict"] == "holds"
    assert rule_history._each_seed(module, "f", ([1.0, -2.0], 0.0))[0]["verdict"] == "inconclusive"
    kinds = {"relu": ([1, 1], [None] * 2, [None] * 2, [None] * 2, ["SUM"]),
             "gelu": ([1, -1], [None] * 2, [None] * 2, [None] * 2, ["SUM"])}
    assert [c["verdict"] for c in rule_history._each_seed(module, "rahman_kinds", (kinds,))] == ["holds",
                                                                                                 "inconclusive"]


# the rules themselves (condcomp, edits, knowledge neurons) are tested in tests/test_verdicts*.py


def test_value_projection_claim_without_knowledge_neurons():
    # with knowledge neurons the rule is an interval over neurons (tests/test_verdicts.py); the knowledge study's
    # attribution.json is what the smollm2 stage writes
    effects = {"x0_own": -0.3, "x0_unrelated": 0.0, "x2_own": 0.2, "x2_unrelated": 0.0}
    facts = [{"neurons": [[0, 1]], "effects": {"x0_own": -0.3 - 0.01 * k, "x2_own": 0.2 + 0.01 * k}} for k in range(12)]
    vp = {"answer_rank_median": None, "random_answer_rank_median": 500.0, "neurons": [], "random_answer_ranks": []}
    rows = C.smollm2({"summary": {"effects_mean": effects}, "facts": facts, "value_projection": vp})
    assert [c["verdict"] for c in rows] == ["holds", "not applicable"]


def test_the_rerun_table_marks_moves_to_or_from_inconclusive_and_flips(tmp_path, capsys):
    def data(what, *verdicts):
        return {"meta": {"what": what},
                "claims": [C.claim("S", f"c{i}", "p", "o", v, "r") for i, v in enumerate(verdicts)]}
    first = data("seed 0", "holds", "fails", "holds", "inconclusive")
    second = data("seed 1", "holds", "inconclusive", "fails", "holds")
    text, moved = rerun_table(first, second)
    assert [(m["claim"], m["flip"]) for m in moved] == [("c1", False), ("c2", True), ("c3", False)]
    assert "| S | c2 | holds | fails | 1/1 | **flip** |" in text and "| S | c0 | holds | holds | 1/1 |  |" in text
    doc = tmp_path / "docs" / "reproduce.md"
    doc.parent.mkdir()
    doc.write_text(f"before\n{RERUN_BEGIN}\nstale table\n{RERUN_END}\nafter\n")
    for name, d in (("a.json", first), ("b.json", second)):
        (tmp_path / name).write_text(json.dumps(d))
    assert main(["report", "--root", str(tmp_path), "--claims", str(tmp_path / "a.json"), "--rerun",
                 str(tmp_path / "b.json")]) == 0
    written = doc.read_text()
    assert written.startswith("before\n") and written.endswith(f"{RERUN_END}\nafter\n") and "stale table" not in written
    assert text in written and "3 verdicts moved, 1 flipped" in capsys.readouterr().out
    first["meta"] |= {"seed": 0, "seeds": 3}
    assert "seeds [1, 2] are in both runs" in rerun_table(first, second | {"meta": {"seed": 1, "seeds": 3}})[0]
    assert "no seed is in both runs" in rerun_table(first, second | {"meta": {"seed": 3, "seeds": 3}})[0]
