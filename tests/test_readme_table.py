"""The README's Results table is the one ``ffnkv report --readme`` generates from the committed claims file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli.main import main
from studies.report import claims as C

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "docs" / "claims.json"


def test_readme_table_is_generated_from_the_committed_claims():
    data = C.load(CLAIMS)
    readme = (ROOT / "README.md").read_text()
    expected = C.replace_in_readme(readme, C.readme_table(data))
    expected = C.replace_quickstart(expected, C.quickstart_line(json.loads((ROOT / C.QUICKSTART).read_text())))
    assert readme == expected, "README.md's Results table differs from docs/claims.json: run `ffnkv report --readme`"


def test_committed_claims_come_from_a_run_and_carry_intervals():
    data = C.load(CLAIMS)
    assert data["meta"]["commit"] and data["meta"]["what"]
    judged = [c for c in data["claims"] if c.get("tests")]
    assert judged and all(c["n_seeds"] >= 1 for c in judged)
    assert any(t["lo"] is not None for c in judged for t in c["tests"])
    table = C.readme_table(data)
    assert table.count("\n| ") == len(data["claims"]) + 1  # every claim has its row, failing ones included


def _claims(verdicts=("holds", "fails", "inconclusive")):
    test = {"rule": "memit.S", "statistic": "harmonic_mean_of_means", "point": 0.8, "lo": 0.74, "hi": 0.86,
            "n_seeds": 3, "n_items": 75, "cut": 0.8, "direction": ">=", "verdict": "inconclusive"}
    return {"meta": {"what": "a test", "commit": "abc"},
            "claims": [{"source": "S", "claim": f"claim {v}", "paper": "p", "ours": "o", "rule": "r", "verdict": v,
                        "tests": [test], "n_seeds": 3} for v in verdicts]}


def test_report_command_replaces_only_the_marked_table(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "claims.json").write_text(json.dumps(_claims()))
    (tmp_path / "README.md").write_text(f"# x\n\nabove\n\n{C.BEGIN}\nold table\n{C.END}\n\nbelow\n")
    assert main(["report", "--readme", "--docs", "--root", str(tmp_path),
                 "--claims", str(tmp_path / "docs" / "claims.json")]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "old table" not in text and text.startswith("# x\n\nabove\n\n") and text.endswith(f"{C.END}\n\nbelow\n")
    assert "| claim fails (S) |" in text and "0.8 [0.74, 0.86]" in text and "3 × 75" in text
    assert "**inconclusive**" in text
    assert "`memit.S`" in (tmp_path / "docs" / "verdict_rules.md").read_text()
    assert "claim fails" in (tmp_path / "docs" / "claims.md").read_text()


@pytest.mark.parametrize("content, readme, message", [
    (None, f"{C.BEGIN}\n{C.END}\n", "is not a file"),
    ("{not json", f"{C.BEGIN}\n{C.END}\n", "is not valid JSON"),
    (json.dumps({"claims": [{"x": 1}]}), f"{C.BEGIN}\n{C.END}\n", "holds no list of claims"),
    (json.dumps(_claims()), "no markers\n", "exactly one"),
])
def test_report_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, content, readme, message):
    claims = tmp_path / "claims.json"
    if content is not None:
        claims.write_text(content)
    (tmp_path / "README.md").write_text(readme)
    assert main(["report", "--readme", "--root", str(tmp_path), "--claims", str(claims)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert (tmp_path / "README.md").read_text() == readme
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["README.md"] + (["claims.json"] if content else []))


def test_report_without_an_action_is_refused(tmp_path, capsys):
    shutil.copy(CLAIMS, tmp_path / "claims.json")
    assert main(["report", "--claims", str(tmp_path / "claims.json")]) == 2
    assert "nothing to write" in capsys.readouterr().err
