"""Honest outputs: a study that gets fewer facts than asked says so in one line on stderr and records which
facts were known, edited and held out (``studies.facts.selection``)."""
import json
from types import SimpleNamespace

import numpy as np

from ffnkv.data.counterfact import FactRecord
from studies import editing
from studies import facts as FS


def _records(n):
    return [FactRecord(10 + i, "{} lives in", f"S{i}", f"R{i % 2}", "Paris", "Rome", (), ()) for i in range(n)]


def test_edit_split_with_two_known_facts_reports_the_shortfall(monkeypatch, capsys):
    records = _records(5)
    known = np.array([False, True, False, True, False])
    monkeypatch.setattr(FS, "known_mask", lambda *a: known)  # the seam's known mask, which editing reads
    monkeypatch.setattr(editing, "answer_tokens", lambda tok, rs: (np.zeros(len(rs)), np.ones(len(rs))))
    model = SimpleNamespace(params=None, cfg=None, tokenizer=None)
    s = editing.EditSettings(n_edits=3, n_unrelated=100, seed=0)
    cal, edit, unrelated, chosen = editing._split(model, records, s, calibrate=False)
    assert (len(cal), len(edit), len(unrelated)) == (0, 1, 1)
    assert chosen["known"] == [11, 13] and chosen["asked"] == {"edited": 3, "unrelated": 100}
    assert {r["case_id"] for r in chosen["edited"] + chosen["unrelated"]} == {11, 13}
    assert chosen["edited"][0] == {"case_id": edit[0].case_id, "subject": edit[0].subject}
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ffnkv edit: fewer facts than asked: 1 edited of 3 asked, 1 unrelated of 100 asked "
                   "(the model knows 2 of 5 facts)."] == [chosen["short"]]
    json.dumps(chosen)


def test_selection_is_silent_when_every_group_is_full(capsys):
    records = _records(4)
    picked = [records[i] for i in FS.select(records, None, 3, 0, False)]
    out = FS.selection("knowledge", {"chosen": 3}, {"chosen": picked}, records[:2], len(records))
    assert out["short"] is None and capsys.readouterr().err == ""
    assert [r["subject"] for r in out["chosen"]] == [r.subject for r in picked] and out["known"] == [10, 11]
    more = FS.select(records, None, 40, 0, False)  # --n-facts beyond the fact set: every fact, and a line
    out = FS.selection("knowledge", {"chosen": 40}, {"chosen": [records[i] for i in more]}, records[:2], 4)
    assert out["short"] == ("ffnkv knowledge: fewer facts than asked: 4 chosen of 40 asked "
                            "(the model knows 2 of 4 facts).")
    assert capsys.readouterr().err.strip() == out["short"]
